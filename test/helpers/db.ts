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
  /**
   * In a database of its own (named as the schema), dropped by drop(): for tests that
   * count what dead rows cost. PostgreSQL takes a deleted row as dead to all only once no
   * snapshot in the same database (and no transaction with an id, in any) could still
   * see it: other files' snapshots in the shared database stay out of this one.
   */
  ownDatabase?: boolean;
}

/** `PG_URL` with another database named in its path. */
export function databaseUrl(name: string): string {
  return PG_URL.replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
}

/** One statement on the test server, on a connection of its own. */
async function onServer(text: string): Promise<void> {
  const client = new pg.Client(PG_URL);
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A `pgDatabase` pool on `PG_URL` and a fresh schema, migrated unless told otherwise. */
export async function createPgTestSchema(
  prefix: string,
  options: TestSchemaOptions = {},
): Promise<TestSchema> {
  const schema = testSchema(prefix);
  let url = PG_URL;
  if (options.ownDatabase) {
    await onServer(`CREATE DATABASE "${schema}"`);
    url = databaseUrl(schema);
  }
  const db = pgDatabase({ connectionString: url, applicationName: `test-${schema}` });
  if (options.migrate ?? true) await migrate(db, schema);
  let dropped = false;
  return {
    db,
    schema,
    async drop() {
      if (dropped) return;
      dropped = true;
      try {
        if (!options.ownDatabase) await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await db.close();
        if (options.ownDatabase) await onServer(`DROP DATABASE IF EXISTS "${schema}" WITH (FORCE)`);
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
