import { isPublishedHeader } from '../brokers/cloudevents.js';
import type { Delivery, MessageSource } from '../brokers/source.js';
import { unsendableCharacter, unsendableReason } from '../common/text.js';

type Binding = MessageSource['binding'];

/**
 * CloudEvents 1.0 from a delivery, in either content mode of the broker's protocol
 * binding: binary (attributes in headers, as the dispatcher publishes) or structured
 * (`application/cloudevents+json`: attributes and `data` in one JSON body, as other
 * producers may send).
 */

/** The context attributes and the JSON data of a CloudEvent, not yet checked against a schema. */
export interface DecodedCloudEvent {
  id: string;
  type: string;
  source: string;
  subject: string | undefined;
  time: string | undefined;
  /** The `sequence` extension without its zero padding; undefined when absent or not decimal digits. */
  sequence: string | undefined;
  /** `subject`, else the `partitionkey` extension: whose event it is. */
  aggregateId: string;
  traceparent: string | undefined;
  tracestate: string | undefined;
  /** The other extension attributes (`tenant`, …), by name. */
  extensions: Record<string, string>;
  data: unknown;
}

/** The attributes a message said of itself, though its data could not be read. */
export type KnownAttributes = Pick<
  DecodedCloudEvent,
  'id' | 'source' | 'type' | 'aggregateId' | 'sequence'
>;

/** Why a delivery is not a CloudEvent this library can read; the text becomes the dead letter's reason. */
export class UndecodableMessageError extends Error {
  override readonly name = 'UndecodableMessageError';
  /**
   * Set where the headers (binary mode) were a whole CloudEvent's and only its data was
   * unreadable: the message is then parked under its event id, as one with data its
   * schema refuses, so a redelivery of it stays one dead letter.
   */
  known: KnownAttributes | undefined;
}

/** Header-name prefixes of each binding in binary mode (AMQP: `cloudEvents:`, older drafts `cloudEvents_`). */
const prefixes: Record<Binding, readonly string[]> = {
  nats: ['ce-'],
  kafka: ['ce_'],
  amqp: ['cloudevents:', 'cloudevents_'],
};

const structured = /^application\/cloudevents\+json\s*(;|$)/i;
const batch = /^application\/cloudevents-batch\+json\s*(;|$)/i;
const json = /^application\/(?:[\w.+-]*\+)?json\s*(;|$)/i;
/** PostgreSQL's bigint, which the inbox keeps a sequence in. */
const MAX_SEQUENCE = 9223372036854775807n;
/**
 * The longest id, type or aggregate id a consumer takes, in characters: the producer's own
 * limit for an aggregate id, and well within what one entry of the inbox's and the dead
 * letters' indexes holds (about 2,700 bytes).
 */
const MAX_KEY_CHARS = 500;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeCloudEvent(
  binding: Binding,
  delivery: Pick<Delivery, 'headers' | 'contentType' | 'body'>,
): DecodedCloudEvent {
  const headers = lowerCased(delivery.headers);
  const contentType = delivery.contentType ?? headers['content-type'];
  if (contentType && structured.test(contentType)) return fromStructured(delivery.body);
  if (contentType && batch.test(contentType)) {
    throw new UndecodableMessageError(
      "a CloudEvents batch (application/cloudevents-batch+json), parked whole: a consumer reads one event per message, so split the batch on the producer's side",
    );
  }
  const attributes: Record<string, string> = {};
  for (const prefix of prefixes[binding]) {
    for (const [name, value] of Object.entries(headers)) {
      if (name.startsWith(prefix)) {
        attributes[name.slice(prefix.length)] = binding === 'nats' ? percentDecoded(value) : value;
      }
    }
  }
  if (Object.keys(attributes).length === 0) {
    // The NATS binding's structured mode as its spec has it: no headers, the event as the
    // payload. Taken when the payload is a JSON object with a specversion.
    const envelope = binding === 'nats' && !contentType ? headerless(delivery.body) : undefined;
    if (envelope) return fromEnvelope(envelope);
    throw new UndecodableMessageError(
      `not a CloudEvent: no ${prefixes[binding][0]}* headers and content type ${contentType ? `"${contentType}"` : 'absent'} (expected binary mode or application/cloudevents+json)`,
    );
  }
  // The NATS binding carries datacontenttype as a header of its own (ce-datacontenttype);
  // where both are given, that one says what the data is.
  const dataType = attributes.datacontenttype ?? contentType;
  try {
    if (dataType && !json.test(dataType)) {
      throw new UndecodableMessageError(
        `content type "${dataType}" is not JSON; only JSON event data can be checked against an event schema`,
      );
    }
    return event(attributes, parseJson(text(delivery.body, 'body'), 'body'));
  } catch (error) {
    if (error instanceof UndecodableMessageError) error.known ??= knownAttributes(attributes);
    throw error;
  }
}

