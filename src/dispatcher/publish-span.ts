import {
  context,
  type Link,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { OutboxMessage, PublishResult } from '../brokers/broker.js';
import { errorMessage } from '../common/errors.js';
import { TRACE_HEADERS, tracer } from '../common/trace-context.js';

/** `messaging.system` of the semantic conventions for our broker names. */
const MESSAGING_SYSTEM: Record<string, string> = { amqp: 'rabbitmq', nats: 'nats', kafka: 'kafka' };

/**
 * Publishes `round` with one PRODUCER span per message, linked to the context stored
 * with the event at enqueue; the message carries the span's own `traceparent` (sampled or
 * not), so a consumer's span becomes its child. Each span ends with the broker's answer
 * for its message (status ERROR with the reason when refused or unanswered).
 */
export async function publishTraced(
  brokerName: string,
  round: readonly OutboxMessage[],
  publish: (round: readonly OutboxMessage[]) => Promise<PublishResult[]>,
): Promise<PublishResult[]> {
  const first = round[0];
  if (!first) return publish(round);
  const spans: Span[] = [];
  const traced: OutboxMessage[] = [];
  for (const message of round) {
    const stored = trace.getSpanContext(propagation.extract(context.active(), message.headers));
    const links: Link[] = stored && trace.isSpanContextValid(stored) ? [{ context: stored }] : [];
    const span = tracer().startSpan(
      `publish ${message.eventType}`,
      {
        kind: SpanKind.PRODUCER,
        // A trace of its own, whatever span started the dispatcher: a batch publishes
        // many requests' events, each linked.
        root: true,
        links,
        attributes: {
          'messaging.system': MESSAGING_SYSTEM[brokerName] ?? brokerName,
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'publish',
          'messaging.message.id': message.id,
          'outbox.event_type': message.eventType,
          'outbox.aggregate_type': message.aggregateType,
          'outbox.aggregate_id': message.aggregateId,
          'outbox.attempt': message.attempts + 1,
        },
      },
      context.active(),
    );
    // No SDK: no span has a context of its own, so leave the batch exactly as it is. A
    // span the SDK's sampler leaves out has one: the message carries it (flags 00), so a
    // consumer's parent-based sampler leaves its span out too.
    if (!trace.isSpanContextValid(span.spanContext())) {
      for (const started of spans) started.end();
      return publish(round);
    }
    const headers = { ...message.headers };
    for (const name of TRACE_HEADERS) delete headers[name];
    propagation.inject(trace.setSpan(context.active(), span), headers);
    // A provider with no propagator that writes `traceparent` (none set, or B3 alone):
    // the stored context goes on as it came, rather than dropped.
    if (headers.traceparent === undefined) {
      for (const name of TRACE_HEADERS) {
        const stored = message.headers[name];
        if (stored !== undefined) headers[name] = stored;
      }
    }
    spans.push(span);
    traced.push({ ...message, headers });
  }
  let results: PublishResult[];
  try {
    results = await publish(traced);
  } catch (error) {
    for (const span of spans) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
      span.end();
    }
    throw error;
  }
  spans.forEach((span, i) => {
    const result = results[i];
    if (result && !result.ok) span.setStatus({ code: SpanStatusCode.ERROR, message: result.error });
    span.end();
  });
  return results;
}
