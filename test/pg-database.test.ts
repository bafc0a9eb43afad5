/**
 * The node-postgres `Database`'s transaction executor: `queryAfter` sends statements
 * without parameters and a prepared statement in one message, in order, each in a
 * snapshot of its own (the dispatcher's write horizon and claim go so); and a transaction's
 * first prepared statement takes BEGIN along.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, TransactionExecutor } from '../src/db/database.js';
import { pgDatabase } from '../src/index.js';
import { PG_URL, proxiedPgDatabase } from './helpers/db.js';
import type { TcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/wait.js';

let db: Database;
let observer: Database;

beforeAll(() => {
  const applicationName = `test-query-after-${randomBytes(4).toString('hex')}`;
  // One connection: every transaction runs on the same session.
  db = pgDatabase({ connectionString: PG_URL, maxConnections: 1, applicationName });
  observer = pgDatabase({ connectionString: PG_URL, maxConnections: 1 });
});

afterAll(async () => {
  await db?.close();
  await observer?.close();
});

// Reads a setting the statements before it leave in the transaction.
const statement = `SELECT current_setting('edupulse_test.mark', true) AS mark, $1::int + 1 AS next, $2::text AS list`;

function queryAfter(tx: TransactionExecutor) {
  if (!tx.queryAfter) throw new Error('pgDatabase transactions have queryAfter');
  return tx.queryAfter.bind(tx);
}

it('sends the statements before and the prepared one in one message, run in order', async () => {
  const result = await db.transaction(async (tx) => {
    const sent = await queryAfter(tx)<{ pid: number }, Record<string, unknown>>(
      `SELECT set_config('edupulse_test.mark', 'set first', true); SELECT pg_backend_pid() AS pid`,
      statement,
      [41, '{0,2}'],
    );
    // The server shows the last message a session sent: all of it, the EXECUTE last.
    const { rows } = await observer.query<{ query: string }>(
      'SELECT query FROM pg_stat_activity WHERE pid = $1',
      [sent.before[0]?.pid],
    );
    return { ...sent, lastMessage: rows[0]?.query };
  });
  expect(result.before).toEqual([{ pid: expect.any(Number) }]);
  expect(result.rows).toEqual([{ mark: 'set first', next: 42, list: '{0,2}' }]);
  expect(result.lastMessage).toMatch(
    /^BEGIN;\s+SELECT set_config[\s\S]*pg_backend_pid\(\) AS pid;\s+EXECUTE edupulse_\w+_sql\(41, '\{0,2\}'\)$/,
  );
});

it('prepares the statement once per connection', async () => {
  for (let n = 0; n < 3; n++) {
    const { rows } = await db.transaction((tx) => queryAfter(tx)('SELECT 1', statement, [n, '{}']));
    expect(rows).toMatchObject([{ next: n + 1, list: '{}' }]);
  }
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_prepared_statements
     WHERE name LIKE 'edupulse\\_%\\_sql' AND statement LIKE '%edupulse_test.mark%'`,
  );
  expect(rows).toEqual([{ n: 1 }]);
});

it('sends values other than integers and digits as bound parameters', async () => {
  const text = `'); DROP TABLE edupulse_never; --`;
  const { rows } = await db.transaction((tx) => queryAfter(tx)('SELECT 1', statement, [1, text]));
  expect(rows).toMatchObject([{ next: 2, list: text }]);
});

describe('a transaction whose first statement has parameters', () => {
  let proxy: TcpProxy;
  let proxied: Database;
  // The transaction id shows whether two statements ran in one transaction.
  const xidStatement = 'SELECT txid_current()::text AS xid, $1::int AS n';

  beforeAll(async () => {
    ({ proxy, db: proxied } = await proxiedPgDatabase({ maxConnections: 1 }));
  });

  afterAll(async () => {
    await proxied?.close();
    await proxy?.stop();
  });

  /** Runs `fn` in a transaction; what it returned and how many writes reached the server. */
  async function counted<T>(fn: (tx: TransactionExecutor) => Promise<T>) {
    const before = proxy.writesToServer;
    const result = await proxied.transaction(fn);
    return { result, writes: proxy.writesToServer - before };
  }

  const twoStatements = (tx: TransactionExecutor) =>
    Promise.all([
      tx.query<{ xid: string; n: number }>(xidStatement, [1]),
      tx.query<{ xid: string; n: number }>(xidStatement, [2]),
    ]).then(([first, second]) => [...first.rows, ...second.rows]);

  it('sends BEGIN with it once the connection has run it: three round trips, not four', async () => {
    // The connection is opened and the statement prepared on it.
    const first = await counted(twoStatements);
    const second = await counted(twoStatements);
    for (const { result } of [first, second]) {
      expect(result.map((row) => row.n)).toEqual([1, 2]);
      expect(result[0]?.xid).toBe(result[1]?.xid);
    }
    expect(second.result[0]?.xid).not.toBe(first.result[0]?.xid);
    // BEGIN with the first statement, the second statement, COMMIT.
    expect(second.writes).toBe(3);
  });

  it('rolls back when the statement sent with BEGIN fails, and the connection goes on', async () => {
    const divide = 'SELECT 10 / $1::int AS q';
    await proxied.transaction((tx) => tx.query(divide, [5]));
    await expect(proxied.transaction((tx) => tx.query(divide, [0]))).rejects.toThrow(
      /division by zero/,
    );
    const { result, writes } = await counted(async (tx) => {
      const { rows } = await tx.query<{ q: number }>(divide, [2]);
      return rows;
    });
    expect(result).toEqual([{ q: 5 }]);
    expect(writes).toBe(2);
    // Nothing left open on the session.
    const { rows } = await proxied.query<{ status: string }>(
      "SELECT CASE WHEN now() = statement_timestamp() THEN 'none' ELSE 'in a transaction' END AS status",
    );
    expect(rows).toEqual([{ status: 'none' }]);
  });
});

