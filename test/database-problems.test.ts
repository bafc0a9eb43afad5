/**
 * What the dispatcher says when a setting of the server, not an outage, refuses its
 * statements: the server's own message, then what to change. Errors from the real
 * server; for one in another language (lc_messages), its German text in their place.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { databaseProblem } from '../src/dispatcher/database-errors.js';
import { PG_URL } from './helpers/db.js';

let client: pg.Client;
let other: pg.Client;

beforeAll(async () => {
  client = new pg.Client({ connectionString: PG_URL });
  other = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await other.connect();
});

afterAll(async () => {
  await client.end();
  await other.end();
});

const failing = (work: Promise<unknown>) =>
  work.then(
    () => {
      throw new Error('expected the statement to fail');
    },
    (error: unknown) => error as Error & { code?: string },
  );

it('names the statement timeout, in any language, and not an operator cancel', async () => {
  await client.query('SET statement_timeout = 10');
  const timedOut = await failing(client.query('SELECT pg_sleep(1)'));
  await client.query('RESET statement_timeout');
  expect(timedOut.code).toBe('57014');
  expect(databaseProblem(timedOut)).toBe(
    "canceling statement due to statement timeout (a statement timeout of the server or this role cancelled the dispatcher's statement; raise statement_timeout for this role)",
  );
  // The same error as a server with lc_messages = 'de_DE.UTF-8' words it.
  timedOut.message = 'storniere Anfrage wegen Zeitüberschreitung der Anfrage';
  expect(databaseProblem(timedOut)).toMatch(
    /^storniere Anfrage wegen Zeitüberschreitung der Anfrage \(cancelled by a statement timeout of the server or this role \(then raise statement_timeout for this role\), or by an operator's pg_cancel_backend\)$/,
  );

  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
  const sleeping = failing(client.query('SELECT pg_sleep(5)'));
  await new Promise((resolve) => setTimeout(resolve, 200));
  await other.query('SELECT pg_cancel_backend($1)', [pid]);
  const cancelled = await sleeping;
  expect(cancelled.code).toBe('57014');
  expect(databaseProblem(cancelled)).toBe('canceling statement due to user request');
});

it('says what to set when the role makes its transactions serializable', async () => {
  const table = `serial_${randomBytes(5).toString('hex')}`;
  await other.query(`CREATE TABLE ${table} (n int)`);
  try {
    await other.query(`INSERT INTO ${table} VALUES (0)`);
    await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
    await client.query(`SELECT n FROM ${table}`);
    // Another session changes the row this one read: its update cannot serialize.
    await other.query(`UPDATE ${table} SET n = 1`);
    const conflict = await failing(client.query(`UPDATE ${table} SET n = 2`));
    await client.query('ROLLBACK');
    expect(conflict.code).toBe('40001');
    expect(databaseProblem(conflict)).toMatch(
      /^could not serialize access due to concurrent update \(the dispatcher's transactions conflicted: this role's default_transaction_isolation is serializable or repeatable read, and they are retried; the dispatcher needs no more than read committed: ALTER ROLE <role> SET default_transaction_isolation = 'read committed'\)$/,
    );
  } finally {
    await other.query(`DROP TABLE ${table}`);
  }
});
