/**
 * EduPulse Outbox — a transactional outbox for PostgreSQL.
 *
 * Terminology:
 * - event: one domain fact (`lesson-published`), typed, validated, with a JSON payload.
 * - aggregate: the entity an event is about (`lesson` 6f1…). One aggregate's events reach
 *   the broker in the order they were enqueued.
 * - outbox row: an event stored in the `outbox` table and not yet published.
 * - dispatcher: the loop that claims rows, publishes them and removes them. Several may run.
 * - broker: where events are published (`EventBroker`): log, memory; NATS, RabbitMQ, Kafka.
 * - partition: `hash(aggregate_id) mod P`, stored on every row (P = 64 unless the schema
 *   was created with another count); the unit of ownership when dispatchers share the work.
 * - dead letter: an event that failed `maxAttempts` times, parked with its last error in
 *   `outbox_dead_letter` for an operator.
 */
export {
  type DeadLetter,
  type DeadLetterDetail,
  type DeadLetterFilter,
  discardDeadLetters,
  listDeadLetters,
  purgeDeadLetters,
  retryDeadLetters,
  showDeadLetter,
} from './admin/dead-letters.js';
export {
  type BacklogShare,
  type DispatcherOwnership,
  type OutboxStatus,
  outboxStatus,
} from './admin/status.js';
export { type AmqpSettings, type AmqpTls, amqpSettings } from './brokers/amqp/settings.js';
export type {
  ConnectOptions,
  EventBroker,
  OutboxMessage,
  PublishResult,
} from './brokers/broker.js';
export {
  binaryModeHeaders,
  bindingPrefix,
  cloudEventAttributes,
  structuredCloudEvent,
} from './brokers/cloudevents.js';
export { type BrokerFromUrlOptions, brokerFromUrl } from './brokers/index.js';
export { type KafkaSasl, type KafkaSettings, kafkaSettings } from './brokers/kafka/settings.js';
export { LogBroker, type LogBrokerOptions } from './brokers/log.js';
export { MemoryBroker, type MemoryBrokerOptions } from './brokers/memory.js';
export type { NatsAuth } from './brokers/nats/auth.js';
export { type NatsSettings, natsSettings } from './brokers/nats/settings.js';
export type { NatsTls } from './brokers/nats/tls.js';
export {
  BrokerUnavailableError,
  ConfigError,
  OutboxError,
  PrivilegeError,
  SchemaVersionError,
  ValidationError,
} from './common/errors.js';
export type { LogFn, Logger } from './common/logger.js';
export { redactUrl } from './common/url.js';
export type {
  Database,
  DatabaseCallOptions,
  DatabaseSession,
  TransactionExecutor,
} from './db/database.js';
export {
  type AdapterOptions,
  autocommit,
  type Executor,
  type TransactionLike,
  toExecutor,
} from './db/executor.js';
export { notifyChannel } from './db/identifier.js';
export {
  assertSchemaCurrent,
  loadMigrations,
  type MigrateOptions,
  type Migration,
  type MigrationStatus,
  migrate,
  migrationScript,
  migrationStatus,
  outboxTables,
  readProducerNotify,
  setProducerNotify,
} from './db/migrate.js';
export { type PgDatabaseOptions, pgDatabase } from './db/pg.js';
export { type PGliteLike, type PGliteTransactionLike, pgliteDatabase } from './db/pglite.js';
export { createDispatcher, type Dispatcher } from './dispatcher/dispatcher.js';
export type {
  BatchReport,
  DeadLetterEvent,
  DispatcherEvents,
  DispatcherStats,
  PurgeReport,
  SettledBatch,
  UnavailableEvent,
} from './dispatcher/events.js';
export type { DispatcherHealth } from './dispatcher/health.js';
export type { DispatcherOptions } from './dispatcher/options.js';
export {
  type DeadLetterPolicy,
  dispatcherSettings,
  type WholeNumberSetting,
} from './dispatcher/settings.js';
export { stopOnSignals } from './dispatcher/signals.js';
export {
  catalogue,
  EnrollmentCreated,
  LessonCompleted,
  LessonPublished,
  QuizSubmitted,
} from './events/catalogue.js';
export {
  defineEvent,
  type EventDefinition,
  type EventOptions,
  type EventSpec,
  type OutboxEvent,
} from './events/define.js';
export { createOutbox, type Outbox, type OutboxOptions } from './outbox/outbox.js';
