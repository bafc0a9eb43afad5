/**
 * `run` losing PostgreSQL while it starts: after the connection check passed, before the
 * dispatcher is at work (a server restart at the wrong moment). That is the documented
 * case of a database unreachable at start: exit 2 naming the setting, never a crash.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { killChildren, spawnCli } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;

beforeAll(async () => {
  t = await createPgTestSchema('start_outage');
});

afterAll(async () => {
  await killChildren();
  await t.drop();
});

it('exits 2 naming database-url when the database goes away during start-up', async () => {
  const target = new URL(PG_URL);
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  const viaProxy = new URL(PG_URL);
  viaProxy.port = String(proxy.port);
  // The start-up's first read, of the schema's migrations, waits behind this lock: the
  // connection check has passed by then, the dispatcher has not started.
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const locked = t.db.transaction(async (tx) => {
    await tx.query(`LOCK TABLE "${t.schema}".outbox_migrations IN ACCESS EXCLUSIVE MODE`);
    await released;
  });
  try {
    const run = spawnCli(['run', '--schema', t.schema, '--broker', 'log:'], {
      env: { DATABASE_URL: viaProxy.toString() },
    });
    await waitFor('run waiting on the lock', async () => {
      const { rows } = await t.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query LIKE '%outbox_migrations%' AND pid <> pg_backend_pid()`,
      );
      return (rows[0]?.n ?? 0) > 0;
    });
    await proxy.stop();
    const result = await run.exited;
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/database-url \(from DATABASE_URL\): lost .* while starting/);
  } finally {
    release();
    await locked;
    await proxy.stop();
  }
});
