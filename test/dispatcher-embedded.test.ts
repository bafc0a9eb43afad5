/**
 * The dispatcher embedded in a service: `closed` (rejected by a fatal error under a
 * running dispatcher, resolved by stop(), never an unhandled rejection), the default
 * logger and `logger: false`, the abort signal, and stopOnSignals. Real PostgreSQL; the
 * fatal error is a real NATS stream replaced by one over other subjects; the logging, the
 * unobserved rejection and the signals are watched in a process of their own.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import {
  brokerFromUrl,
  ConfigError,
  createDispatcher,
  type Dispatcher,
  MemoryBroker,
  pgDatabase,
  SchemaVersionError,
} from '../src/index.js';
import { killChildren, spawnNode } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { createStream, deleteStream } from './helpers/nats-consumer.js';
import { enqueueLesson } from './helpers/outbox.js';
import { waitFor } from './helpers/wait.js';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const SCRIPT = 'test/helpers/embedded-dispatcher.mjs';

let t: TestSchema;
beforeAll(async () => {
  t = await createPgTestSchema('embedded');
});
afterAll(async () => {
  await t?.drop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await killChildren();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A dispatcher on the memory broker, stopped after the test. */
function memoryDispatcher(options: { signal?: AbortSignal } = {}): Dispatcher {
  const dispatcher = createDispatcher({
    db: t.db,
    broker: new MemoryBroker(),
    schema: t.schema,
    logger: false,
    ...options,
  });
  cleanups.push(() => dispatcher.stop());
  return dispatcher;
}

const pending = async () =>
  (await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${t.schema}".outbox`)).rows[0]
    ?.n;

it('closed rejects with the fatal error when its NATS stream is replaced by one over other subjects', async () => {
  const id = randomBytes(5).toString('hex');
  const stream = `T_${id}`;
  cleanups.push(() => deleteStream(NATS_URL, stream));
  const dispatcher = createDispatcher({
    db: t.db,
    broker: brokerFromUrl(`${NATS_URL}?stream=${stream}&subject_prefix=t${id}`, {
      source: '/edupulse/test',
    }),
    schema: t.schema,
    logger: false,
    pollIntervalMs: 50,
    retryBaseDelayMs: 50,
    retryMaxDelayMs: 200,
  });
  cleanups.push(() => dispatcher.stop());
  const fatal = new Promise<Error>((resolve) => dispatcher.once('fatal', resolve));
  await dispatcher.start();
  await enqueueLesson(t);
  await waitFor('the first event to be published', async () => (await pending()) === 0);

  // An operator recreates the stream over other subjects: publishing finds no stream, the
  // dispatcher reconnects, and the stream it finds does not capture its subjects.
  await deleteStream(NATS_URL, stream);
  await createStream(NATS_URL, stream, [`other${id}.>`]);
  await enqueueLesson(t);

  const error = await dispatcher.closed.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as Error).message).toContain(`NATS stream "${stream}" exists but does not capture`);
  expect(await fatal).toBe(error);
  expect(dispatcher.health()).toMatchObject({
    state: 'stopped',
    brokerConnected: false,
    problem: { target: 'configuration' },
  });
  expect(await pending()).toBe(1);
  await dispatcher.stop(); // still fine after a fatal error
});

it('closed resolves on stop(); a new start() has a closed of its own', async () => {
  const dispatcher = memoryDispatcher();
  await dispatcher.start();
  const first = dispatcher.closed;
  let settled = false;
  void first.then(() => {
    settled = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(settled).toBe(false);
  await dispatcher.stop();
  await expect(first).resolves.toBeUndefined();

  await dispatcher.start();
  expect(dispatcher.closed).not.toBe(first);
  await dispatcher.stop();
  await expect(dispatcher.closed).resolves.toBeUndefined();
});

it('stops when its signal is aborted; start() refuses an aborted signal', async () => {
  const controller = new AbortController();
  const dispatcher = memoryDispatcher({ signal: controller.signal });
  await dispatcher.start();
  expect(dispatcher.health().state).not.toBe('stopped');
  controller.abort();
  await expect(dispatcher.closed).resolves.toBeUndefined();
  expect(dispatcher.health().state).toBe('stopped');

  const aborted = memoryDispatcher({ signal: AbortSignal.abort() });
  await expect(aborted.start()).rejects.toMatchObject({ name: 'AbortError' });
  await expect(aborted.closed).resolves.toBeUndefined();
  expect(aborted.health().state).toBe('stopped');
});

it('aborted while start() waits for the broker, it starts, then stops and closes the broker', async () => {
  const controller = new AbortController();
  const broker = new MemoryBroker();
  const connect = broker.connect.bind(broker);
  broker.connect = async () => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    await connect();
  };
  const dispatcher = createDispatcher({
    db: t.db,
    broker,
    schema: t.schema,
    logger: false,
    signal: controller.signal,
  });
  cleanups.push(() => dispatcher.stop());
  const started = dispatcher.start();
  await new Promise((resolve) => setTimeout(resolve, 100));
  controller.abort();
  await started;
  await expect(dispatcher.closed).resolves.toBeUndefined();
  expect(dispatcher.health().state).toBe('stopped');
  expect(dispatcher.ownedPartitions()).toEqual([]);
  expect(broker.connected).toBe(false);
});

const env = () => ({ DATABASE_URL: PG_URL, SCHEMA: t.schema });

/** The JSON lines of a process's stderr. */
const jsonLines = (text: string) =>
  text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);

