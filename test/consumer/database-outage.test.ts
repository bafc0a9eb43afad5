/**
 * A handler whose database is away is waited for, not parked: connection errors spend no
 * attempt. The handler's pool reaches PostgreSQL through a TCP proxy the test cuts. A
 * pool too small for the handlers running at once is waited for too, and said so. A
 * database closed under the consumer, though, stops it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { silentLogger } from '../../src/common/logger.js';
import { type Consumer, consume, createInbox } from '../../src/consumer/index.js';
import { isDatabaseUnavailable } from '../../src/db/connection-errors.js';
import { pgDatabase, QuizSubmitted } from '../../src/index.js';
import { AMQP_URL, testExchange, withAmqpChannel } from '../helpers/amqp.js';
import { createPgTestSchema, PG_URL, proxiedPgDatabase, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { deleteStream } from '../helpers/nats-consumer.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';

const SERVER = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const id = randomBytes(5).toString('hex');
const url = `${SERVER}?stream=D_${id}&subject_prefix=d${id}`;
let schema: TestSchema;
let proxy: TcpProxy;
let pool: pg.Pool;
let consumer: Consumer | undefined;

beforeAll(async () => {
  schema = await createPgTestSchema('consumer_db_outage');
  const target = new URL(PG_URL);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  const through = new URL(PG_URL);
  through.port = String(proxy.port);
  pool = new pg.Pool({ connectionString: through.href, connectionTimeoutMillis: 1000 });
  pool.on('error', () => {});
});

afterAll(async () => {
  await consumer?.stop();
  await proxy?.start();
  await pool?.end();
  await proxy?.stop();
  await deleteStream(SERVER, `D_${id}`).catch(() => {});
  await schema?.drop();
});

describe('a consumer whose database is away', () => {
  it('tells connection failures from refused statements', async () => {
    const refused = await new pg.Client({ connectionString: 'postgres://x@127.0.0.1:1/x' })
      .connect()
      .catch((error: unknown) => error);
    expect(isDatabaseUnavailable(refused)).toBe(true);
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    const missing = await client.query('SELECT * FROM no_such_table').catch((e: unknown) => e);
    expect(isDatabaseUnavailable(missing)).toBe(false);
    client.on('error', () => {});
    const killed = await client
      .query('SELECT pg_terminate_backend(pg_backend_pid())')
      .catch((error: unknown) => error);
    expect(isDatabaseUnavailable(killed)).toBe(true);
    await client.end().catch(() => {});
    expect(isDatabaseUnavailable(new Error('wrapped', { cause: refused }))).toBe(true);
  });

  it("runs a handler's transaction again after a serialization failure, spending no attempt", async () => {
    const inbox = createInbox({ schema: schema.schema, consumer: 'serial' });
    const table = `"${schema.schema}".serial_counter`;
    await schema.db.query(`CREATE TABLE ${table} (k int PRIMARY KEY, n int NOT NULL)`);
    await schema.db.query(`INSERT INTO ${table} VALUES (1, 0)`);
    const serialUrl = url
      .replace(/stream=[^&]*/, `stream=S_${id}`)
      .replace(/subject_prefix=[^&]*/, `subject_prefix=s${id}`);
    let conflicts = 0;
    const applied: string[] = [];
    const serial = await consume({
      broker: serialUrl,
      consumer: 'serial',
      database: schema.db,
      schema: schema.schema,
      events: [QuizSubmitted],
      maxAttempts: 1,
      handler: async (event) => {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        try {
          await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
          await client.query(`SELECT n FROM ${table} WHERE k = 1`);
          if (conflicts < 3) {
            // Another transaction changes the row this one read: its update must fail.
            conflicts++;
            await schema.db.query(`UPDATE ${table} SET n = n + 100 WHERE k = 1`);
          }
          await inbox.process(client, event, async () => {
            await client.query(`UPDATE ${table} SET n = n + 1 WHERE k = 1`);
            applied.push(event.id);
          });
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        } finally {
          await client.end();
        }
      },
    });
    try {
      const broker = brokerFromUrl(serialUrl, { source: 'test' });
      await broker.connect();
      const event = quizMessage(randomUUID());
      await broker.publish([event]);
      await broker.close();
      // The inbox's function runs before the commit; the stats count once the handler is done.
      await waitFor('applied and counted', () => serial.stats.processed === 1, {
        timeoutMs: 15_000,
      });
      expect(applied).toHaveLength(1);
      expect(conflicts).toBe(3);
      expect(serial.stats).toMatchObject({ processed: 1, parked: 0, failed: 0 });
      const { rows } = await schema.db.query<{ n: number }>(`SELECT n FROM ${table}`);
      expect(rows[0]?.n).toBe(301);
    } finally {
      await serial.stop();
      await deleteStream(SERVER, `S_${id}`).catch(() => {});
    }
  });

  it('waits for it without spending attempts, then applies the event once', async () => {
    const inbox = createInbox({ schema: schema.schema, consumer: 'patient' });
    const applied: string[] = [];
    consumer = await consume({
      broker: url,
      consumer: 'patient',
      database: schema.db,
      schema: schema.schema,
      events: [QuizSubmitted],
      maxAttempts: 1,
      handler: async (event) => {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await inbox.process(client, event, () => applied.push(event.id));
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        } finally {
          client.release(true);
        }
      },
    });
    await proxy.stop();
    const broker = brokerFromUrl(url, { source: 'test' });
    await broker.connect();
    const event = quizMessage(randomUUID());
    await broker.publish([event]);
    await broker.close();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(applied).toEqual([]);
    await proxy.start();
    // The inbox's function runs before the commit; the stats count once the handler is done.
    await waitFor('applied and acked', () => consumer?.stats.processed === 1, {
      timeoutMs: 15_000,
    });
    expect(applied).toEqual([event.id]);
    expect(consumer.stats).toMatchObject({ processed: 1, parked: 0, failed: 0 });
  });
  // On RabbitMQ: no lease (NATS's), whose session would find the database closed itself.
  it('closed under it: stops with the error naming db instead of retrying for good', async () => {
    const exchange = testExchange();
    onTestFinished(() =>
      withAmqpChannel(async (channel) => {
        await channel.deleteQueue(`${exchange}.orphaned`);
        await channel.deleteExchange(exchange);
      }),
    );
    const own = pgDatabase({ connectionString: PG_URL });
    const orphaned = await consume({
      broker: `${AMQP_URL}?exchange=${exchange}`,
      consumer: 'orphaned',
      database: own,
      schema: schema.schema,
      events: [QuizSubmitted],
      deadLetterRetryPollMs: 200,
      handler: () => {},
    });
    const fatal: Error[] = [];
    orphaned.on('fatal', (error) => fatal.push(error));
    await own.close();
    // Before: it stayed 'receiving', retrying every 5 s for good.
    await expect(orphaned.closed).rejects.toMatchObject({
      setting: 'db',
      message: expect.stringContaining('was closed while still in use'),
    });
    expect(fatal).toHaveLength(1);
    expect(orphaned.health().state).toBe('stopped');
  });

  // On RabbitMQ: no lease, whose session the cut would end as well.
  it('a retried dead letter whose removal found the database away is removed once it is back, not handed over again', async () => {
    const exchange = testExchange();
    const own = await proxiedPgDatabase({ connectTimeoutMs: 1000 });
    onTestFinished(async () => {
      await own.proxy.start();
      await own.db.close();
      await own.proxy.stop();
      await withAmqpChannel(async (channel) => {
        await channel.deleteQueue(`${exchange}.resolving`);
        await channel.deleteExchange(exchange);
      });
    });
    const calls: string[] = [];
    const resolving = await consume({
      broker: `${AMQP_URL}?exchange=${exchange}`,
      consumer: 'resolving',
      database: own.db,
      schema: schema.schema,
      events: [QuizSubmitted],
      maxAttempts: 1,
      deadLetterRetryPollMs: 100,
      logger: silentLogger,
      handler: async (event) => {
        calls.push(event.id);
        if (calls.length === 1) throw new Error('not yet');
        // The retry succeeds; the database goes away before its dead letter is removed.
        await own.proxy.stop();
      },
    });
    onTestFinished(() => resolving.stop());
    const deadLetters = async () => {
      const { rows } = await schema.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${schema.schema}".consumer_dead_letter WHERE consumer = 'resolving'`,
      );
      return rows[0]?.n;
    };
    const broker = brokerFromUrl(`${AMQP_URL}?exchange=${exchange}`, { source: 'test' });
    await broker.connect();
    const event = quizMessage(randomUUID());
    await broker.publish([event]);
    await broker.close();
    await waitFor('parked', async () => (await deadLetters()) === 1, { timeoutMs: 15_000 });
    await schema.db.query(
      `UPDATE "${schema.schema}".consumer_dead_letter SET retry_requested_at = now() WHERE consumer = 'resolving'`,
    );
    await waitFor('the retry handled', () => calls.length === 2, { timeoutMs: 15_000 });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await own.proxy.start();
    // Before: the dead letter stayed taken, to be handed over again 15 minutes later.
    await waitFor('the dead letter removed', async () => (await deadLetters()) === 0, {
      timeoutMs: 20_000,
    });
    expect(calls).toEqual([event.id, event.id]);
  });

  it('a pool smaller than concurrency: handlers wait for a connection, said so, nothing parked', async () => {
    const small = pgDatabase({
      connectionString: PG_URL,
      maxConnections: 1,
      connectTimeoutMs: 200,
    });
    const warnings: string[] = [];
    const handled = new Set<string>();
    const log = (_fields: object, message?: string) => void warnings.push(String(message));
    const busy = await consume({
      broker: url,
      consumer: 'crowded',
      database: schema.db,
      schema: schema.schema,
      events: [QuizSubmitted],
      concurrency: 4,
      maxAttempts: 1,
      logger: { debug: () => {}, info: () => {}, warn: log, error: log },
      handler: async (event) => {
        await small.transaction((tx) => tx.query('SELECT pg_sleep(0.3)'));
        handled.add(event.id);
      },
    });
    try {
      const broker = brokerFromUrl(url, { source: 'test' });
      await broker.connect();
      const events = Array.from({ length: 4 }, () => quizMessage(randomUUID()));
      await broker.publish(events);
      await broker.close();
      // The stream holds the earlier test's event too: this consumer handles it as well.
      await waitFor('four handled', () => events.every((e) => handled.has(e.id)), {
        timeoutMs: 20_000,
      });
      expect(busy.stats).toMatchObject({ parked: 0, failed: 0 });
      expect(warnings.some((line) => line.startsWith('no database connection came free'))).toBe(
        true,
      );
      expect(warnings).not.toContain('database unavailable in the handler; retrying');
    } finally {
      await busy.stop();
      await small.close();
    }
  });
});
