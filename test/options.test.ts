/**
 * Options misspelt from plain JavaScript (no compiler to catch them): every public entry
 * that takes an options object refuses a property it does not know, naming it and the
 * option it was probably meant to be, before it opens, writes or sends anything. Without
 * the check each of these would run on the option's default.
 */
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { consume, createInbox } from '../src/consumer/index.js';
import {
  brokerFromUrl,
  ConfigError,
  createDispatcher,
  createOutbox,
  LessonPublished,
  MemoryBroker,
  migrate,
  pgDatabase,
} from '../src/index.js';
import {
  consumerMetrics,
  dispatcherMetrics,
  type OpsEndpointsOptions,
  outboxFastify,
  outboxHandler,
  readiness,
  startOpsServer,
} from '../src/ops/index.js';
import { PG_URL, testSchema } from './helpers/db.js';

const db = pgDatabase({ connectionString: PG_URL, maxConnections: 1 });
afterAll(() => db.close());

/** The ConfigError `run` throws (or rejects with), as `{ setting, message }`. */
async function refusal(run: () => unknown): Promise<{ setting: string; message: string }> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const { setting, message } = error as ConfigError;
    return { setting, message };
  }
  throw new Error('not refused');
}

// Typed as the entries take them, the misspelt keys would not compile: cast as plain JS.
const js = <T>(options: object) => options as T;

