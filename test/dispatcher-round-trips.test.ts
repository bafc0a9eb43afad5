/**
 * What a batch costs in round trips: the dispatcher's claim (BEGIN, the write horizon's
 * two reads and the claim itself) reaches the server as one message once the connection
 * has prepared it. Counted at a TCP proxy between the dispatcher's pool and the server.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pgArray, statements } from '../src/db/sql/index.js';
import { markDatabaseErrors } from '../src/dispatcher/database-errors.js';
import { claimWithinHorizon } from '../src/dispatcher/horizon.js';
import type { Database } from '../src/index.js';
import { createPgTestSchema, proxiedPgDatabase, type TestSchema } from './helpers/db.js';
import type { TcpProxy } from './helpers/tcp-proxy.js';

let t: TestSchema;
let proxy: TcpProxy;
let proxied: Database;

beforeAll(async () => {
  t = await createPgTestSchema('round_trips');
  ({ proxy, db: proxied } = await proxiedPgDatabase({ maxConnections: 1 }));
});

afterAll(async () => {
  await proxied?.close();
  await proxy?.stop();
  await t?.drop();
});

it('sends the write horizon and the claim in one message, through the dispatcher’s transaction', async () => {
  const sql = statements(t.schema);
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT 'lesson', 'a-' || i, 'lesson-published', '{}' FROM generate_series(1, 5) AS i`,
  );
  const claim = () =>
    markDatabaseErrors(proxied, (tx) =>
      claimWithinHorizon<{ seq: string }>(tx, sql, sql.outboxClaim, [
        100,
        pgArray(Array.from({ length: 64 }, (_, p) => p)),
        '0',
        '1',
        '0',
      ]),
    );
  // The first prepares the claim on the connection.
  expect((await claim()).rows).toHaveLength(5);
  const before = proxy.writesToServer;
  const { rows } = await claim();
  expect(rows).toHaveLength(5);
  // One message for BEGIN, the horizon and the claim; one for COMMIT.
  expect(proxy.writesToServer - before).toBe(2);
});
