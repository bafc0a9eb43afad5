import { ConfigError } from '../common/errors.js';
import type { OutboxMessage } from './broker.js';

/** RFC 3986's characters, with `%` only as the start of an escape. */
const URI_REFERENCE = /^(?:[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;

/** The longest source taken, in characters: a URI, not a document. */
const MAX_SOURCE_CHARS = 2048;

/** Whether `reference` reads as a URI or a relative reference (`http://[bad` does not). */
function resolves(reference: string): boolean {
  try {
    new URL(reference, 'http://relative.invalid/');
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks a CloudEvents `source`: a non-empty URI-reference such as `/edupulse` or
 * `https://edupulse.example/lessons`. Consumers refuse events without one.
 */
export function assertCloudEventsSource(
  source: unknown,
  setting: string,
): asserts source is string {
  if (typeof source === 'string' && source.length > MAX_SOURCE_CHARS) {
    throw new ConfigError(
      setting,
      `is ${source.length} characters long, over the ${MAX_SOURCE_CHARS} a CloudEvents source may have here`,
    );
  }
  if (typeof source !== 'string' || !URI_REFERENCE.test(source) || !resolves(source)) {
    const shown =
      typeof source === 'string' ? JSON.stringify(source.slice(0, 100)) : String(source);
    throw new ConfigError(
      setting,
      `${shown} is not a CloudEvents source: a non-empty URI-reference is needed, such as "/edupulse" or "https://edupulse.example/lessons" (spaces and other characters outside URIs percent-encoded)`,
    );
  }
}

/** The attributes the outbox sets, in the order they are published. */
const SET_ATTRIBUTES = [
  'specversion',
  'id',
  'source',
  'type',
  'subject',
  'time',
  'sequence',
  'partitionkey',
] as const;
type SetAttribute = (typeof SET_ATTRIBUTES)[number];

/**
 * The CloudEvents context attributes (and `data`): a header of one of these names is not
 * published. The outbox sets each itself but `dataschema`, which must be a URI: a header
 * of any text cannot stand in for it.
 */
const OWN_ATTRIBUTES = new Set<string>([
  ...SET_ATTRIBUTES,
  'datacontenttype',
  'dataschema',
  'data',
  'data_base64',
]);

/** A CloudEvents extension attribute's name: lower-case ASCII letters and digits, at most 20. */
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;

/**
 * Whether an outbox header of this name is published, as a CloudEvents extension
 * attribute: `traceparent`, `tracestate`, `tenant`, `correlationid`… Names with other
 * characters (`x-request-id`), longer than 20, or of an attribute the outbox sets itself
 * (`id`, `type`, `sequence`, …) stay in the outbox row only.
 */
export function isPublishedHeader(name: string): boolean {
  return EXTENSION_NAME.test(name) && !OWN_ATTRIBUTES.has(name);
}

/**
 * CloudEvents 1.0 context attributes of a message. `sequence` is zero-padded so that it
 * orders as a string, as the sequence extension requires; `partitionkey` is the aggregate id.
 * The headers named as extension attributes follow (`isPublishedHeader`).
 */
export function cloudEventAttributes(
  message: OutboxMessage,
  source: string,
): Record<string, string> {
  return prefixedAttributes(message, source, '', 'datacontenttype');
}

/**
 * The UTF-16 length of the text of cloudEventAttributes that varies from message to
 * message (the aggregate id counts twice: subject and partitionkey), header names
 * included: a cheap bound on a binding's header bytes, so the exact size is computed
 * only for a message that may be near a limit.
 */
export function attributesTextLength(message: OutboxMessage, source: string): number {
  let length =
    2 * message.aggregateId.length +
    message.eventType.length +
    message.id.length +
    message.occurredAt.length +
    source.length;
  for (const name in message.headers) length += name.length + (message.headers[name]?.length ?? 0);
  return length;
}

/**
 * A CloudEvent in structured JSON mode, one line; `data` is the stored payload byte for
 * byte (big numbers, duplicate keys and key order as written), except that line breaks
 * are removed so the event stays on one line. That is safe on JSON as PostgreSQL stores
 * it: a raw line break can only stand between tokens (inside a string it must be
 * escaped), and two tokens a line break separated never run together.
 */
export function structuredCloudEvent(message: OutboxMessage, source: string): string {
  const attributes = JSON.stringify(cloudEventAttributes(message, source));
  const data = /[\r\n]/.test(message.payload)
    ? message.payload.replace(/[\r\n]+/g, '')
    : message.payload;
  return `${attributes.slice(0, -1)},"data":${data}}`;
}

/** Header-name prefixes of the CloudEvents protocol bindings in binary content mode. */
export const bindingPrefix = {
  /** NATS binding: `ce-id`, `ce-type`, … */
  nats: 'ce-',
  /** Kafka binding: `ce_id`, `ce_type`, … */
  kafka: 'ce_',
  /** AMQP binding (application properties; RabbitMQ message headers): `cloudEvents:id`, … */
  amqp: 'cloudEvents:',
} as const;

/** Per binding prefix, the prefixed name of each attribute the outbox sets: made once. */
const prefixedNames = new Map<string, Record<SetAttribute, string>>();

function prefixed(prefix: string): Record<SetAttribute, string> {
  let names = prefixedNames.get(prefix);
  if (!names) {
    names = Object.fromEntries(SET_ATTRIBUTES.map((name) => [name, `${prefix}${name}`])) as Record<
      SetAttribute,
      string
    >;
    prefixedNames.set(prefix, names);
  }
  return names;
}

/**
 * The attributes of a message as binary-content-mode headers: every attribute under the
 * binding's prefix, except `datacontenttype`, which is the protocol's own content type
 * (`content-type` here; AMQP carries it in the message properties instead).
 */
export function binaryModeHeaders(
  message: OutboxMessage,
  source: string,
  prefix: string,
): Record<string, string> {
  return prefixedAttributes(message, source, prefix, 'content-type');
}

/**
 * cloudEventAttributes, each name under `prefix`, the content type under `contentType`
 * (left out when undefined, as AMQP carries it in the message properties). Written
 * directly, the prefixed names made once per prefix: it runs for every message published.
 */
export function prefixedAttributes(
  message: OutboxMessage,
  source: string,
  prefix: string,
  contentType: string | undefined,
): Record<string, string> {
  const name = prefixed(prefix);
  const attributes: Record<string, string> = {};
  attributes[name.specversion] = '1.0';
  attributes[name.id] = message.id;
  attributes[name.source] = source;
  attributes[name.type] = message.eventType;
  attributes[name.subject] = message.aggregateId;
  attributes[name.time] = message.occurredAt;
  if (contentType !== undefined) attributes[contentType] = 'application/json';
  attributes[name.sequence] = message.seq.padStart(19, '0');
  attributes[name.partitionkey] = message.aggregateId;
  const headers = message.headers;
  for (const header in headers) {
    const value = headers[header];
    if (value && isPublishedHeader(header)) attributes[`${prefix}${header}`] = value;
  }
  return attributes;
}
