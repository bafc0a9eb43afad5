/**
 * A URL listing several PostgreSQL hosts, as managed services and primary/standby pairs
 * hand them out: two private servers, the second read-only (`default_transaction_read_only`,
 * which is what `target_session_attrs=read-write` asks about, as on a standby). A host that
 * is down is passed over; `read-write` passes over the read-only one; the dispatcher,
 * given both with `read-write`, follows a failover: its primary dies, the other server is
 * made writable, and the events written there are published, in order, with the
 * dispatcher never stopping. A URL whose every host is away names each in its error.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../scripts/free-port.mjs';
import { type LogicalPostgres, startLogicalPostgres } from '../../scripts/pg/logical-postgres.mjs';
import { isDatabaseUnavailable } from '../../src/db/connection-errors.js';
import {
  createDispatcher,
  createOutbox,
  type Database,
  MemoryBroker,
  migrate,
  pgDatabase,
} from '../../src/index.js';
import { StepTaken } from '../helpers/outbox.js';
import { waitFor } from '../helpers/wait.js';

const SCHEMA = 'hosts';

let primary: LogicalPostgres;
let standby: LogicalPostgres;
const open: Database[] = [];

function database(hosts: readonly number[], params = ''): Database {
  const list = hosts.map((port) => `127.0.0.1:${port}`).join(',');
  const db = pgDatabase({ connectionString: `postgres://postgres@${list}/postgres${params}` });
  open.push(db);
  return db;
}

async function serverPort(db: Database): Promise<number> {
  const { rows } = await db.query<{ port: number }>('SELECT inet_server_port() AS port');
  return Number(rows[0]?.port);
}

/** `default_transaction_read_only` for new transactions of every session of `server`. */
async function setReadOnly(server: LogicalPostgres, readOnly: boolean): Promise<void> {
  const db = pgDatabase({ connectionString: server.url });
  try {
    await db.query(`ALTER SYSTEM SET default_transaction_read_only = ${readOnly ? 'on' : 'off'}`);
    await db.query('SELECT pg_reload_conf()');
  } finally {
    await db.close();
  }
}

async function enqueue(server: LogicalPostgres, walk: string, from: number, to: number) {
  const db = pgDatabase({ connectionString: server.url });
  const outbox = createOutbox({ schema: SCHEMA });
  try {
    for (let n = from; n < to; n++) {
      await db.transaction((tx) => outbox.enqueue(tx, StepTaken.create({ walk, n })));
    }
  } finally {
    await db.close();
  }
}

beforeAll(async () => {
  [primary, standby] = await Promise.all([startLogicalPostgres(), startLogicalPostgres()]);
  for (const server of [primary, standby]) {
    const db = pgDatabase({ connectionString: server.url });
    await migrate(db, SCHEMA);
    await db.close();
  }
  await setReadOnly(standby, true);
}, 120_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.close().catch(() => {})));
  await primary?.stop();
  await standby?.stop();
});

it('passes over a host that is down, and with read-write over a read-only one', async () => {
  const down = await freePort();
  expect(await serverPort(database([down, standby.port]))).toBe(standby.port);
  expect(await serverPort(database([standby.port, primary.port]))).toBe(standby.port);
  const readWrite = database(
    [down, standby.port, primary.port],
    '?target_session_attrs=read-write',
  );
  expect(await serverPort(readWrite)).toBe(primary.port);
  // A session of its own (LISTEN, partition locks) chooses the same way.
  const session = await readWrite.session?.('hosts-test');
  if (!session) throw new Error('pgDatabase opens sessions');
  expect(await session.query<{ port: number }>('SELECT inet_server_port() AS port')).toEqual({
    rows: [{ port: primary.port }],
  });
  await session.close();
});

it('names every host when none is there, as an outage (retried, not a setting to fix)', async () => {
  const [a, b] = [await freePort(), await freePort()];
  const error = await serverPort(database([a, b])).catch((caught: unknown) => caught);
  expect(String(error)).toContain(`no host of the URL accepts a connection (127.0.0.1:${a}: `);
  expect(String(error)).toContain(`; 127.0.0.1:${b}: `);
  expect(isDatabaseUnavailable(error)).toBe(true);
  const readOnly = await serverPort(
    database([standby.port], '?target_session_attrs=primary'),
  ).catch((caught: unknown) => caught);
  expect(String(readOnly)).toContain(
    `no host of the URL takes writes (127.0.0.1:${standby.port} is read-only)`,
  );
});

it('a dispatcher given both follows the failover to the server made writable', async () => {
  const broker = new MemoryBroker();
  const dispatcher = createDispatcher({
    db: database([primary.port, standby.port], '?target_session_attrs=read-write'),
    broker,
    schema: SCHEMA,
    logger: false,
    batchSize: 10,
  });
  await dispatcher.start();
  let ended = false;
  dispatcher.closed.then(
    () => (ended = true),
    () => (ended = true),
  );
  try {
    await enqueue(primary, 'before', 0, 20);
    await waitFor("the primary's events", () => broker.messages.length >= 20, {
      timeoutMs: 30_000,
    });
    await primary.stop();
    await setReadOnly(standby, false);
    await enqueue(standby, 'after', 0, 20);
    await waitFor("the promoted server's events", () => broker.messages.length >= 40, {
      timeoutMs: 60_000,
    });
    expect(ended).toBe(false);
  } finally {
    await dispatcher.stop();
  }
  for (const walk of ['before', 'after']) {
    const ns = broker.messages
      .filter((message) => message.aggregateId === walk)
      .map((message) => (JSON.parse(message.payload) as { n: number }).n);
    expect({ walk, ns }).toEqual({ walk, ns: [...Array(20).keys()] });
  }
}, 120_000);