it('rejects a transaction PostgreSQL rolled back at COMMIT, a statement in it having failed', async () => {
  const table = `pg_db_commit_${randomBytes(4).toString('hex')}`;
  await observer.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
  try {
    await observer.query(`INSERT INTO ${table} VALUES (1)`);
    // The duplicate's error is caught, as an "ignore a unique violation" handler does
    // without a savepoint: the transaction is aborted, and COMMIT answers ROLLBACK.
    const swallowed = db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} VALUES (2)`);
      await tx.query(`INSERT INTO ${table} VALUES (1)`).catch(() => undefined);
      return 'applied';
    });
    await expect(swallowed).rejects.toMatchObject({
      code: 'TRANSACTION_ROLLED_BACK',
      message: expect.stringMatching(
        /^the transaction was rolled back at COMMIT, nothing of it written/,
      ),
    });
    const { rows } = await observer.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`);
    expect(rows).toEqual([{ id: 1 }]);
    // The session goes on.
    await db.transaction((tx) => tx.query(`INSERT INTO ${table} VALUES (3)`));
    expect((await observer.query(`SELECT id FROM ${table}`)).rows).toHaveLength(2);
  } finally {
    await observer.query(`DROP TABLE ${table}`);
  }
});

it("gives a failing statement's error a stack that leads back to the code that ran it", async () => {
  async function recordLesson(tx: TransactionExecutor) {
    await tx.query('SELECT 10 / $1::int AS q', [0]);
  }
  const error = await db.transaction(recordLesson).then(
    () => new Error('the statement did not fail'),
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(Error);
  expect((error as Error).message).toMatch(/division by zero/);
  expect((error as Error).stack).toContain('recordLesson');
});

describe("the dispatcher's planner settings", () => {
  const settingsText = `SELECT current_setting('enable_seqscan') AS seqscan,
  current_setting('enable_bitmapscan') AS bitmapscan, current_setting('plan_cache_mode') AS plans,
  current_setting('jit') AS jit`;
  type Settings = { seqscan: string; bitmapscan: string; plans: string; jit: string };
  const read = async (planner?: 'dispatcher' | 'server') => {
    const pool = pgDatabase({
      connectionString: PG_URL,
      maxConnections: 1,
      ...(planner ? { planner } : {}),
    });
    try {
      const plain = (await pool.query<Settings>(settingsText)).rows[0];
      const inTransaction = await pool.transaction((tx) =>
        tx.query<Settings>(`${settingsText}, $1::int AS n`, [1]).then(({ rows }) => rows[0]),
      );
      return { plain, inTransaction };
    } finally {
      await pool.close();
    }
  };

  it("are every connection's by default; a pool for the server's planner has none", async () => {
    // JIT off too: with scans off, a statement that can only scan was costed past
    // jit_above_cost and compiled, 60-100 ms for a one-row table.
    const dispatchers = {
      seqscan: 'off',
      bitmapscan: 'off',
      plans: 'force_generic_plan',
      jit: 'off',
    };
    const servers = { seqscan: 'on', bitmapscan: 'on', plans: 'auto', jit: 'on' };
    for (const planner of [undefined, 'dispatcher'] as const) {
      const seen = await read(planner);
      expect(seen.plain).toEqual(dispatchers);
      expect(seen.inTransaction).toMatchObject(dispatchers);
    }
    const server = await read('server');
    expect(server.plain).toEqual(servers);
    expect(server.inTransaction).toMatchObject(servers);
    expect(() =>
      pgDatabase({ connectionString: PG_URL, planner: 'custom' as unknown as 'server' }),
    ).toThrow('planner: "custom" is not dispatcher or server');
  });
});

it('a query whose connection the server ends fails, and the process goes on', async () => {
  const applicationName = `test-ended-${randomBytes(4).toString('hex')}`;
  const victim = pgDatabase({ connectionString: PG_URL, maxConnections: 1, applicationName });
  try {
    const pending = victim.query('SELECT pg_sleep(10)').then(
      () => undefined,
      (error: Error) => error,
    );
    await waitFor('the query running', async () => {
      const { rows } = await observer.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
        [applicationName],
      );
      return rows[0]?.n === 1;
    });
    await observer.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
      [applicationName],
    );
    expect(await pending).toBeInstanceOf(Error);
    // The ended connection left the pool; the next query gets a new one.
    expect((await victim.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  } finally {
    await victim.close();
  }
});

it('a query whose connection is cut while the server is silent fails, and the process goes on', async () => {
  const { proxy, db: cut } = await proxiedPgDatabase({ maxConnections: 1 });
  try {
    await cut.query('SELECT 1');
    proxy.freeze();
    const pending = cut.query('SELECT 2').then(
      () => undefined,
      (error: Error) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    await proxy.stop();
    expect(await pending).toBeInstanceOf(Error);
    proxy.thaw();
    await proxy.start();
    expect((await cut.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  } finally {
    await cut.close();
    await proxy.stop();
  }
});