it('createOutbox and createDispatcher name the misspelt option and the one meant', async () => {
  expect(await refusal(() => createOutbox(js({ shema: 'lessons' })))).toEqual({
    setting: 'shema',
    message: 'shema: is not an option of createOutbox; did you mean "schema"?',
  });
  const broker = new MemoryBroker();
  expect(await refusal(() => createDispatcher(js({ db, broker, batchsize: 10 })))).toMatchObject({
    setting: 'batchsize',
    message: 'batchsize: is not an option of createDispatcher; did you mean "batchSize"?',
  });
  // Nothing near: every option is listed instead.
  const { message } = await refusal(() =>
    createDispatcher(js({ db, broker, pollEverySeconds: 1 })),
  );
  expect(message).toMatch(
    /^pollEverySeconds: is not an option of createDispatcher \(its options: db, broker, schema, batchSize, /,
  );
  expect(message).toContain('pollIntervalMs');
  // Spelt right, as given by TypeScript users, nothing changes.
  expect(createDispatcher({ db, broker, batchSize: 10, logger: false }).health().state).toBe(
    'stopped',
  );
});

it('migrate refuses a misspelt option before creating the schema', async () => {
  const schema = testSchema('options');
  expect(await refusal(() => migrate(db, schema, js({ partition: 8 })))).toMatchObject({
    setting: 'partition',
    message: 'partition: is not an option of migrate; did you mean "partitions"?',
  });
  const { rows } = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  expect(rows).toHaveLength(0);
});

it('pgDatabase and brokerFromUrl refuse before connecting', async () => {
  expect(
    await refusal(() => pgDatabase(js({ connectionString: PG_URL, maxConnection: 2 }))),
  ).toMatchObject({
    setting: 'maxConnection',
    message: 'maxConnection: is not an option of pgDatabase; did you mean "maxConnections"?',
  });
  expect(
    await refusal(() => brokerFromUrl('log:', js({ source: '/edupulse', settings: 'broker' }))),
  ).toMatchObject({ message: expect.stringContaining('did you mean "setting"?') });
});

it('consume and createInbox refuse before asking the broker or the database', async () => {
  expect(
    await refusal(() =>
      consume(
        js<Parameters<typeof consume>[0]>({
          // A port nothing listens on: a connection attempt would fail otherwise.
          broker: 'nats://127.0.0.1:1?stream=NEVER',
          consumer: 'grades',
          database: db,
          events: [LessonPublished],
          handler: () => undefined,
          maxInflight: 8,
        }),
      ),
    ),
  ).toMatchObject({
    setting: 'maxInflight',
    message: 'maxInflight: is not an option of consume; did you mean "maxInFlight"?',
  });
  // A name with a dot is one for RabbitMQ and Kafka, not for JetStream: refused at once,
  // where it used to fail once start timed out (30 s) as if the broker were down.
  expect(
    await refusal(() =>
      consume({
        broker: 'nats://127.0.0.1:1?stream=NEVER',
        consumer: 'grades.v2',
        database: db,
        events: [LessonPublished],
        handler: () => undefined,
      }),
    ),
  ).toEqual({
    setting: 'consumer',
    message:
      'consumer: "grades.v2" cannot name a JetStream consumer: its durable name may not contain "."',
  });
  expect(await refusal(() => createInbox(js({ consumer: 'grades', onstale: 'skip' })))).toEqual({
    setting: 'inbox.onstale',
    message: 'inbox.onstale: is not an option of createInbox; did you mean "onStale"?',
  });
});

it('a database or broker of the wrong kind is refused naming the option, not met at start', async () => {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
  try {
    const notOne =
      /not a \w*Pool; a node-postgres pool or client is not one: give pgDatabase its connection string$/;
    const broker = new MemoryBroker();
    // Before: `start()` failed reading a result the pool's callback API never gave, and
    // the pool then threw where nothing could catch it.
    const asDb = await refusal(() => createDispatcher(js({ db: pool, broker })));
    expect(asDb.setting).toBe('db');
    expect(asDb.message).toMatch(
      /^db: must be pgDatabase\(\{ connectionString \}\) or pgliteDatabase\(…\), /,
    );
    expect(asDb.message).toMatch(notOne);
    const schema = `never_${Date.now()}`;
    expect((await refusal(() => migrate(pool as never, schema))).message).toMatch(notOne);
    expect(await refusal(() => createDispatcher(js({ broker })))).toEqual({
      setting: 'db',
      message: 'db: is required: pgDatabase({ connectionString }) or pgliteDatabase(…)',
    });
    const consumeWith = (database: unknown) =>
      consume(
        js<Parameters<typeof consume>[0]>({
          broker: 'nats://127.0.0.1:1?stream=NEVER',
          consumer: 'grades',
          database,
          events: [LessonPublished],
          handler: () => undefined,
        }),
      );
    expect(await refusal(() => consumeWith(pool))).toMatchObject({ setting: 'database' });
    expect((await refusal(() => consumeWith(pool))).message).toMatch(notOne);
    // A broker URL where the broker belongs: before, taken for an outage and retried forever.
    const asUrl = await refusal(() =>
      createDispatcher(js({ db, broker: 'nats://app:Br0kerPw@127.0.0.1:4222' })),
    );
    expect(asUrl).toEqual({
      setting: 'broker',
      message: 'broker: is a string; a URL goes through brokerFromUrl(url, { source })',
    });
    expect(await refusal(() => createDispatcher(js({ db, broker: { name: 'mine' } })))).toEqual({
      setting: 'broker',
      message:
        'broker: must be brokerFromUrl(url, { source }) or an EventBroker; a plain object with keys name has no connect, publish, close',
    });
  } finally {
    await pool.end();
  }
  // The schema was never created: migrate refused before any statement.
  const { rows } = await db.query(
    "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'never\\_%'",
  );
  expect(rows).toEqual([{ n: 0 }]);
});

it("a logger without pino's methods is refused naming the option, not met at the first log line", async () => {
  // Before: consume() started, and the first failure logged threw "logger.error is not a
  // function" as an unhandled rejection, leaving the message neither parked nor acked.
  const consumeWith = (logger: unknown) =>
    consume(
      js<Parameters<typeof consume>[0]>({
        broker: 'nats://127.0.0.1:1?stream=NEVER',
        consumer: 'grades',
        database: db,
        events: [LessonPublished],
        handler: () => undefined,
        logger,
      }),
    );
  expect(await refusal(() => consumeWith('info'))).toEqual({
    setting: 'logger',
    message:
      "logger: must be a logger of pino's shape (debug, info, warn and error methods taking (fields, message)); a string has no debug, info, warn, error",
  });
  expect((await refusal(() => consumeWith({ info: console.log }))).message).toMatch(
    /; a plain object with keys info has no debug, warn, error$/,
  );
  const broker = new MemoryBroker();
  expect(
    (await refusal(() => createDispatcher(js({ db, broker, logger: console.log })))).message,
  ).toMatch(/^logger: must be .* or false; a function \(log\) has no debug, info, warn, error$/);
  // pino's own logger (methods on its prototype) and false pass.
  const { default: pino } = await import('pino');
  for (const logger of [pino({ level: 'silent' }), false as const]) {
    expect(createDispatcher({ db, broker, logger }).health().state).toBe('stopped');
  }
});

it('the operations endpoints and metrics refuse a misspelt option', async () => {
  const dispatcher = createDispatcher({ db, broker: new MemoryBroker(), logger: false });
  const health = { dispatcher, db, schema: 'public' };
  expect(await refusal(() => outboxHandler(js({ ...health, maxLagSecond: 5 })))).toMatchObject({
    message: 'maxLagSecond: is not an option of outboxHandler; did you mean "maxLagSeconds"?',
  });
  // Fastify passes its register options along with ours: those are not refused.
  const routes: string[] = [];
  const app = { get: (path: string) => routes.push(path) };
  await outboxFastify(app, { ...health, prefix: '/ops', logLevel: 'warn' } as OpsEndpointsOptions);
  expect(routes).toContain('/healthz');
  expect(
    await refusal(() => outboxFastify(app, js({ ...health, prefix: '/ops', registy: {} }))),
  ).toMatchObject({
    message: 'registy: is not an option of outboxFastify; did you mean "registry"?',
  });
  const registry = dispatcherMetrics({ ...health, broker: 'memory' });
  expect(
    await refusal(() => startOpsServer(js({ ...health, registry, port: 0, hots: '0.0.0.0' }))),
  ).toMatchObject({
    message: 'hots: is not an option of startOpsServer; did you mean "host"?',
  });
  expect(
    await refusal(() =>
      dispatcherMetrics(js({ ...health, broker: 'memory', registery: registry })),
    ),
  ).toMatchObject({ setting: 'registery' });
  expect(
    await refusal(() => consumerMetrics(js({ consumer: {}, name: 'grades', labels: {} }))),
  ).toMatchObject({ setting: 'labels' });
});

it('the operations endpoints and metrics refuse a number they cannot use, naming it', async () => {
  const dispatcher = createDispatcher({ db, broker: new MemoryBroker(), logger: false });
  const health = { dispatcher, db, schema: 'public' };
  const app = { get: () => undefined };
  const registry = dispatcherMetrics({ ...health, broker: 'memory' });
  // As plain JavaScript would pass them: a negative, text, a fraction, NaN.
  const cases: [() => unknown, string][] = [
    [
      () => outboxHandler(js({ ...health, stallAfterMs: -5 })),
      'stallAfterMs: -5 is not a whole number from 1 to 86400000',
    ],
    [
      () => outboxHandler(js({ ...health, maxLagSeconds: 'abc' })),
      'maxLagSeconds: "abc" is not a whole number from 1 to 86400',
    ],
    [
      () => outboxFastify(app, js({ ...health, stuckAfterMs: 1.5 })),
      'stuckAfterMs: 1.5 is not a whole number from 1 to 86400000',
    ],
    [
      () => startOpsServer(js({ ...health, registry, port: 0, queryTimeoutMs: 0 })),
      'queryTimeoutMs: 0 is not a whole number from 1 to 3600000',
    ],
    [
      () => dispatcherMetrics(js({ ...health, broker: 'memory', databaseCacheMs: Number.NaN })),
      'databaseCacheMs: NaN is not a whole number from 0 to 3600000',
    ],
    [
      () => readiness(js({ ...health, maxLagSeconds: '60' })),
      'maxLagSeconds: "60" is not a whole number from 1 to 86400',
    ],
  ];
  for (const [run, message] of cases) expect((await refusal(run)).message).toBe(message);
  // Numbers within their ranges pass.
  outboxHandler({ ...health, stallAfterMs: 5000, maxLagSeconds: 60, databaseCacheMs: 0 });
  expect((await readiness({ ...health, stuckAfterMs: 150_000, queryTimeoutMs: 2000 })).ok).toBe(
    false, // a dispatcher that was never started
  );
});