/** What binary-mode headers say of the event, if they are a whole CloudEvent's. */
function knownAttributes(attributes: Record<string, string>): KnownAttributes | undefined {
  try {
    const { id, source, type, aggregateId, sequence } = event(attributes, undefined);
    return { id, source, type, aggregateId, sequence };
  } catch {
    return undefined;
  }
}

/** A payload that is a structured CloudEvent though nothing says so, or undefined. */
function headerless(body: Uint8Array): Record<string, unknown> | undefined {
  let envelope: unknown;
  try {
    envelope = JSON.parse(utf8.decode(body));
  } catch {
    return undefined;
  }
  const isObject = typeof envelope === 'object' && envelope !== null && !Array.isArray(envelope);
  return isObject && typeof (envelope as { specversion?: unknown }).specversion === 'string'
    ? (envelope as Record<string, unknown>)
    : undefined;
}

function fromStructured(body: Uint8Array): DecodedCloudEvent {
  const envelope = parseJson(text(body, 'body'), 'body');
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) {
    throw new UndecodableMessageError('structured CloudEvent: the body is not a JSON object');
  }
  return fromEnvelope(envelope as Record<string, unknown>);
}

function fromEnvelope(fields: Record<string, unknown>): DecodedCloudEvent {
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields)) {
    if (name === 'data' || name === 'data_base64') continue;
    if (typeof value === 'string') attributes[name] = value;
    else if (typeof value === 'number' || typeof value === 'boolean')
      attributes[name] = String(value);
  }
  const type = attributes.datacontenttype;
  if (type && !json.test(type)) {
    throw new UndecodableMessageError(
      `datacontenttype "${type}" is not JSON; only JSON event data can be checked against an event schema`,
    );
  }
  let data: unknown = fields.data;
  if (typeof fields.data_base64 === 'string') {
    // Node skips what is not base64 without a word; such text would decode to garbage.
    const encoded = fields.data_base64.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) || encoded.length % 4 === 1) {
      throw new UndecodableMessageError('structured CloudEvent: data_base64 is not base64');
    }
    data = parseJson(text(Buffer.from(encoded, 'base64'), 'data_base64'), 'data_base64');
  }
  return event(attributes, data);
}

function event(attributes: Record<string, string>, data: unknown): DecodedCloudEvent {
  const required = (name: string): string => {
    const value = attributes[name];
    if (!value) throw new UndecodableMessageError(`CloudEvent attribute "${name}" is missing`);
    return value;
  };
  const specversion = required('specversion');
  if (specversion !== '1.0') {
    throw new UndecodableMessageError(`CloudEvents specversion "${specversion}" is not 1.0`);
  }
  const subject = attributes.subject || undefined;
  const aggregateId = subject ?? attributes.partitionkey;
  if (!aggregateId) {
    throw new UndecodableMessageError(
      'CloudEvent has neither "subject" nor "partitionkey": its aggregate is unknown, so its order cannot be kept',
    );
  }
  const extensions: Record<string, string> = {};
  for (const name in attributes) {
    if (isPublishedHeader(name) && name !== 'traceparent' && name !== 'tracestate') {
      extensions[name] = attributes[name] as string;
    }
  }
  return {
    id: storable('id', required('id'), { key: true }),
    type: storable('type', required('type')),
    // No length of ours: a producer's source may be 2,048 characters (a URI reference).
    source: storable('source', required('source'), { key: true, maxChars: Infinity }),
    subject,
    time: timeOf(attributes.time),
    sequence: sequenceOf(attributes.sequence),
    aggregateId: storable(subject === undefined ? 'partitionkey' : 'subject', aggregateId),
    traceparent: attributes.traceparent || undefined,
    tracestate: attributes.tracestate || undefined,
    extensions,
    data,
  };
}

