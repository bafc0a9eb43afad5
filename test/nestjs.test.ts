/**
 * The Nest module in real Nest application contexts, against the real PostgreSQL and
 * NATS: a service injecting the outbox enqueues in its transaction, the embedded
 * dispatcher publishes, `app.close()` stops it and closes what the module opened. Each
 * test has its own schema and its own stream `T_<random>`, deleted afterwards.
 *
 * The decorators are applied as calls (`InjectOutbox()(Service, undefined, 0)`): the
 * tests, like the library, are compiled without `experimentalDecorators`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import {
  type DynamicModule,
  Inject,
  Injectable,
  Module,
  type Provider,
  ServiceUnavailableException,
  type Type,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BrokerUnavailableError,
  ConfigError,
  type Database,
  type Dispatcher,
  LessonPublished,
  type Outbox,
  pgDatabase,
} from '../src/index.js';
import {
  DISPATCHER,
  InjectOutbox,
  InjectOutboxDatabase,
  OUTBOX,
  OUTBOX_DATABASE,
  OutboxHealthIndicator,
  OutboxModule,
} from '../src/nestjs/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { consumeStream, deleteStream, type NatsReceived } from './helpers/nats-consumer.js';
import { waitFor } from './helpers/wait.js';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** The lesson table of the test's schema, `"t_nestjs_…".lesson`. */
const LESSON_TABLE = Symbol('LESSON_TABLE');

/** A service as an application writes it: its own row and the event, in one transaction. */
class LessonService {
  constructor(
    readonly outbox: Outbox,
    readonly database: Database,
    readonly table: string,
  ) {}

  /** Publishes a lesson; `fail` throws after the enqueue, inside the transaction. */
  publish(title: string, fail = false): Promise<string> {
    const lessonId = randomUUID();
    return this.database.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${this.table} (id, title) VALUES ($1, $2)`, [lessonId, title]);
      await this.outbox.enqueue(
        tx,
        LessonPublished.create({
          lesson_id: lessonId,
          author_id: randomUUID(),
          title,
          published_at: new Date().toISOString(),
        }),
      );
      if (fail) throw new Error('the lesson cannot be published');
      return lessonId;
    });
  }
}
Injectable()(LessonService);
InjectOutbox()(LessonService, undefined, 0);
InjectOutboxDatabase()(LessonService, undefined, 1);
Inject(LESSON_TABLE)(LessonService, undefined, 2);

/** The service and its table, created in `schema` (and the schema with it). */
async function lessons(db: Database, schema: string): Promise<Provider[]> {
  const table = `"${schema}".lesson`;
  await db.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  await db.query(`CREATE TABLE ${table} (id uuid PRIMARY KEY, title text NOT NULL)`);
  return [LessonService, { provide: LESSON_TABLE, useValue: table }];
}

function appModule(imports: (Type | DynamicModule)[], providers: Provider[] = []): Type {
  class AppModule {}
  Module({ imports, providers })(AppModule);
  return AppModule;
}

const start = (module: Type) =>
  NestFactory.createApplicationContext(module, { logger: false, abortOnError: false });

/** Everything a test opened, released after it whatever happened. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function testSchema(migrated = true): Promise<TestSchema> {
  const test = await createPgTestSchema('nestjs', { migrate: migrated });
  cleanups.push(() => test.drop());
  return test;
}

/** A stream of this test's own, deleted afterwards; the broker creates it on connect. */
function natsBroker(): string {
  const id = randomBytes(5).toString('hex');
  cleanups.push(() => deleteStream(NATS_URL, `T_${id}`));
  return `${NATS_URL}?stream=T_${id}&subject_prefix=t${id}`;
}

async function readStream(brokerUrl: string) {
  const stream = new URL(brokerUrl).searchParams.get('stream') ?? '';
  const consumer = await consumeStream(NATS_URL, stream);
  cleanups.push(() => consumer.close());
  return consumer.received;
}

const lessonIds = (received: NatsReceived[]) =>
  received.map((m) => (JSON.parse(m.body) as { lesson_id: string }).lesson_id);

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** PG_URL naming its connections `tag`, so that they can be counted. */
function taggedUrl(tag: string): string {
  const url = new URL(PG_URL);
  url.searchParams.set('application_name', tag);
  return url.href;
}

const connections = async (db: Database, tag: string) =>
  (
    await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
      [tag],
    )
  ).rows[0]?.n;

const pending = async (db: Database, schema: string) =>
  (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".outbox`)).rows[0]?.n;

