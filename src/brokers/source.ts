import type { Logger } from '../common/logger.js';

/**
 * The receiving half of a broker, as `consume()` (src/consumer/) drives it. One
 * implementation per broker, beside its publisher: `nats/source.ts`, `amqp/source.ts`,
 * `kafka/source.ts`. A source only moves messages; decoding, order, retries, the inbox
 * and parking are the consumer's.
 */

/** One message as the broker delivered it, before any decoding. */
export interface Delivery {
  /**
   * The message's headers (NATS headers, AMQP `properties.headers`, Kafka record
   * headers), values as text. AMQP properties that CloudEvents' AMQP binding maps are
   * added as headers too: `message-id` → `cloudEvents:id` when that header is absent.
   */
  headers: Record<string, string>;
  /** The protocol's content type (AMQP `properties.contentType`, else a `content-type` header). */
  contentType: string | undefined;
  body: Uint8Array;
  /** Where it came from, for logs and dead letters: `nats EDUPULSE#42`, `amqp orders`, `kafka edupulse.quiz/2@17`. */
  origin: string;
  /**
   * The aggregate type the message was routed by, where the transport says it: the middle
   * token of a NATS subject `<subject_prefix>.<aggregate_type>.<event_type>`, the first
   * part of an AMQP routing key `<aggregate_type>.<event_type>`, the aggregate type whose
   * Kafka topic it came from (a template with `{aggregate_type}`). Undefined where it does
   * not (a Kafka topic of several aggregate types; a subject of another shape). Two
   * aggregate types may each have an event type of one name: this tells them apart.
   */
  aggregateType?: string | undefined;
  /**
   * Settles the message as done: the effect committed, or the message was parked or
   * skipped. Called at most once. A source whose connection is gone rejects or ignores
   * it; the broker then redelivers the message and the inbox recognises it.
   */
  ack(): Promise<void>;
  /**
   * Tells the broker the message is still being worked on (NATS: +WPI, resetting the
   * ack wait), while its handler runs or it waits behind its aggregate's earlier events;
   * the consumer calls it every `MessageSource.workingIntervalMs`. Optional: brokers
   * without an ack deadline need nothing.
   */
  working?(): void;
  /**
   * True once the broker gave the message to another process of the consumer (Kafka: a
   * rebalance moved its partition; that process reads it from the last commit). The
   * consumer does not start it, nor retry it; one already running finishes and its ack
   * is ignored. Optional: brokers that never take a message back.
   */
  withdrawn?(): boolean;
}

export interface MessageSourceOptions {
  /**
   * The consumer's name: the durable JetStream consumer, the RabbitMQ queue
   * (`<exchange>.<consumer>` unless the URL names one), the Kafka group id.
   */
  consumer: string;
  /** Messages delivered and not yet acked, at most (JetStream max_ack_pending, AMQP prefetch, Kafka pause). */
  maxInFlight: number;
  /**
   * The event types the consumer handles. Kafka subscribes to their topics (the URL's
   * `topic` template per aggregate type); RabbitMQ binds the queue to their routing keys
   * (`<aggregate_type>.<event_type>`); NATS filters nothing (`<subject_prefix>.>`), so
   * other types arrive and meet the consumer's unknown-type policy.
   */
  events: readonly { type: string; aggregateType: string }[];
  logger: Logger;
  /**
   * Where the consumer keeps its inbox, `<database>/<schema>`. A NATS durable consumer
   * carries it, so that a consumer of another inbox under the same name on the same stream
   * (another service's, both of them taking the name `orders`) is refused rather than
   * deleting the durable in turn and splitting the messages between the two.
   */
  inbox?: string;
  /**
   * Where a NATS source keeps the stream sequence it resumes after while it re-creates
   * its durable consumer, so that a start ending between deleting and creating it (the
   * process killed, the server refusing) leaves the position to the next start, in
   * whatever process: `consume()` keeps it in the consumer's database. Without it, in
   * this process's memory.
   */
  resume?: ResumePoints;
}

/** Positions kept for a consumer, by stream: see `MessageSourceOptions.resume`. */
export interface ResumePoints {
  keep(stream: string, afterSeq: number): Promise<void>;
  find(stream: string): Promise<number | undefined>;
  drop(stream: string): Promise<void>;
}

export interface MessageSource {
  /** `nats`, `amqp`, `kafka`: the CloudEvents binding its headers follow. */
  readonly binding: 'nats' | 'amqp' | 'kafka';
  /** The server, password redacted, for messages. */
  readonly location: string;
  /** What it reads, for logs: the stream and durable, the queue, or the topics and group. */
  readonly reading: string;
  /**
   * True when the broker cannot itself keep one aggregate's messages on one consumer
   * process (a JetStream pull consumer shares its messages out among all pullers); the
   * consumer then lets one process of a consumer name receive at a time, by a lease in
   * PostgreSQL, and calls `start` only while it holds it.
   */
  readonly needsLease: boolean;
  /**
   * For a broker with an ack deadline (deliveries have `working`): how often a message
   * not yet acked must be marked as worked on, well within the deadline, so that the
   * broker does not deliver it again while its handler still runs.
   */
  readonly workingIntervalMs?: number | undefined;
  /**
   * Connects, declares what it needs (durable consumer, queue and binding, group) and
   * starts calling `onMessage`, in the broker's delivery order. Resolves once receiving;
   * rejects with BrokerUnavailableError (unreachable) or ConfigError (the broker refuses
   * the declaration). After it resolved, `onLost` is called at most once if the
   * connection or the subscription is lost; the consumer then closes the source and
   * starts it again, and the messages not acked are redelivered by the broker.
   */
  start(onMessage: (delivery: Delivery) => void, onLost: (error: Error) => void): Promise<void>;
  /** One round trip to the broker; rejects with BrokerUnavailableError when it does not answer. */
  check(): Promise<void>;
  /**
   * Messages the broker holds for this consumer that are not yet acknowledged, as the
   * broker reports them: JetStream's pending plus ack-pending; the RabbitMQ queue's ready
   * messages plus this connection's unacked ones; Kafka's group lag (latest offset minus
   * committed offset, over the consumer's topics). Rejects when the broker does not answer.
   */
  backlog(): Promise<number>;
  /** Stops receiving new messages; acks of messages already delivered still work. */
  pause(): Promise<void>;
  /** Releases the connection. Messages not acked are redelivered by the broker. */
  close(): Promise<void>;
}
