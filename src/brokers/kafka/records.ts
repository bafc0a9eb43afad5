import type { OutboxMessage } from '../broker.js';
import type { KafkaRecord } from './library.js';

/**
 * Header bytes for the records, encoded as the client's string serializer would (UTF-8).
 * The names are few and the same on every record, and most values repeat from one record
 * to the next (specversion, source, content type, type, often time): each name keeps the
 * bytes of its last value, so a batch encodes only what changes. Events' own headers
 * (extension attributes) add names; past `MAX_NAMES` a new name is encoded each time.
 */
export class HeaderBytes {
  private static readonly MAX_NAMES = 64;
  private readonly names = new Map<string, { name: Buffer; text: string; value: Buffer }>();

  encode(headers: Record<string, string>): Map<Buffer, Buffer> {
    const encoded = new Map<Buffer, Buffer>();
    for (const name in headers) {
      const text = headers[name] as string;
      let last = this.names.get(name);
      if (!last) {
        last = { name: Buffer.from(name, 'utf8'), text, value: Buffer.from(text, 'utf8') };
        if (this.names.size < HeaderBytes.MAX_NAMES) this.names.set(name, last);
      } else if (last.text !== text) {
        last.text = text;
        last.value = Buffer.from(text, 'utf8');
      }
      encoded.set(last.name, last.value);
    }
    return encoded;
  }
}

/** Kafka's legal topic characters; anything else in an aggregate or event type becomes `_`. */
export const illegalTopicCharacters = /[^a-zA-Z0-9._-]/g;
export const illegalTopicCharacter = /[^a-zA-Z0-9._-]/;

/** The topic of a message: the template filled in, illegal characters replaced. */
export function kafkaTopic(
  template: string,
  message: Pick<OutboxMessage, 'aggregateType' | 'eventType'>,
): string {
  return template
    .replaceAll('{aggregate_type}', message.aggregateType.replace(illegalTopicCharacters, '_'))
    .replaceAll('{event_type}', message.eventType.replace(illegalTopicCharacters, '_'));
}

/**
 * The Java client's partition for a keyed record (murmur2 of the key's UTF-8 bytes, sign
 * bit masked), so Java producers keyed by the same aggregate id agree. @platformatic/kafka's
 * default drops the sign by `>>> 0` instead, which differs; and computing it here tells
 * which records share a partition batch, for attributing a partition's error to its
 * messages.
 */
export function kafkaPartition(key: string, partitions: number): number {
  return (murmur2(utf8(key)) & 0x7fffffff) % partitions;
}

/** Where keys are encoded: grown for a longer key, reused for every other. */
let keyBytes = new Uint8Array(256);
const encoder = new TextEncoder();

/** `text`'s UTF-8 bytes, in a buffer that the next call overwrites. */
function utf8(text: string): Uint8Array {
  // Three bytes at most per UTF-16 unit (a surrogate pair: four for two units).
  if (text.length * 3 > keyBytes.length) keyBytes = new Uint8Array(text.length * 3);
  const { written } = encoder.encodeInto(text, keyBytes);
  return keyBytes.subarray(0, written);
}

const MURMUR_M = 0x5bd1e995;
const MURMUR_SEED = 0x9747b28c;

/**
 * Kafka's murmur2 (the Java client's `Utils.murmur2`), as a signed 32-bit integer, in
 * 32-bit arithmetic. The client library's own computes it with BigInt, which allocates at
 * each step and cost about as much CPU per record as the rest of our record building.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const whole = length & ~3;
  let h = MURMUR_SEED ^ length;
  for (let i = 0; i < whole; i += 4) {
    let k =
      (data[i] as number) |
      ((data[i + 1] as number) << 8) |
      ((data[i + 2] as number) << 16) |
      ((data[i + 3] as number) << 24);
    k = Math.imul(k, MURMUR_M);
    k ^= k >>> 24;
    k = Math.imul(k, MURMUR_M);
    h = Math.imul(h, MURMUR_M) ^ k;
  }
  const rest = length & 3;
  if (rest > 0) {
    if (rest === 3) h ^= (data[whole + 2] as number) << 16;
    if (rest >= 2) h ^= (data[whole + 1] as number) << 8;
    h ^= data[whole] as number;
    h = Math.imul(h, MURMUR_M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, MURMUR_M);
  h ^= h >>> 15;
  return h | 0;
}

/** One message on its way: where its result goes and the record that carries it. */
export interface Entry {
  index: number;
  record: KafkaRecord & { partition: number };
}

/**
 * The most a produce request carries, in bytes of its records, well under the 100 MiB of
 * a server's default `socket.request.max.bytes`: over it the server closes the
 * connection without a word, which looks like an outage, and the same batch would be
 * sent again for ever (a backlog of large events stalled every aggregate).
 */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/**
 * An upper bound of a record's bytes on the wire: its text as UTF-8 at most (3 bytes a
 * UTF-16 unit), its headers, and what each record and header costs besides.
 */
function recordBytes(record: Entry['record']): number {
  let bytes = 64 + 3 * ((record.value?.length ?? 0) + (record.key?.length ?? 0));
  const headers = record.headers;
  const pairs = headers instanceof Map ? headers.entries() : Object.entries(headers ?? {});
  for (const [name, value] of pairs) bytes += 16 + name.length + value.length;
  return bytes;
}

/**
 * The entries in runs of at most MAX_REQUEST_BYTES, in their order (one alone when it is
 * larger): sent one after another, each partition's records keep their order.
 */
export function requestSized(entries: readonly Entry[]): Entry[][] {
  const runs: Entry[][] = [];
  let run: Entry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = recordBytes(entry.record);
    if (run.length > 0 && bytes + size > MAX_REQUEST_BYTES) {
      runs.push(run);
      run = [];
      bytes = 0;
    }
    run.push(entry);
    bytes += size;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

export function entryPartition(entry: Entry): string {
  return partitionKey(entry.record.topic, entry.record.partition);
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
