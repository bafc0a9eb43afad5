import {
  type BeforeApplicationShutdown,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { assertBroker, type EventBroker } from '../brokers/broker.js';
import { brokerFromUrl } from '../brokers/index.js';
import { ConfigError, renamedSetting } from '../common/errors.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { assertDatabase, type Database } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { pgDatabase } from '../db/pg.js';
import { createDispatcher, type Dispatcher } from '../dispatcher/dispatcher.js';
import { dispatcherOptions } from '../dispatcher/options.js';
import { createOutbox, type Outbox } from '../outbox/outbox.js';
import { nestLogger } from './logger.js';
import type { OutboxModuleOptions } from './options.js';

export const moduleOptions = optionNames<OutboxModuleOptions>({
  schema: true,
  database: true,
  broker: true,
  source: true,
  dispatcher: true,
  dispatch: true,
  migrate: true,
  maxPayloadBytes: true,
});

/**
 * What a misspelt option is held against: `isGlobal`, which the module builder takes out
 * before the options reach here, too, so that `isGlobl` gets its suggestion.
 */
const withExtras: ReadonlySet<string> = new Set([...moduleOptions, 'isGlobal']);

/** The dispatcher's options but those the module sets itself. */
const moduleDispatcherOptions: ReadonlySet<string> = new Set(
  [...dispatcherOptions].filter((name) => !['db', 'broker', 'schema'].includes(name)),
);

/**
 * What the module made from its options, and their lifecycle: Nest calls the hooks of
 * this provider. Made when the module is instantiated, so a bad option fails there;
 * nothing connects before `onModuleInit`.
 */
export class OutboxLifecycle
  implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown
{
  readonly database: Database;
  readonly outbox: Outbox;
  readonly dispatcher: Dispatcher | null;
  private readonly schema: string;
  private readonly migrate: boolean;
  /** Opened here from a connection string, so closed here; a given `Database` is its owner's. */
  private readonly ownsDatabase: boolean;
  private closed: Promise<void> | undefined;

  constructor(options: OutboxModuleOptions) {
    assertKnownOptions('OutboxModule', options, withExtras);
    if (options.dispatcher) {
      assertKnownOptions(
        "OutboxModule's dispatcher",
        options.dispatcher,
        moduleDispatcherOptions,
        'dispatcher.',
      );
    }
    this.schema = options.schema ?? 'public';
    this.migrate = options.migrate ?? false;
    const { database } = options;
    if (!database) {
      throw new ConfigError(
        'database',
        'is required: a Database (pgDatabase(…)) or a connection string',
      );
    }
    const broker = (options.dispatch ?? true) ? resolveBroker(options) : undefined;
    this.outbox = createOutbox({
      schema: this.schema,
      ...(options.maxPayloadBytes === undefined
        ? {}
        : { maxPayloadBytes: options.maxPayloadBytes }),
    });
    this.ownsDatabase = typeof database === 'string';
    if (typeof database !== 'string') assertDatabase(database, 'database');
    this.database = typeof database === 'string' ? databaseAt(database) : database;
    this.dispatcher = broker ? this.dispatcherFor(options, broker) : null;
  }

  /** The embedded dispatcher; a bad one of `dispatcher`'s options is named under it. */
  private dispatcherFor(options: OutboxModuleOptions, broker: EventBroker): Dispatcher {
    try {
      return createDispatcher({
        logger: nestLogger(new Logger('Outbox')),
        ...options.dispatcher,
        db: this.database,
        broker,
        schema: this.schema,
      });
    } catch (error) {
      if (error instanceof ConfigError && moduleDispatcherOptions.has(error.setting)) {
        throw renamedSetting(error, `dispatcher.${error.setting}`);
      }
      throw error;
    }
  }

  async onModuleInit(): Promise<void> {
    if (!this.migrate) return;
    await this.releaseOnFailure(() => migrate(this.database, this.schema));
  }

  /**
   * After every module is initialised. `start()` checks the schema and connects the
   * broker (unless `waitForBroker: false`); its error fails the bootstrap.
   */
  async onApplicationBootstrap(): Promise<void> {
    const { dispatcher } = this;
    if (dispatcher) await this.releaseOnFailure(() => dispatcher.start());
  }

  /** Before the shutdown hooks: the batches in flight settle while everything is still open. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.dispatcher?.stop();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  /**
   * A bootstrap that fails leaves no application to close: release what the module holds
   * (an aborted start may have opened some of the dispatcher's connections), then rethrow.
   */
  private async releaseOnFailure(work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (error) {
      await this.close().catch(() => {});
      throw error;
    }
  }

  /** Stops the dispatcher (idempotent) and closes the database the module opened, once. */
  private close(): Promise<void> {
    this.closed ??= (async () => {
      try {
        await this.dispatcher?.stop();
      } finally {
        if (this.ownsDatabase) await this.database.close();
      }
    })();
    return this.closed;
  }
}

function resolveBroker(options: OutboxModuleOptions): EventBroker {
  const { broker } = options;
  if (!broker) {
    throw new ConfigError(
      'broker',
      'is required to dispatch: an EventBroker or a broker URL (or dispatch: false to enqueue only)',
    );
  }
  if (typeof broker === 'string') {
    return brokerFromUrl(broker, { source: options.source ?? '/edupulse' });
  }
  assertBroker(broker, 'broker');
  return broker;
}

/** The module's own pool for a connection string; a bad one is named as the `database` option. */
function databaseAt(url: string): Database {
  try {
    return pgDatabase({ connectionString: url, applicationName: 'edupulse-outbox nestjs' });
  } catch (error) {
    if (error instanceof ConfigError && error.setting === 'connectionString') {
      throw renamedSetting(error, 'database');
    }
    throw error;
  }
}