it('logs its start and stop as JSON lines on stderr when given no logger', async () => {
  const result = await spawnNode(SCRIPT, ['logs', 'default'], { env: env() }).exited;
  expect(result.code, result.stderr).toBe(0);
  const lines = jsonLines(result.stderr);
  const started = lines.find((line) => line.msg === 'dispatcher started');
  expect(started).toMatchObject({
    level: 30,
    name: 'edupulse-outbox',
    schema: t.schema,
    broker: 'memory',
  });
  expect(typeof started?.time).toBe('number');
  expect(lines.find((line) => line.msg === 'dispatcher stopped')).toMatchObject({
    level: 30,
    published: 0,
  });
});

it('writes nothing with logger: false', async () => {
  const result = await spawnNode(SCRIPT, ['logs', 'false'], { env: env() }).exited;
  expect(result.code).toBe(0);
  expect(result.stdout).toContain('"started":true');
  expect(result.stderr).toBe('');
});

it('a fatal error nobody awaits does not end the process', async () => {
  const result = await spawnNode(SCRIPT, ['unobserved-fatal'], { env: env() }).exited;
  expect(result.code, result.stderr).toBe(0);
  expect(result.stdout).toContain('"done":true');
  const failed = jsonLines(result.stderr).find(
    (line) => line.msg === 'dispatcher stopped: cannot go on',
  );
  expect(failed).toMatchObject({ level: 50 });
  expect(failed?.err).toContain('does not capture');
});

it('stopOnSignals: SIGTERM stops the dispatcher and the process exits 0', async () => {
  const service = spawnNode(SCRIPT, ['signals'], { env: env() });
  await service.waitFor('the dispatcher to start', () => service.stdout.includes('"started"'));
  service.child.kill('SIGTERM');
  const result = await service.exited;
  expect(result).toMatchObject({ code: 0, signal: null });
  expect(result.stdout).toContain('"done":true');
  expect(jsonLines(result.stderr).some((line) => line.msg === 'dispatcher stopped')).toBe(true);
});

it('drain() refuses a started dispatcher, and drains asked for together run one after another', async () => {
  const dispatcher = memoryDispatcher();
  await dispatcher.start();
  await expect(dispatcher.drain()).rejects.toThrow(
    /^drain\(\) is for a dispatcher that is not started: .*stop\(\) it before draining$/,
  );
  await dispatcher.stop();

  const broker = new MemoryBroker();
  const drainer = createDispatcher({ db: t.db, broker, schema: t.schema, logger: false });
  cleanups.push(() => drainer.stop());
  for (let i = 0; i < 40; i++) await enqueueLesson(t);
  // Each resolves once its own pass found nothing claimable, with what it published.
  expect(await Promise.all([drainer.drain(), drainer.drain()])).toEqual([40, 0]);
  expect(broker.messages).toHaveLength(40);
});

it('drain() on a schema that was never migrated names it as start() does', async () => {
  const schema = `never_migrated_${randomBytes(4).toString('hex')}`;
  const dispatcher = createDispatcher({
    db: t.db,
    broker: new MemoryBroker(),
    schema,
    logger: false,
  });
  cleanups.push(() => dispatcher.stop());
  const started = await dispatcher.start().catch((error: unknown) => error);
  const drained = await dispatcher.drain().catch((error: unknown) => error);
  expect(drained).toBeInstanceOf(SchemaVersionError);
  expect((drained as Error).message).toBe((started as Error).message);
});

it('stops with a ConfigError naming db when its database is closed under it', async () => {
  const db = pgDatabase({ connectionString: PG_URL, maxConnections: 2 });
  const dispatcher = createDispatcher({
    db,
    broker: new MemoryBroker(),
    schema: t.schema,
    logger: false,
  });
  cleanups.push(() => dispatcher.stop());
  await dispatcher.start();
  const closed = dispatcher.closed.catch((error: unknown) => error);
  await db.close();
  const error = await closed;
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).setting).toBe('db');
  expect((error as Error).message).toMatch(/^db: the database was closed while still in use/);
});
