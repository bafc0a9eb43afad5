import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { EventBroker } from '../brokers/broker.js';
import type { Database } from '../db/database.js';
import type { DispatcherOptions } from '../dispatcher/options.js';

/** `OutboxModule.forRoot(options)`, or what the factory of `forRootAsync` returns. */
export interface OutboxModuleOptions {
  /** Schema holding the outbox tables, for the outbox, the dispatcher and `migrate`. Default `public`. */
  schema?: string;
  /**
   * Where the outbox lives: a `Database` (`pgDatabase({ connectionString })`), which you
   * close; or a connection string, from which the module opens a `pgDatabase` that it
   * closes on shutdown.
   */
  database: Database | string;
  /**
   * Where the embedded dispatcher publishes: an `EventBroker`, or a broker URL
   * (`nats://…`, `amqp://…`, `kafka://…`, `log:`; see `brokerFromUrl`). The dispatcher
   * connects it on start and closes it on stop. Required unless `dispatch` is false.
   */
  broker?: EventBroker | string;
  /** CloudEvents `source` of every event, for a broker given by URL. Default `/edupulse`. */
  source?: string;
  /**
   * The dispatcher's options (`createDispatcher`) but the database, broker and schema,
   * which are the module's. Its logger defaults to Nest's `Logger` (context `Outbox`).
   */
  dispatcher?: Omit<DispatcherOptions, 'db' | 'broker' | 'schema'>;
  /**
   * Run a dispatcher in this application: started when the application has bootstrapped
   * (a dispatcher that cannot start fails the bootstrap with its error), stopped at
   * shutdown. `false`: enqueue only, another process dispatches. Default true.
   */
  dispatch?: boolean;
  /** Apply the migrations (`migrate(database, schema)`) when the module initialises. Default false. */
  migrate?: boolean;
  /** The injected outbox's `maxPayloadBytes` (`createOutbox`). Default: no limit. */
  maxPayloadBytes?: number;
}

export const {
  ConfigurableModuleClass: ConfigurableOutboxModule,
  MODULE_OPTIONS_TOKEN: OUTBOX_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<OutboxModuleOptions>({ moduleName: 'Outbox' })
  .setClassMethodName('forRoot')
  // Global by default, as one outbox serves the whole application: feature modules inject
  // it without importing the module again. `isGlobal: false` makes it an ordinary import.
  .setExtras({ isGlobal: true }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();

/** What `forRoot` takes: the options, and `isGlobal` (default true). */
export type OutboxModuleForRootOptions = typeof OPTIONS_TYPE;
/** What `forRootAsync` takes: `imports`, `inject`, `useFactory` (or `useClass`), `isGlobal`. */
export type OutboxModuleAsyncOptions = typeof ASYNC_OPTIONS_TYPE;
