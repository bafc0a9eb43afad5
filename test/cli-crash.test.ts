/**
 * Crash safety of `run`: a dispatcher SIGKILLed mid-drain (twice) loses nothing. Its
 * claimed-but-uncommitted rows come back when its connection dies, and the next process
 * publishes them, so every event is published at least once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, killChildren, spawnCli, stackLines } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

afterEach(killChildren);

const EVENTS = 20_000;
const AGGREGATES = 100;

describe('run, killed with SIGKILL mid-drain', () => {
  let target: TestSchema;

  beforeAll(async () => {
    target = await createPgTestSchema('cli_crash');
  });

  afterAll(async () => {
    await killChildren();
    await target?.drop();
  });

  const count = async (table: string) => {
    const { rows } = await target.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${target.schema}".${table}`,
    );
    return rows[0]?.n ?? -1;
  };

  const claimedByOthers = async () => {
    const { rows } = await target.db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM "${target.schema}".outbox)::int
            - (SELECT count(*) FROM (SELECT 1 FROM "${target.schema}".outbox FOR UPDATE SKIP LOCKED) AS free)::int AS n`,
    );
    return rows[0]?.n ?? 0;
  };

  const spawnRun = () =>
    spawnCli([
      'run',
      '--database-url',
      PG_URL,
      '--schema',
      target.schema,
      '--broker',
      'log:',
      '--batch-size',
      '200',
    ]);

  /**
   * Spawns `run` and stops reading its stdout at the first chunk: once the pipe is full the
   * log broker's write blocks inside a claim transaction, so the SIGKILL lands mid-drain
   * however fast the machine is. Returns what the child wrote before dying.
   */
  async function runAndKillMidDrain(): Promise<string> {
    const cli = spawnRun();
    cli.child.stdout?.once('data', () => cli.child.stdout?.pause());
    await cli.waitFor('some output', () => cli.stdout.length > 0);
    // Rows the child holds in its open claim transaction are the ones SKIP LOCKED skips.
    await cli.waitFor('the child to hold a claim', async () => (await claimedByOthers()) > 0);
    const remaining = await count('outbox');
    cli.child.kill('SIGKILL');
    cli.child.stdout?.resume();
    const result = await cli.exited;
    expect(result.signal).toBe('SIGKILL');
    // Work was left when it died: the kill did interrupt a drain.
    expect(remaining).toBeGreaterThan(0);
    // Its claim died with its connection: every row is claimable again.
    await waitFor('the killed claim to be released', async () => (await claimedByOthers()) === 0, {
      timeoutMs: 30_000,
    });
    return result.stdout;
  }

  it('publishes every event at least once across two crashes', async () => {
    const { rows } = await target.db.query<{ id: string }>(
      `INSERT INTO "${target.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
       SELECT 'lesson', 'lesson-' || (i % ${AGGREGATES}), 'lesson-published', json_build_object('n', i)
       FROM generate_series(1, ${EVENTS}) AS i
       RETURNING id::text`,
    );
    const all = new Set(rows.map((row) => row.id));
    expect(all.size).toBe(EVENTS);

    const first = await runAndKillMidDrain();
    const second = await runAndKillMidDrain();

    const third = spawnRun();
    await third.waitFor(
      'the outbox to be empty',
      async () => (await count('outbox')) === 0,
      120_000,
    );
    third.child.kill('SIGTERM');
    const last = await third.exited;
    expect(last.code, last.stderr).toBe(0);
    expect(stackLines(last.stderr)).toEqual([]);

    const seen = new Set<string>();
    for (const stdout of [first, second, last.stdout]) {
      for (const event of jsonLines(stdout)) seen.add(event.id as string);
    }
    const missing = [...all].filter((id) => !seen.has(id));
    expect(missing).toEqual([]);
    const unknown = [...seen].filter((id) => !all.has(id));
    expect(unknown).toEqual([]);
    expect(await count('outbox')).toBe(0);
    expect(await count('outbox_dead_letter')).toBe(0);
  });
});