/**
 * `value` of attribute `name`, where the inbox and the dead letters can keep it: no NUL
 * (PostgreSQL text holds none), no character CloudEvents excludes (the producer sends
 * none), and at most `maxChars` characters (MAX_KEY_CHARS unless said). A `key` (the id,
 * the source: what the inbox records an event by) holds no U+FFFD either. Else the
 * message is undecodable, parked saying why, rather than refused by the database at
 * every attempt or taken for another event.
 */
function storable(
  name: string,
  value: string,
  { key = false, maxChars = MAX_KEY_CHARS }: { key?: boolean; maxChars?: number } = {},
): string {
  if (value.includes('\u0000')) {
    throw new UndecodableMessageError(
      `CloudEvent attribute "${name}" holds a NUL character, which PostgreSQL cannot store`,
    );
  }
  const bad = unsendableCharacter(value);
  if (bad !== undefined) {
    throw new UndecodableMessageError(`CloudEvent attribute "${name}" ${unsendableReason(bad)}`);
  }
  // What a decoder puts for bytes that are not UTF-8: two ids that differ only there
  // would be recorded as one, and the second taken for a duplicate of the first. (Our
  // producers' ids are UUIDs and their sources URI references: neither holds it.)
  if (key && value.includes('\ufffd')) {
    throw new UndecodableMessageError(
      `CloudEvent attribute "${name}" holds U+FFFD, the replacement character: bytes that were not UTF-8 were replaced on the way, and two different values could read as one`,
    );
  }
  // Counted in characters (code points), as the producer counts an aggregate id: an
  // emoji is two UTF-16 units. Counted only when the units alone say it might be over.
  const characters = value.length > maxChars ? [...value].length : value.length;
  if (characters > maxChars) {
    throw new UndecodableMessageError(
      `CloudEvent attribute "${name}" is ${characters} characters long, over the ${maxChars} a consumer keeps`,
    );
  }
  return value;
}

/** RFC 3339, as CloudEvents' `time` is written (any fraction of a second, `Z` or an offset). */
const RFC3339_PARTS =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

/**
 * The `time` attribute; undefined when absent or not an RFC 3339 time (a 30 February, a
 * 24th hour, as Date.parse would roll them over), as if the producer gave none.
 */
function timeOf(text: string | undefined): string | undefined {
  const parts = text === undefined ? null : RFC3339_PARTS.exec(text);
  if (!parts) return undefined;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = parts
    .slice(1, 7)
    .map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  const valid =
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    hour < 24 &&
    minute < 60 &&
    second <= 60;
  return valid ? text : undefined;
}

/**
 * The `sequence` extension as a decimal without zero padding (any amount of it); undefined
 * when absent, not decimal digits, or beyond a bigint, as if the producer gave none.
 */
function sequenceOf(text: string | undefined): string | undefined {
  if (!text || !/^\d+$/.test(text)) return undefined;
  const unpadded = text.replace(/^0+(?=\d)/, '');
  return unpadded.length <= 19 && BigInt(unpadded) <= MAX_SEQUENCE ? unpadded : undefined;
}

function lowerCased(headers: Record<string, string>): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) result[name.toLowerCase()] = value;
  return result;
}

/** NATS binding: header values are percent-encoded UTF-8. A stray `%` is taken literally. */
function percentDecoded(value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function text(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new UndecodableMessageError(`${what} is not valid UTF-8`);
  }
}

function parseJson(source: string, what: string): unknown {
  if (source.trim() === '') return undefined;
  try {
    return JSON.parse(source);
  } catch (error) {
    throw new UndecodableMessageError(
      `${what} is not valid JSON (${error instanceof Error ? error.message : String(error)})`,
    );
  }
}
