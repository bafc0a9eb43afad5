import type amqp from 'amqplib';
import { formatBytes } from '../../common/text.js';
import type { OutboxMessage } from '../broker.js';
import { attributesTextLength, bindingPrefix, prefixedAttributes } from '../cloudevents.js';

/** A routing-key word: `.` separates words and `*`, `#` are wildcards in topic bindings. */
function routingWord(token: string): string {
  return token.replace(/[.*#\s]/g, '_');
}

export function amqpRoutingKey(
  message: Pick<OutboxMessage, 'aggregateType' | 'eventType'>,
): string {
  return `${routingWord(message.aggregateType)}.${routingWord(message.eventType)}`;
}

/** A routing key, and why it cannot be sent (undefined when it can). */
export interface Routing {
  key: string;
  refusal: string | undefined;
}

/** Routings by aggregate type, then event type: a few pairs, each computed once. */
const routings = new Map<string, Map<string, Routing>>();
/** Pairs kept before the cache starts again: a bound against types without end. */
const ROUTINGS_KEPT = 4096;
let routingsKept = 0;

/** amqpRoutingKey and routingKeyRefusal of a message, remembered for its two types. */
export function routingOf(message: Pick<OutboxMessage, 'aggregateType' | 'eventType'>): Routing {
  let byEvent = routings.get(message.aggregateType);
  let routing = byEvent?.get(message.eventType);
  if (routing) return routing;
  const key = amqpRoutingKey(message);
  routing = { key, refusal: routingKeyRefusal(key) };
  if (routingsKept >= ROUTINGS_KEPT) {
    routings.clear();
    routingsKept = 0;
    byEvent = undefined;
  }
  if (!byEvent) {
    byEvent = new Map();
    routings.set(message.aggregateType, byEvent);
  }
  byEvent.set(message.eventType, routing);
  routingsKept++;
  return routing;
}

/**
 * Why `routingKey` cannot be sent: over the 255 bytes of an AMQP short string (amqplib
 * refuses to encode it). Undefined when it fits.
 */
export function routingKeyRefusal(routingKey: string): string | undefined {
  const keyBytes = Buffer.byteLength(routingKey);
  return keyBytes > 255
    ? `aggregate_type and event_type: the routing key "<aggregate_type>.<event_type>" is ${formatBytes(keyBytes)}, over AMQP's limit of 255 bytes`
    : undefined;
}

/** Message properties: CloudEvents attributes as `cloudEvents:*` headers, the content type as the AMQP property. */
export function amqpPublishOptions(message: OutboxMessage, source: string): amqp.Options.Publish {
  const occurredMs = Date.parse(message.occurredAt);
  return {
    persistent: true,
    mandatory: true,
    messageId: message.id,
    contentType: 'application/json',
    // AMQP timestamps are whole seconds since 1970, unsigned: an earlier time has none
    // (the CloudEvents `time` attribute carries it; amqplib refuses a negative one).
    ...timestampOf(Number.isNaN(occurredMs) ? Date.now() : occurredMs),
    headers: prefixedAttributes(message, source, bindingPrefix.amqp, undefined),
  };
}

function timestampOf(ms: number): { timestamp?: number } {
  const seconds = Math.floor(ms / 1000);
  return seconds >= 0 ? { timestamp: seconds } : {};
}

/** amqplib's frame_max when the URL gives none (the server may lower it). */
export const AMQP_DEFAULT_FRAME_MAX = 131072;

/** A frame's bytes around its payload: type, channel and size before, the end marker after. */
const FRAME_OVERHEAD = 8;

/**
 * The payload bytes of the content header frame amqplib writes for `options` (as
 * amqpPublishOptions makes them: string headers, content type, message id, delivery mode,
 * timestamp): class, weight, body size and property flags, then each property.
 */
export function contentHeaderBytes(options: amqp.Options.Publish): number {
  const shortString = (value: string | undefined) =>
    value === undefined ? 0 : 1 + Buffer.byteLength(value);
  return (
    14 +
    shortString(options.contentType) +
    headerTableBytes(options) +
    (options.persistent !== undefined ? 1 : 0) +
    shortString(options.messageId) +
    (options.timestamp !== undefined ? 8 : 0)
  );
}

/** The encoded bytes of the headers' field table (all string values), its length included. */
function headerTableBytes(options: amqp.Options.Publish): number {
  let table = 4;
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (value === undefined) continue;
    // Name as a short string, a type tag, a long string's length and its bytes.
    table += 1 + Buffer.byteLength(name) + 1 + 4 + Buffer.byteLength(String(value));
  }
  return table;
}

/** The bytes amqplib encodes a field table in (its scratch buffer); a larger one it refuses. */
const AMQPLIB_TABLE_MAX = 65536;

/**
 * Why a message's properties cannot go in one frame of `frameMax` bytes, as AMQP requires
 * of its content header (RabbitMQ closes the whole connection with FRAME_ERROR, which would
 * look like an outage and be retried for ever). Undefined when they fit.
 */
export function contentHeaderRefusal(
  options: amqp.Options.Publish,
  frameMax: number,
): string | undefined {
  const table = headerTableBytes(options);
  if (table > AMQPLIB_TABLE_MAX) {
    return `headers: the CloudEvents attributes and headers (aggregate_id among them) encode to ${formatBytes(table)}, over the ${formatBytes(AMQPLIB_TABLE_MAX)} amqplib encodes a header table in`;
  }
  const bytes = contentHeaderBytes(options);
  const room = frameMax - FRAME_OVERHEAD;
  return bytes > room
    ? `headers: the message's properties (the CloudEvents attributes and headers, aggregate_id among them) take ${formatBytes(bytes)}, over the ${formatBytes(room)} one frame holds (frame_max ${frameMax})`
    : undefined;
}

/**
 * contentHeaderRefusal for a message as it would be published, computed exactly only when
 * a bound (three UTF-8 bytes per UTF-16 unit of its variable text, plus the fixed
 * attributes) says it might not fit: the check runs for every claimed message.
 */
export function headerFrameRefusal(
  message: OutboxMessage,
  source: string,
  frameMax: number,
): string | undefined {
  const room = Math.min(frameMax - FRAME_OVERHEAD, AMQPLIB_TABLE_MAX);
  if (3 * attributesTextLength(message, source) + 1024 <= room) {
    return undefined;
  }
  return contentHeaderRefusal(amqpPublishOptions(message, source), frameMax);
}
