/**
 * `edupulse-outbox/consumer`: the consuming half.
 *
 * - consumer: a named reader of the events (`grades`); it has its own durable JetStream
 *   consumer, RabbitMQ queue or Kafka group, and its own inbox records.
 * - inbox: the table in which a consumer records each event id in the same transaction as
 *   the event's effect, so that a redelivered event is not applied twice.
 * - consumer dead letter: a message the consumer could not use (unreadable, invalid, or a
 *   handler that failed every attempt), parked in `consumer_dead_letter` with its reason.
 */
export { consume } from './consume.js';
export { type DecodedCloudEvent, decodeCloudEvent, UndecodableMessageError } from './decode.js';
export type { AnyEventDefinition, ConsumedEvent, ConsumedEventOf } from './event.js';
export type { Consumer, ConsumerEvents, ConsumerHealth, ConsumerStats } from './events.js';
export {
  createInbox,
  type Inbox,
  type InboxEvent,
  type InboxOptions,
  type InboxOutcome,
  type InboxResult,
  StaleEventError,
  type StalePolicy,
} from './inbox.js';
export type { ConsumeOptions, HandlerContext } from './options.js';
export type { Parked } from './park.js';
