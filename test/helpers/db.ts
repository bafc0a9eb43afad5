/**
 * Test databases: every test file works in schemas of its own (random suffix), dropped when
 * it is done, so files run in parallel and twice in a row against the same server.
 */
import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { type Database, migrate, pgDatabase, pgliteDatabase } from '../../src/index.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

/** The PostgreSQL the tests use: `DATABASE_URL`, else the local trust-auth server. */
export const PG_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Plain node-postgres clients of the test server, each a session of its own (a transaction
 * held open beside the code under test); `endAll` in an afterEach closes them.
 */
export function testClients(): { client(): Promise<pg.Client>; endAll(): Promise<void> } {
  const open: pg.Client[] = [];
  return {
    async client() {
      const c = new pg.Client(PG_URL);
      await c.connect();
      open.push(c);
      return c;
    },
    async endAll() {
      for (const c of open.splice(0)) await c.end().catch(() => {});
    },
  };
}

/**
 * A fresh, valid schema name: `t_<prefix>_<random>`. The prefix is lower-cased and cut so
 * the name passes the library's check (/^[a-z_][a-z0-9_]{0,39}$/).
 */
export function testSchema(prefix: string): string {
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 20);
  return `t_${clean}_${randomBytes(6).toString('hex')}`;
}

export interface TestSchema {
  db: Database;
  schema: string;
  /** Drops the schema (CASCADE) and closes the database. Safe to call twice. */
  drop(): Promise<void>;
}

export interface TestSchemaOptions {
  /** Apply the migrations. Default true; false leaves the schema absent. */
  migrate?: boolean;
}

/** A `pgDatabase` pool on `PG_URL` and a fresh schema, migrated unless told otherwise. */
export async function createPgTestSchema(
  prefix: string,
  options: TestSchemaOptions = {},
): Promise<TestSchema> {
  const schema = testSchema(prefix);
  const db = pgDatabase({ connectionString: PG_URL, applicationName: `test-${schema}` });
  if (options.migrate ?? true) await migrate(db, schema);
  let dropped = false;
  return {
    db,
    schema,
    async drop() {
      if (dropped) return;
      dropped = true;
      try {
        await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await db.close();
      }
    },
  };
}

/** The same on an in-memory PGlite; `pglite` is the instance, for enqueuing through it. */
export async function createPgliteTestSchema(
  prefix: string,
  options: TestSchemaOptions = {},
): Promise<TestSchema & { pglite: PGlite }> {
  const schema = testSchema(prefix);
  const pglite = await PGlite.create();
  const db = pgliteDatabase(pglite);
  if (options.migrate ?? true) await migrate(db, schema);
  return {
    db,
    schema,
    pglite,
    async drop() {
      if (!pglite.closed) await pglite.close();
    },
  };
}

/**
 * A node-postgres `Database` that reaches the test server through a TCP proxy of its own,
 * which counts what it sends and can cut or silence the network. Close both when done.
 */
export async function proxiedPgDatabase(
  options: Omit<Parameters<typeof pgDatabase>[0], 'connectionString'> = {},
): Promise<{ proxy: TcpProxy; db: Database }> {
  const target = new URL(PG_URL);
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  target.host = `127.0.0.1:${proxy.port}`;
  return { proxy, db: pgDatabase({ ...options, connectionString: target.toString() }) };
}
