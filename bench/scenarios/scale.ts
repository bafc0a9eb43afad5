import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Database, notifyChannel, outboxStatus } from 'edupulse-outbox';
import pg from 'pg';
import { type BenchContext, median, type Scenario, secondsSince } from '../context.js';
import { DispatcherProcess, waitUntilEmpty } from '../process.js';
import { quoteSchema } from '../schema.js';

/**
 * Holds the backlog back from every dispatcher until `release()`: a transaction that
 * wrote an event in every partition before the backlog was written and stays open. An
 * open writer holds back the events written after it in its partitions (migration
 * 0004), so the dispatchers can start and share the partitions out first; rolling it
 * back and notifying hands them the whole backlog at one instant. Without it the figure
 * would be mostly process start-up (node loading, seconds for three on two cores) and
 * the first dispatcher draining alone until the next ownership round.
 */
async function openGate(url: string, schema: string, channel: string, partitions: number) {
  const client = new pg.Client({ connectionString: url, application_name: 'edupulse-bench' });
  await client.connect();
  const table = `${quoteSchema(schema)}.outbox`;
  try {
    await client.query('BEGIN');
    // 20 aggregates per partition on average: every partition gets one (checked below).
    await client.query(
      `INSERT INTO ${table} (aggregate_type, aggregate_id, event_type, payload)
       SELECT 'gate', 'gate-' || i, 'gate', '{}' FROM generate_series(1, $1) AS i`,
      [partitions * 20],
    );
    const { rows } = await client.query<{ covered: number }>(
      `SELECT count(DISTINCT partition)::int AS covered FROM ${table}`,
    );
    if (rows[0]?.covered !== partitions) throw new Error('the gate misses a partition');
  } catch (error) {
    await client.end();
    throw error;
  }
  let released = false;
  return {
    /** Idempotent. */
    async release() {
      if (released) return;
      released = true;
      try {
        await client.query('ROLLBACK');
        await client.query('SELECT pg_notify($1, $2)', [channel, '']);
      } finally {
        await client.end();
      }
    },
  };
}

/** Waits until `count` dispatchers share every partition evenly (as `status` shows it). */
async function balanced(db: Database, schema: string, count: number, partitions: number) {
  const share = Math.ceil(partitions / count);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { dispatchers } = await outboxStatus(db, schema);
    const owned = dispatchers.reduce((sum, d) => sum + d.partitions.length, 0);
    if (
      dispatchers.length === count &&
      owned === partitions &&
      dispatchers.every((d) => d.partitions.length <= share)
    ) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`${count} dispatchers did not share the partitions within 60 s`);
    }
    await sleep(100);
  }
}

/** `count` dispatcher processes on a schema of their own, kept running across rounds. */
interface Group {
  count: number;
  db: Database;
  schema: string;
  /** The schema's NOTIFY channel, on which a released gate wakes the dispatchers. */
  channel: string;
  dispatchers: DispatcherProcess[];
  rates: number[];
}

/** One round for a group: the backlog behind a gate, released at once, timed until empty. */
async function drainRound(bench: BenchContext, group: Group, partitions: number): Promise<number> {
  const { db, schema, dispatchers } = group;
  const backlog = bench.backlog;
  const gate = await openGate(bench.settings.databaseUrl, schema, group.channel, partitions);
  try {
    await bench.fill(db, schema, backlog);
    const started = process.hrtime.bigint();
    await gate.release();
    const { empty } = await waitUntilEmpty(db, schema, backlog, {
      onPoll: () => {
        for (const dispatcher of dispatchers) dispatcher.assertRunning();
      },
    });
    return Number(empty - started) / 1e9;
  } finally {
    await gate.release().catch(() => {});
  }
}

const COUNTS = [1, 2, 3];
/** The schemas' partition count (the default, set here so the gate knows what to cover). */
const PARTITIONS = 64;

/**
 * 1, 2 and 3 `run` processes (as deployed: a process each, the log broker into
 * /dev/null) drain one backlog over 10,000 aggregates. Each count has a schema of its
 * own and its processes stay up; once they share the partitions, the rounds go
 * 1, 2, 3, 1, 2, 3, … so background load hits every count alike. A round hands its
 * group the whole backlog at once and times it until the outbox is empty (counted every
 * 50 ms); the figure is the median round.
 */
export const scale: Scenario = {
  names: ['scale'],
  async run(bench) {
    const backlog = bench.backlog;
    const rounds = 3;
    const url = bench.settings.databaseUrl;
    const partitions = PARTITIONS;
    return bench.withSchemas(
      COUNTS.length,
      async (schemas) => {
        const groups: Group[] = await Promise.all(
          schemas.map(async ({ db, schema }, i) => ({
            count: COUNTS[i] as number,
            db,
            schema,
            channel: notifyChannel(schema),
            dispatchers: [],
            rates: [],
          })),
        );
        try {
          const started = process.hrtime.bigint();
          for (const group of groups) {
            for (let i = 0; i < group.count; i++) {
              group.dispatchers.push(new DispatcherProcess(url, group.schema));
            }
          }
          for (const group of groups) {
            await balanced(group.db, group.schema, group.count, partitions);
          }
          bench.log(
            `scale: ${secondsSince(started).toFixed(1)} s until the ${COUNTS.reduce((sum, n) => sum + n)} processes shared the partitions`,
          );
          for (let round = 1; round <= rounds; round++) {
            for (const group of groups) {
              const seconds = await drainRound(bench, group, partitions);
              group.rates.push(backlog / seconds);
              bench.log(
                `scale: round ${round}, ${group.count} dispatcher(s): ${backlog} in ${seconds.toFixed(2)} s`,
              );
            }
          }
          await Promise.all(groups.flatMap((group) => group.dispatchers.map((d) => d.stop())));
        } finally {
          for (const group of groups) for (const dispatcher of group.dispatchers) dispatcher.kill();
        }
        const figures: Record<string, number | string> = {};
        for (const { count, rates } of groups) {
          figures[`events_per_s_${count}`] = Math.round(median(rates));
        }
        const ranges = groups.map(
          ({ count, rates }) =>
            `${count}: ${Math.round(Math.min(...rates)).toLocaleString('en-US')}–${Math.round(Math.max(...rates)).toLocaleString('en-US')}`,
        );
        return [
          {
            name: 'scale',
            backlog,
            ...figures,
            rounds,
            ranges: ranges.join(', '),
            note: `${cpus().length} cores for PostgreSQL, the dispatchers and everything else on the machine`,
          },
        ];
      },
      { partitions },
    );
  },
};
