/** A claimed outbox row as brokers receive it. */
export interface OutboxMessage {
  /** Event id (uuid): CloudEvents `id`, broker dedup id. */
  id: string;
  /** Outbox sequence number, as a decimal string (bigint). */
  seq: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  /** The payload JSON exactly as stored. */
  payload: string;
  headers: Record<string, string>;
  partition: number;
  /** RFC 3339, UTC. */
  occurredAt: string;
  /** Failed publishes so far. */
  attempts: number;
}

/**
 * CloudEvents 1.0 context attributes of a message. `sequence` is zero-padded so that it
 * orders as a string, as the sequence extension requires; `partitionkey` is the aggregate id.
 */
export function cloudEventAttributes(
  message: OutboxMessage,
  source: string,
): Record<string, string> {
  const attributes: Record<string, string> = {
    specversion: '1.0',
    id: message.id,
    source,
    type: message.eventType,
    subject: message.aggregateId,
    time: message.occurredAt,
    datacontenttype: 'application/json',
    sequence: message.seq.padStart(19, '0'),
    partitionkey: message.aggregateId,
  };
  const traceparent = message.headers.traceparent;
  if (traceparent) attributes.traceparent = traceparent;
  const tracestate = message.headers.tracestate;
  if (tracestate) attributes.tracestate = tracestate;
  return attributes;
}

/** A CloudEvent in structured JSON mode, one line; `data` is the stored payload, not re-encoded. */
export function structuredCloudEvent(message: OutboxMessage, source: string): string {
  const attributes = JSON.stringify(cloudEventAttributes(message, source));
  // A payload written by hand may be pretty-printed; one event stays on one line.
  const data = /[\r\n]/.test(message.payload)
    ? JSON.stringify(JSON.parse(message.payload))
    : message.payload;
  return `${attributes.slice(0, -1)},"data":${data}}`;
}