describe('OutboxModule', () => {
  it('publishes what a service enqueued in its committed transaction, and stops on close', async () => {
    // Not migrated: the module does it at init (migrate: true).
    const { db, schema } = await testSchema(false);
    const broker = natsBroker();
    const app = await start(
      appModule(
        [OutboxModule.forRoot({ database: taggedUrl(schema), schema, broker, migrate: true })],
        await lessons(db, schema),
      ),
    );
    cleanups.push(() => app.close());
    const dispatcher = app.get<Dispatcher | null>(DISPATCHER);
    const database = app.get<Database>(OUTBOX_DATABASE);
    expect(dispatcher?.health().state).not.toBe('stopped');
    const received = await readStream(broker);

    const service = app.get(LessonService);
    const published = await service.publish('Fractions');
    await expect(service.publish('Rolled back', true)).rejects.toThrow(
      'the lesson cannot be published',
    );
    await waitFor('the event on the stream', () => received.length >= 1);
    expect(lessonIds(received)).toEqual([published]);
    expect(received[0]?.attributes.type).toBe('lesson-published');
    expect(await connections(db, schema)).toBeGreaterThan(0);

    await app.close();
    expect(dispatcher?.health().state).toBe('stopped');
    expect(dispatcher?.health().problem).toBeUndefined();
    expect(dispatcher?.stats.published).toBe(1);
    // The database the module opened from the connection string is closed with it, and
    // so is every connection the dispatcher opened.
    await expect(database.query('SELECT 1')).rejects.toThrow();
    await waitFor('no connection left', async () => (await connections(db, schema)) === 0, {
      timeoutMs: 3000,
    });
    // The rolled-back event never existed; the published one left the outbox.
    expect(await pending(db, schema)).toBe(0);
    const { rows } = await db.query<{ title: string }>(`SELECT title FROM "${schema}".lesson`);
    expect(rows.map((r) => r.title)).toEqual(['Fractions']);
    expect(lessonIds(received)).toEqual([published]);
  });

  it('forRootAsync: options from a factory with injected providers; a given database stays open', async () => {
    const { db, schema } = await testSchema();
    const broker = natsBroker();
    const SETTINGS = Symbol('SETTINGS');
    class SettingsModule {}
    Module({
      providers: [{ provide: SETTINGS, useValue: { broker, schema } }],
      exports: [SETTINGS],
    })(SettingsModule);
    // A feature module that does not import OutboxModule: the outbox is global.
    class LessonsModule {}
    Module({ providers: await lessons(db, schema) })(LessonsModule);
    let factoryCalls = 0;
    const app = await start(
      appModule([
        OutboxModule.forRootAsync({
          imports: [SettingsModule],
          inject: [SETTINGS],
          useFactory: async (settings: { broker: string; schema: string }) => {
            factoryCalls++;
            return { database: db, ...settings, dispatcher: { batchSize: 10 } };
          },
        }),
        LessonsModule,
      ]),
    );
    cleanups.push(() => app.close());
    expect(factoryCalls).toBe(1);
    expect(app.get(OUTBOX_DATABASE)).toBe(db);
    const received = await readStream(broker);

    const service = app.get(LessonService);
    const ids = [];
    for (const title of ['One', 'Two', 'Three']) ids.push(await service.publish(title));
    await waitFor('three events on the stream', () => received.length >= 3);
    // Three lessons, three aggregates: their events may be published in any order.
    expect(lessonIds(received).sort()).toEqual(ids.sort());

    await app.close();
    expect(app.get<Dispatcher>(DISPATCHER).health().state).toBe('stopped');
    // The caller's database is the caller's to close.
    expect(await pending(db, schema)).toBe(0);
  });

  it('a broker that cannot be reached fails the bootstrap with its error', async () => {
    const { db, schema } = await testSchema();
    const broker = `nats://127.0.0.1:${await closedPort()}?timeout_ms=1000`;
    const user = pgDatabase({ connectionString: PG_URL, applicationName: 'nestjs test' });
    cleanups.push(() => user.close());
    const bootstrap = start(appModule([OutboxModule.forRoot({ database: user, schema, broker })]));
    await expect(bootstrap).rejects.toBeInstanceOf(BrokerUnavailableError);
    await expect(bootstrap).rejects.toThrow(/127\.0\.0\.1/);
    // A given database is left open, to its owner.
    expect((await user.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect(await pending(db, schema)).toBe(0);
  });

  it('an outbox that is not migrated fails the bootstrap, and the module closes its database', async () => {
    const { db, schema } = await testSchema(false);
    const bootstrap = start(
      appModule([
        OutboxModule.forRoot({ database: taggedUrl(schema), schema, broker: natsBroker() }),
      ]),
    );
    await expect(bootstrap).rejects.toMatchObject({ code: 'SCHEMA_VERSION' });
    // No application is left to close: the module released its connections itself.
    await waitFor('no connection left', async () => (await connections(db, schema)) === 0, {
      timeoutMs: 3000,
    });
  });

  it('refuses options it cannot use when the module is made', async () => {
    const { schema } = await testSchema();
    // Options given as plain JavaScript would give them: unchecked by the compiler.
    const bootstrap = (options: object) =>
      start(appModule([OutboxModule.forRoot({ database: PG_URL, schema, ...options } as never)]));
    await expect(bootstrap({})).rejects.toThrow(ConfigError);
    await expect(bootstrap({ broker: 'nats://127.0.0.1:4222?nope=1' })).rejects.toThrow(/nope/);
    // A misspelt option would otherwise be ignored.
    await expect(bootstrap({ dispatch: false, migrates: true })).rejects.toThrow(
      'migrates: is not an option of OutboxModule; did you mean "migrate"?',
    );
    await expect(
      bootstrap({ broker: natsBroker(), dispatcher: { batchSise: 10 } }),
    ).rejects.toThrow(
      `dispatcher.batchSise: is not an option of OutboxModule's dispatcher; did you mean "batchSize"?`,
    );
    // The injected outbox gets the module's maxPayloadBytes, checked as createOutbox checks it.
    await expect(bootstrap({ dispatch: false, maxPayloadBytes: 0 })).rejects.toThrow(
      /^maxPayloadBytes: 0 is not a whole number from 1 to/,
    );
    // A bad value among the dispatcher's options is named as the module's option too.
    const badBatch = bootstrap({ broker: natsBroker(), dispatcher: { batchSize: 0 } });
    await expect(badBatch).rejects.toMatchObject({ setting: 'dispatcher.batchSize' });
    await expect(badBatch).rejects.toThrow(
      /^dispatcher\.batchSize: 0 is not a whole number from 1 to 10000$/,
    );
    await expect(bootstrap({ dispatch: false, isGlobl: false })).rejects.toThrow(
      'isGlobl: is not an option of OutboxModule; did you mean "isGlobal"?',
    );
    // A bad connection string is named as the option it was given in, its password unsaid.
    const badUrl = bootstrap({
      database: 'postgres://app:S3cretPw@127.0.0.1:notaport/app',
      dispatch: false,
    });
    await expect(badUrl).rejects.toMatchObject({ setting: 'database' });
    await expect(badUrl).rejects.toThrow(/^database: /);
    await expect(badUrl).rejects.not.toThrow(/S3cretPw/);
    // A node-postgres pool where a Database belongs: refused, not a crash at start.
    const pool = new pg.Pool({ connectionString: PG_URL });
    try {
      await expect(bootstrap({ database: pool, dispatch: false })).rejects.toThrow(
        /^database: must be pgDatabase\(\{ connectionString \}\) or pgliteDatabase\(…\), not a \w*Pool; a node-postgres pool/,
      );
    } finally {
      await pool.end();
    }
    await expect(bootstrap({ broker: { publish: () => [] } })).rejects.toThrow(
      'broker: must be brokerFromUrl(url, { source }) or an EventBroker; a plain object with keys publish has no name, connect, close',
    );
  });

  it('dispatch: false enqueues only: no dispatcher, no broker', async () => {
    const { db, schema } = await testSchema();
    const app = await start(
      appModule(
        [OutboxModule.forRoot({ database: db, schema, dispatch: false })],
        await lessons(db, schema),
      ),
    );
    cleanups.push(() => app.close());
    expect(app.get(DISPATCHER)).toBeNull();
    expect(app.get<Outbox>(OUTBOX)).toBe(app.get(LessonService).outbox);
    await app.get(LessonService).publish('Kept for another dispatcher');
    await app.close();
    expect(await pending(db, schema)).toBe(1);
    // The indicator has nothing to report on: it says so as a result, as terminus expects.
    expect(await app.get(OutboxHealthIndicator).isHealthy('outbox')).toEqual({
      outbox: {
        status: 'down',
        state: 'stopped',
        brokerConnected: false,
        published: 0,
        deadLettered: 0,
        message:
          'this application runs no dispatcher (dispatch: false), so there is none to report on',
      },
    });
  });
});

describe('OutboxHealthIndicator', () => {
  /** An application whose health endpoint would call `check()`. */
  class HealthService {
    constructor(
      readonly health: HealthCheckService,
      readonly outbox: OutboxHealthIndicator,
    ) {}
    check() {
      return this.health.check([() => this.outbox.isHealthy('outbox')]);
    }
  }
  Injectable()(HealthService);
  Inject(HealthCheckService)(HealthService, undefined, 0);
  Inject(OutboxHealthIndicator)(HealthService, undefined, 1);
  class HealthModule {}
  Module({ imports: [TerminusModule], providers: [HealthService] })(HealthModule);

  it('is up while the dispatcher runs with its broker connected, down once it stopped', async () => {
    const { db, schema } = await testSchema();
    const app = await start(
      appModule([
        OutboxModule.forRoot({ database: db, schema, broker: natsBroker() }),
        HealthModule,
      ]),
    );
    cleanups.push(() => app.close());
    const result = await app.get(HealthService).check();
    expect(result.status).toBe('ok');
    expect(result.info?.outbox).toMatchObject({
      status: 'up',
      brokerConnected: true,
      published: 0,
      deadLettered: 0,
    });
    expect(['idle', 'dispatching']).toContain(result.info?.outbox?.state);

    const indicator = app.get(OutboxHealthIndicator);
    await app.close();
    expect((await indicator.isHealthy('outbox')).outbox).toMatchObject({
      status: 'down',
      state: 'stopped',
      message: 'dispatcher is not running',
    });
  });

  it('listed in a module of the application as terminus indicators are, reports the module’s dispatcher', async () => {
    const { db, schema } = await testSchema();
    class OwnHealthModule {}
    Module({
      imports: [TerminusModule],
      providers: [OutboxHealthIndicator, HealthService],
    })(OwnHealthModule);
    const app = await start(
      appModule([
        OutboxModule.forRoot({ database: db, schema, broker: natsBroker() }),
        OwnHealthModule,
      ]),
    );
    cleanups.push(() => app.close());
    const own = app.select(OwnHealthModule).get(OutboxHealthIndicator);
    expect((await own.isHealthy('outbox')).outbox).toMatchObject({
      status: 'up',
      brokerConnected: true,
    });
    expect((await app.select(OwnHealthModule).get(HealthService).check()).status).toBe('ok');
    await app.close();
    expect((await own.isHealthy('outbox')).outbox).toMatchObject({
      status: 'down',
      message: 'dispatcher is not running',
    });
  });

  it('refuses an option it cannot use, naming it', async () => {
    const { db, schema } = await testSchema();
    const app = await start(
      appModule([OutboxModule.forRoot({ database: db, schema, broker: natsBroker() })]),
    );
    cleanups.push(() => app.close());
    const indicator = app.get(OutboxHealthIndicator);
    // As plain JavaScript would pass them: unchecked by the compiler.
    const isHealthy = (options: object) => indicator.isHealthy('outbox', options as never);
    await expect(isHealthy({ stallAfterMs: -5 })).rejects.toThrow(
      'stallAfterMs: -5 is not a whole number from 1 to 86400000',
    );
    await expect(isHealthy({ stallAfterMs: 'abc' })).rejects.toThrow(
      'stallAfterMs: "abc" is not a whole number from 1 to 86400000',
    );
    await expect(isHealthy({ stalAfterMs: 1 })).rejects.toThrow(
      'stalAfterMs: is not an option of isHealthy; did you mean "stallAfterMs"?',
    );
    expect((await isHealthy({ stallAfterMs: 60_000 })).outbox?.status).toBe('up');
  });

  it('is down, with the outage, while the dispatcher backs off from an unreachable broker', async () => {
    const { db, schema } = await testSchema();
    const broker = `nats://127.0.0.1:${await closedPort()}?timeout_ms=1000`;
    const app = await start(
      appModule([
        OutboxModule.forRoot({
          database: db,
          schema,
          broker,
          // Start at once and keep connecting in the background, as `run` does.
          dispatcher: { waitForBroker: false },
        }),
        HealthModule,
      ]),
    );
    cleanups.push(() => app.close());
    const dispatcher = app.get<Dispatcher>(DISPATCHER);
    await waitFor('the backoff', () => dispatcher.health().state === 'backoff');
    const failure = await app
      .get(HealthService)
      .check()
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(failure).toBeInstanceOf(ServiceUnavailableException);
    const response = (failure as ServiceUnavailableException).getResponse() as {
      status: string;
      error: Record<string, { status: string; state: string; message: string }>;
    };
    expect(response.status).toBe('error');
    expect(response.error.outbox).toMatchObject({ status: 'down', state: 'backoff' });
    expect(response.error.outbox?.message).toMatch(/^broker unavailable: /);
  });
});
