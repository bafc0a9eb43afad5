/**
 * The node-postgres `Database`'s transaction executor: `queryAfter` sends statements
 * without parameters and a prepared statement in one message, in order, each in a
 * snapshot of its own (the dispatcher's write horizon and claim go so).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Database, TransactionExecutor } from '../src/db/database.js';
import { pgDatabase } from '../src/index.js';
import { PG_URL } from './helpers/db.js';

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
