import type { z } from 'zod';
import type { EventDefinition } from '../events/define.js';

/**
 * An event as a consumer's handler receives it: the CloudEvent's attributes, and `data`
 * checked against (and typed by) the event's `defineEvent` schema. Events of one
 * aggregate reach the handler one at a time, in `sequence` order.
 */
export interface ConsumedEvent<T extends string = string, D = unknown> {
  /** CloudEvents `id`: the event id the outbox gave it (the inbox's key). */
  id: string;
  /** CloudEvents `type`: `quiz-submitted`. Switch on it: `data` then has that event's type. */
  type: T;
  /** CloudEvents `source`: the producing service. */
  source: string;
  /** CloudEvents `subject`: the aggregate id, as the dispatcher publishes it. */
  subject: string | undefined;
  /** CloudEvents `time`: when it happened (RFC 3339). */
  time: string | undefined;
  /**
   * The `sequence` extension (decimal, no padding): the outbox's write order. Increases
   * along one aggregate's events; undefined for events from producers that send none.
   */
  sequence: string | undefined;
  /** From the event's definition: `quiz`. */
  aggregateType: string;
  /** Whose event it is: `subject`, else the `partitionkey` extension. */
  aggregateId: string;
  /** The payload, valid for the event's schema. */
  data: D;
  /**
   * W3C trace context of the message: the dispatcher's PRODUCER span's when the dispatcher
   * has an OpenTelemetry SDK (linked to the producer's), else the producer's transaction's
   * as stored, when it had one. Continue the trace with `propagation.extract`.
   */
  traceparent: string | undefined;
  tracestate: string | undefined;
  /**
   * The event's other CloudEvents extension attributes, by name: the headers the producer
   * gave it with such names (`headers: { tenant: 'north' }` arrives as `{ tenant: 'north' }`).
   */
  extensions: Record<string, string>;
  /** Where the broker delivered it from: `nats EDUPULSE#42`, `amqp orders`, `kafka edupulse.quiz/2@17`. */
  origin: string;
  /** 1 on the first try in this process, 2 on the first retry, … */
  attempt: number;
}

// biome-ignore lint/suspicious/noExplicitAny: any event definition, whatever its schema
export type AnyEventDefinition = EventDefinition<any, string>;

/** The event a handler receives for a definition: `ConsumedEventOf<typeof QuizSubmitted>`. */
export type ConsumedEventOf<D extends AnyEventDefinition> =
  D extends EventDefinition<infer S, infer T> ? ConsumedEvent<T, z.output<S>> : never;
