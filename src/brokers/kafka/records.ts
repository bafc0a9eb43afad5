import type { OutboxMessage } from '../broker.js';
import { type KafkaRecord, loadedLibrary } from './library.js';

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
 * The Java client's partition for a keyed record (murmur2, sign bit masked), so Java
 * producers keyed by the same aggregate id agree. @platformatic/kafka's default drops the
 * sign by `>>> 0` instead, which differs; and computing it here tells which records share
 * a partition batch, for attributing a partition's error to its messages.
 */
export function kafkaPartition(key: string, partitions: number): number {
  return (loadedLibrary().murmur2(key) & 0x7fffffff) % partitions;
}

/** One message on its way: where its result goes and the record that carries it. */
export interface Entry {
  index: number;
  record: KafkaRecord & { partition: number };
}

export function entryPartition(entry: Entry): string {
  return partitionKey(entry.record.topic, entry.record.partition);
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
