import type amqp from 'amqplib';
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
