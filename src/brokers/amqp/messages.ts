import type amqp from 'amqplib';
import { formatBytes } from '../../common/text.js';
import type { OutboxMessage } from '../broker.js';
import { binaryModeHeaders, bindingPrefix } from '../cloudevents.js';

/** A routing-key word: `.` separates words and `*`, `#` are wildcards in topic bindings. */
function routingWord(token: string): string {
  return token.replace(/[.*#\s]/g, '_');
}

export function amqpRoutingKey(
  message: Pick<OutboxMessage, 'aggregateType' | 'eventType'>,
): string {
  return `${routingWord(message.aggregateType)}.${routingWord(message.eventType)}`;
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
  const { 'content-type': contentType, ...headers } = binaryModeHeaders(
    message,
    source,
    bindingPrefix.amqp,
  );
  const occurredMs = Date.parse(message.occurredAt);
  return {
    persistent: true,
    mandatory: true,
    messageId: message.id,
    contentType: contentType ?? 'application/json',
    // AMQP timestamps are whole seconds.
    timestamp: Math.floor((Number.isNaN(occurredMs) ? Date.now() : occurredMs) / 1000),
    headers,
  };
}
