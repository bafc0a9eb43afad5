import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboxOutcome } from '../../src/consumer/inbox.js';
import { createInbox, StaleEventError } from '../../src/consumer/index.js';
import { SchemaVersionError } from '../../src/index.js';
import {
  createPgliteTestSchema,
  createPgTestSchema,
  PG_URL,
  type TestSchema,
} from '../helpers/db.js';

let test: TestSchema;
let pool: pg.Pool;

beforeAll(async () => {
  test = await createPgTestSchema('inbox');
  pool = new pg.Pool({ connectionString: PG_URL, max: 4 });
  await pool.query(`CREATE TABLE "${test.schema}".effects (event_id text, note text)`);
});

afterAll(async () => {
  await pool?.end();
  await test?.drop();
});

/** Runs `fn` in a node-postgres transaction on its own client. */
async function inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

let counter = 0;
function event(aggregateId: string, sequence?: string) {
  counter++;
  return { id: `e-${counter}-${Math.random()}`, type: 'quiz-submitted', aggregateId, sequence };
}

async function effects(): Promise<number> {
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${test.schema}".effects`);
  return rows[0].n;
}

describe('inbox', () => {
  it('in a schema that was never migrated, says to run migrate and runs nothing', async () => {
    const inbox = createInbox({ schema: 'never_migrated_inbox', consumer: 'c' });
    let ran = false;
    const error = await inTransaction((client) =>
      inbox.process(client, event('m1', '1'), () => {
        ran = true;
      }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaVersionError);
    expect((error as Error).message).toBe(
      'schema "never_migrated_inbox" has no inbox table: run `edupulse-outbox migrate --schema never_migrated_inbox` (or migrate(db, \'never_migrated_inbox\')) before writing to it',
    );
    expect(ran).toBe(false);
  });

  it('applies an event once: a second delivery is a duplicate and its function does not run', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'once' });
    const e = event('a1', '1');
    const apply = (client: pg.PoolClient) =>
      inbox.process(client, e, () =>
        client.query(`INSERT INTO "${test.schema}".effects VALUES ($1, 'once')`, [e.id]),
      );
    const before = await effects();
    expect((await inTransaction(apply)).outcome).toBe('applied');
    expect((await inTransaction(apply)).outcome).toBe('duplicate');
    expect(await effects()).toBe(before + 1);
    // Another consumer has its own records.
    const other = createInbox({ schema: test.schema, consumer: 'other' });
    const applied = await inTransaction((c) => other.process(c, e, () => 1));
    // Narrowed on its outcome, the result is what fn returned (typed: this compiles).
    if (applied.outcome !== 'applied') throw new Error(`not applied: ${applied.outcome}`);
    const one: number = applied.result;
    expect(one).toBe(1);
  });

  it('refuses a node-postgres client with no transaction open, and runs nothing', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'no-transaction' });
    const client = await pool.connect();
    let ran = false;
    try {
      const error = await inbox
        .process(client, event('n1', '1'), () => {
          ran = true;
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(
        /^inbox\.process: a node-postgres client with no transaction open is not a transaction/,
      );
    } finally {
      client.release();
    }
    expect(ran).toBe(false);
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM "${test.schema}".inbox WHERE consumer = 'no-transaction'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('refuses the handle of a database.transaction() that has ended, and runs nothing', async () => {
    // As when a handler does not await inbox.process: the connection is back in the pool,
    // and its statements went into whichever transaction took it next.
    const inbox = createInbox({ schema: test.schema, consumer: 'ended' });
    let kept: unknown;
    await test.db.transaction(async (tx) => {
      kept = tx;
    });
    let ran = false;
    const error = await inbox
      .process(kept as Parameters<typeof inbox.process>[0], event('ended-1', '1'), () => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(
      /^this transaction of database\.transaction\(\) has ended \(committed or rolled back\)/,
    );
    await test.db.transaction((tx) => tx.query('SELECT 1'));
    expect(ran).toBe(false);
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM "${test.schema}".inbox WHERE consumer = 'ended'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('a rolled-back transaction records nothing, so the redelivery applies', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'rollback' });
    const e = event('a2', '1');
    await expect(
      inTransaction((client) =>
        inbox.process(client, e, async () => {
          await client.query(`INSERT INTO "${test.schema}".effects VALUES ($1, 'lost')`, [e.id]);
          throw new Error('handler broke');
        }),
      ),
    ).rejects.toThrow('handler broke');
    const result = await inTransaction((client) => inbox.process(client, e, () => 'ran'));
    expect(result).toEqual({ outcome: 'applied', result: 'ran' });
  });

  it('two transactions with one event at once: the second waits, then finds a duplicate', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'race' });
    const e = event('a3', '5');
    let ranTwice = 0;
    const first = await pool.connect();
    const second = await pool.connect();
    try {
      await first.query('BEGIN');
      await second.query('BEGIN');
      const one = await inbox.process(first, e, () => ranTwice++);
      expect(one.outcome).toBe('applied');
      let secondDone = false;
      const two = inbox
        .process(second, e, () => ranTwice++)
        .finally(() => {
          secondDone = true;
        });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(secondDone).toBe(false); // waiting on the first's key
      await first.query('COMMIT');
      expect((await two).outcome).toBe('duplicate');
      await second.query('COMMIT');
      expect(ranTwice).toBe(1);
    } finally {
      first.release();
      second.release();
    }
  });

  it("holds an aggregate's mark until the transaction ends: the aggregate's next event waits", async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'one-at-a-time', onStale: 'skip' });
    await inTransaction((c) => inbox.process(c, event('agg-w', '5'), () => 0));
    const first = await pool.connect();
    const second = await pool.connect();
    /** `second` processes `e` while `first` holds its transaction open; what it found. */
    const whileFirstOpen = async (held: ReturnType<typeof event>, e: ReturnType<typeof event>) => {
      await first.query('BEGIN');
      await second.query('BEGIN');
      const one = await inbox.process(first, held, () => 0);
      let secondDone = false;
      const two = inbox
        .process(second, e, () => 0)
        .finally(() => {
          secondDone = true;
        });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const waited = !secondDone;
      await first.query('COMMIT');
      const outcome = (await two).outcome;
      await second.query('COMMIT');
      return { first: one.outcome, second: outcome, waited };
    };
    // [the event held open, the aggregate's next one, what each found]
    const cases: [string, string, string, string][] = [
      // A later event moves the mark; the next one waits for that commit, then applies.
      ['6', '7', 'applied', 'applied'],
      // A stale event moves nothing, but holds the mark all the same.
      ['1', '8', 'stale', 'applied'],
      // Waiting on a mark that moved past it, an event finds itself stale.
      ['10', '9', 'applied', 'stale'],
    ];
    try {
      for (const [held, next, heldOutcome, nextOutcome] of cases) {
        expect(await whileFirstOpen(event('agg-w', held), event('agg-w', next))).toEqual({
          first: heldOutcome,
          second: nextOutcome,
          waited: true,
        });
      }
      // A first event of a new aggregate: the other waits on the new row's key.
      expect(await whileFirstOpen(event('agg-w-new', '1'), event('agg-w-new', '2'))).toEqual({
        first: 'applied',
        second: 'applied',
        waited: true,
      });
    } finally {
      first.release();
      second.release();
    }
  });

  it("an event older than its aggregate's last applied one meets the stale policy", async () => {
    const base = { schema: test.schema };
    const park = createInbox({ ...base, consumer: 'stale-park' });
    const skip = createInbox({ ...base, consumer: 'stale-skip', onStale: 'skip' });
    const apply = createInbox({ ...base, consumer: 'stale-apply', onStale: 'apply' });
    const newer = event('agg-s', '20');
    const older = event('agg-s', '10');
    for (const inbox of [park, skip, apply]) {
      await inTransaction((c) => inbox.process(c, newer, () => 0));
    }
    const parked = inTransaction((c) => park.process(c, older, () => 0));
    await expect(parked).rejects.toBeInstanceOf(StaleEventError);
    // The reason says what the event is older than.
    await expect(parked).rejects.toThrow(
      `event ${older.id} (quiz-submitted, sequence 10) is older than the last event applied for aggregate "agg-s" (sequence 20); one applied before and delivered again after its inbox record was purged looks the same: retry it only if it was not applied (after a restore of the producer's database, see docs/operations.md#restoring-a-database-from-a-backup)`,
    );
    expect((await inTransaction((c) => skip.process(c, older, () => 0))).outcome).toBe('stale');
    expect((await inTransaction((c) => apply.process(c, older, () => 0))).outcome).toBe('applied');
    // Events without a sequence (other producers) are never stale.
    const unordered = event('agg-s');
    expect((await inTransaction((c) => park.process(c, unordered, () => 0))).outcome).toBe(
      'applied',
    );
    // A later sequence still applies.
    expect(
      (await inTransaction((c) => park.process(c, event('agg-s', '21'), () => 0))).outcome,
    ).toBe('applied');
  });

  it("keeps each aggregate's order per source and aggregate type: one id of two types, or of two producers, never compares", async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'marks' });
    const of = (aggregateType: string, sequence: string, source = 'urn:lms') => ({
      ...event('42', sequence),
      aggregateType,
      source,
    });
    const outcome = async (e: ReturnType<typeof of>) =>
      (await inTransaction((c) => inbox.process(c, e, () => 0))).outcome;
    // Before: the course's event was parked as older than the student's (one mark by id).
    expect(await outcome(of('student', '323'))).toBe('applied');
    expect(await outcome(of('course', '304'))).toBe('applied');
    // Another producer's outbox numbers its events apart: its lower sequence is not late.
    expect(await outcome(of('student', '7', 'urn:grades'))).toBe('applied');
    // Within one source and type, order still holds, and the reason names the type.
    const late = of('student', '300');
    await expect(inTransaction((c) => inbox.process(c, late, () => 0))).rejects.toThrow(
      `event ${late.id} (quiz-submitted, sequence 300) is older than the last event applied for student "42" (sequence 323)`,
    );
    expect(await outcome(of('course', '305'))).toBe('applied');
  });

  it('records an event by its source and id: two producers may number theirs alike', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'sources' });
    const numbered = (source: string, id: string, aggregateId: string) => ({
      id,
      type: 'quiz-submitted',
      aggregateId,
      sequence: undefined,
      source,
      aggregateType: 'quiz',
    });
    const outcome = async (e: ReturnType<typeof numbered>) =>
      (await inTransaction((c) => inbox.process(c, e, () => 0))).outcome;
    // Before: producer A's event 1 was taken for a duplicate of B's and never applied.
    expect(await outcome(numbered('urn:producer-b', '1', 'agg-b'))).toBe('applied');
    expect(await outcome(numbered('urn:producer-a', '1', 'agg-a'))).toBe('applied');
    expect(await outcome(numbered('urn:producer-a', '1', 'agg-a'))).toBe('duplicate');
    // A record of a release before migration 0011 has no source: the same id is a
    // duplicate, so a rollout applies nothing twice.
    await pool.query(
      `INSERT INTO "${test.schema}".inbox (consumer, event_id, event_type, aggregate_id)
       VALUES ('sources', 'legacy-1', 'quiz-submitted', 'agg-l')`,
    );
    expect(await outcome(numbered('urn:producer-a', 'legacy-1', 'agg-l'))).toBe('duplicate');
  });

  it('the last applied event delivered again after its record was purged is a duplicate, not stale', async () => {
    // As when the broker delivers it again later than the inbox's retention.
    for (const onStale of ['park', 'skip', 'apply'] as const) {
      const inbox = createInbox({ schema: test.schema, consumer: `purged-${onStale}`, onStale });
      const last = event(`agg-p-${onStale}`, '30');
      let runs = 0;
      const apply = () => {
        runs++;
        return 0;
      };
      await inTransaction((c) => inbox.process(c, event(last.aggregateId, '29'), apply));
      expect((await inTransaction((c) => inbox.process(c, last, apply))).outcome).toBe('applied');
      expect(await inbox.purge(test.db, new Date(Date.now() + 60_000))).toBe(2);
      expect((await inTransaction((c) => inbox.process(c, last, apply))).outcome).toBe('duplicate');
      expect(runs).toBe(2);
      // Recorded again: a later delivery is a duplicate on the key, as before the purge.
      expect(await inbox.purge(test.db, new Date(Date.now() + 60_000))).toBe(1);
    }
  });

  it("another event with the mark's sequence is a sequence gone back (a restored producer), not a duplicate", async () => {
    // A producer restored from a backup numbers its new events from the backup's sequence.
    for (const onStale of ['park', 'skip', 'apply'] as const) {
      const inbox = createInbox({ schema: test.schema, consumer: `rewound-${onStale}`, onStale });
      const applied = event(`agg-r-${onStale}`, '30');
      const again = event(applied.aggregateId, '30');
      let runs = 0;
      const apply = () => {
        runs++;
        return 0;
      };
      expect((await inTransaction((c) => inbox.process(c, applied, apply))).outcome).toBe(
        'applied',
      );
      const second = inTransaction((c) => inbox.process(c, again, apply));
      if (onStale === 'park') {
        await expect(second).rejects.toThrow(
          `event ${again.id} (quiz-submitted, sequence 30) has the sequence of event ${applied.id}, the last applied for aggregate "${applied.aggregateId}": the producer numbered events again from an earlier sequence, as after its database was restored from a backup; advance its sequence (docs/operations.md#restoring-a-database-from-a-backup), then retry this event`,
        );
      } else {
        expect((await second).outcome).toBe(onStale === 'skip' ? 'stale' : 'applied');
      }
      expect(runs).toBe(onStale === 'apply' ? 2 : 1);
    }
  });

  it('an event recorded twice by one handler still counts as applied', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'twice' });
    const once = event('agg-twice', '1');
    const outcomes = await inTransaction(async (c) => [
      (await inbox.process(c, once, () => 0)).outcome,
      (await inbox.process(c, once, () => 0)).outcome,
    ]);
    expect(outcomes).toEqual(['applied', 'duplicate']);
    expect(inboxOutcome(once)).toBe('applied');
  });

  it("purge deletes only this consumer's records older than the time given", async () => {
    const inbox = createInbox({ schema: test.schema, consumer: 'purge' });
    const keep = createInbox({ schema: test.schema, consumer: 'purge-keep' });
    for (let i = 0; i < 7; i++) {
      await inTransaction((c) => inbox.process(c, event(`p${i}`, '1'), () => 0));
    }
    await inTransaction((c) => keep.process(c, event('k', '1'), () => 0));
    expect(await inbox.purge(test.db, new Date(Date.now() - 60_000))).toBe(0);
    expect(await inbox.purge(test.db, new Date(Date.now() + 1000), 3)).toBe(7);
    const { rows } = await pool.query(
      `SELECT consumer, count(*)::int AS n FROM "${test.schema}".inbox WHERE consumer LIKE 'purge%' GROUP BY consumer`,
    );
    expect(rows).toEqual([{ consumer: 'purge-keep', n: 1 }]);
  });

  it('refuses a bad consumer name or policy, naming the setting', () => {
    expect(() => createInbox({ consumer: 'has space' })).toThrow(/inbox.consumer/);
    expect(() => createInbox({ consumer: 'ok', schema: 'x;drop' })).toThrow(/schema/);
    // @ts-expect-error: not a policy
    expect(() => createInbox({ consumer: 'ok', onStale: 'ignore' })).toThrow(/inbox.onStale/);
  });

  it('works inside a PGlite transaction too', async () => {
    const lite = await createPgliteTestSchema('inbox_lite');
    try {
      const inbox = createInbox({ schema: lite.schema, consumer: 'lite' });
      const e = event('l1', '1');
      const first = await lite.pglite.transaction((tx) => inbox.process(tx, e, () => 'x'));
      const again = await lite.pglite.transaction((tx) => inbox.process(tx, e, () => 'x'));
      expect([first.outcome, again.outcome]).toEqual(['applied', 'duplicate']);
    } finally {
      await lite.drop();
    }
  });
});
