/**
 * The raw-SQL contract end to end: any service inserts the four columns with plain SQL,
 * `edupulse-outbox run --broker log:` publishes each row as a CloudEvent line on stdout,
 * in order per aggregate, and a SIGTERM stops it with exit 0 and an empty outbox.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, killChildren, runCli, spawnCli, stackLines } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

afterEach(killChildren);

interface Inserted {
  id: string;
  seq: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: unknown;
}

// Payloads a hand-written producer might send: nesting, arrays, unicode, numbers, nulls.
function payloadFor(n: number): unknown {
  return {
    n,
    title: `Leçon ${n} — «über» 数学 🎓`,
    score: n / 7,
    tags: ['a', n % 2 === 0 ? 'even' : 'odd'],
    nested: { deep: { value: n * 1000, flag: n % 3 === 0, none: null } },
    quote: 'she said "hi"\\ and left',
  };
}

const AGGREGATES = [
  ['lesson', 'lesson-published'],
  ['quiz', 'quiz-submitted'],
  ['course', 'enrollment-created'],
  ['student', 'lesson-completed'],
] as const;

describe('run with the log broker', () => {
  let target: TestSchema;

  beforeAll(async () => {
    target = await createPgTestSchema('cli_run', { migrate: false });
  });

  afterAll(async () => {
    await killChildren();
    await target?.drop();
  });

  /** Inserts `count` events over 12 aggregates, one plain four-column INSERT statement per row. */
  async function insertRaw(from: number, count: number): Promise<Inserted[]> {
    const inserted: Inserted[] = [];
    for (let n = from; n < from + count; n++) {
      const [aggregateType, eventType] = AGGREGATES[n % AGGREGATES.length] as readonly [
        string,
        string,
      ];
      const aggregateId = `${aggregateType}-${n % 12}`;
      const payload = payloadFor(n);
      const { rows } = await target.db.query<{ id: string; seq: string }>(
        `INSERT INTO "${target.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         VALUES ($1, $2, $3, $4) RETURNING id::text, seq::text`,
        [aggregateType, aggregateId, eventType, JSON.stringify(payload)],
      );
      const row = rows[0] as { id: string; seq: string };
      inserted.push({
        id: row.id,
        seq: row.seq,
        aggregate_type: aggregateType,
        aggregate_id: aggregateId,
        event_type: eventType,
        payload,
      });
    }
    return inserted;
  }

  /** `migrate` on the test's schema, and `run` there into `broker`. */
  async function migrate() {
    const result = await runCli(['migrate', '--database-url', PG_URL, '--schema', target.schema]);
    expect(result.code, result.stderr).toBe(0);
  }
  const run = (broker: string) =>
    spawnCli(['run', '--database-url', PG_URL, '--schema', target.schema, '--broker', broker]);

  it('warns that the memory: broker deletes every event it claims', async () => {
    await migrate();
    const cli = run('memory:');
    await cli.waitFor('the dispatcher to start', () => cli.stderr.includes('dispatcher started'));
    cli.child.kill('SIGTERM');
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    const [warning] = jsonLines(result.stderr).filter((line) => line.level === 40);
    expect(warning?.msg).toMatch(
      /^broker memory: keeps events only in this process: every event claimed is deleted/,
    );
  });

  it('publishes rows inserted with plain SQL as CloudEvents, in order per aggregate', async () => {
    await migrate();

    // Half is waiting before the dispatcher starts, half arrives while it runs.
    const inserted = await insertRaw(0, 150);
    const cli = run('log:');
    await cli.waitFor('the dispatcher to start', () => cli.stderr.includes('dispatcher started'));
    inserted.push(...(await insertRaw(150, 150)));
    await cli.waitFor('300 lines on stdout', () => cli.lineCount() >= 300);

    const count = async () => {
      const { rows } = await target.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${target.schema}".outbox`,
      );
      return rows[0]?.n;
    };
    await cli.waitFor('the outbox to be empty', async () => (await count()) === 0);

    cli.child.kill('SIGTERM');
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(stackLines(result.stderr)).toEqual([]);
    expect(await count()).toBe(0);

    const events = jsonLines(result.stdout);
    expect(result.stdout.split('\n').filter((line) => line !== '')).toHaveLength(300);
    expect(events).toHaveLength(300);
    const byId = new Map(inserted.map((row) => [row.id, row]));
    expect(new Set(events.map((event) => event.id)).size).toBe(300);
    for (const event of events) {
      const row = byId.get(event.id as string);
      expect(row, `unknown event id ${String(event.id)}`).toBeDefined();
      if (!row) continue;
      expect(event.specversion).toBe('1.0');
      expect(event.type).toBe(row.event_type);
      expect(event.subject).toBe(row.aggregate_id);
      expect(event.source).toBe('/edupulse');
      expect(event.datacontenttype).toBe('application/json');
      expect(event.partitionkey).toBe(row.aggregate_id);
      expect(BigInt(event.sequence as string)).toBe(BigInt(row.seq));
      expect(Number.isNaN(Date.parse(event.time as string))).toBe(false);
      expect(event.data).toEqual(row.payload);
    }

    // Per aggregate: the sequence attribute increases line by line, and the events come in
    // the order they were inserted.
    const lastSequence = new Map<string, string>();
    const seen = new Map<string, string[]>();
    for (const event of events) {
      const subject = event.subject as string;
      const sequence = event.sequence as string;
      const previous = lastSequence.get(subject);
      if (previous !== undefined) expect(sequence > previous, `${subject}: ${sequence}`).toBe(true);
      lastSequence.set(subject, sequence);
      seen.set(subject, [...(seen.get(subject) ?? []), event.id as string]);
    }
    for (const [subject, ids] of seen) {
      const expected = inserted.filter((row) => row.aggregate_id === subject).map((row) => row.id);
      expect(ids).toEqual(expected);
    }
  });
});
