/**
 * The private PostgreSQL for logical replication (scripts/pg/logical-postgres.mjs), which
 * the Debezium and logical-replication benchmarks start: it serves logical decoding with
 * pgoutput at full durability, and stopping it leaves no server process and no directory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { startLogicalPostgres } from '../scripts/pg/logical-postgres.mjs';

/** Whether `pid` runs: it exists and is not a zombie (exited, not yet reaped by its parent). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

it('decodes an insert with pgoutput through a slot, then stops and leaves nothing behind', async () => {
  const server = await startLogicalPostgres();
  let pid: number | undefined;
  try {
    // The postmaster's pid is the first line of postmaster.pid.
    pid = Number(readFileSync(join(server.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    expect(alive(pid)).toBe(true);
    expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`);

    const client = new pg.Client(server.url);
    await client.connect();
    try {
      const { rows: settings } = await client.query<{ name: string; setting: string }>(
        `SELECT name, setting FROM pg_settings
         WHERE name IN ('wal_level', 'fsync', 'synchronous_commit', 'full_page_writes')
         ORDER BY name`,
      );
      expect(settings).toEqual([
        { name: 'fsync', setting: 'on' },
        { name: 'full_page_writes', setting: 'on' },
        { name: 'synchronous_commit', setting: 'on' },
        { name: 'wal_level', setting: 'logical' },
      ]);

      await client.query('CREATE TABLE captured (id int PRIMARY KEY, note text)');
      await client.query('CREATE PUBLICATION captured_pub FOR TABLE captured');
      const { rows: slots } = await client.query<{ slot_name: string }>(
        "SELECT slot_name FROM pg_create_logical_replication_slot('captured_slot', 'pgoutput')",
      );
      expect(slots).toEqual([{ slot_name: 'captured_slot' }]);
      await client.query("INSERT INTO captured VALUES (1, 'decoded through the slot')");

      // pgoutput's binary messages: B(egin), R(elation), I(nsert), C(ommit).
      const { rows: changes } = await client.query<{ data: Buffer }>(
        `SELECT data FROM pg_logical_slot_get_binary_changes('captured_slot', NULL, NULL,
           'proto_version', '1', 'publication_names', 'captured_pub')`,
      );
      expect(changes.map(({ data }) => String.fromCharCode(data[0] as number))).toEqual([
        'B',
        'R',
        'I',
        'C',
      ]);
      expect(changes[2]?.data.toString('latin1')).toContain('decoded through the slot');
    } finally {
      await client.end();
    }
  } finally {
    await server.stop();
  }
  expect(alive(pid as number)).toBe(false);
  expect(existsSync(server.dir)).toBe(false);
});
