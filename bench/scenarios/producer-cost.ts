import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createOutbox, type Database, LessonPublished, notifyChannel } from 'edupulse-outbox';
import pg from 'pg';
import { type BenchContext, median, round, type Scenario } from '../context.js';
import { quoteSchema } from '../schema.js';

const PRODUCERS = 8;
type InSchema = { db: Database; schema: string };
const AGGREGATES = 10_000;

/** One way of writing an event, on a client inside its transaction. */
interface Variant {
  name: string;
  /** The table a round starts empty (a drained outbox), schema-qualified. */
  table: string;
  write(client: pg.Client, lessonId: string): Promise<unknown>;
  rates: number[];
}

function lessonPayload(lessonId: string) {
  return {
    lesson_id: lessonId,
    author_id: '00000000-0000-4000-8000-000000000001',
    title: 'Fractions without fear',
    published_at: new Date().toISOString(),
  };
}

/** Writes through the public API: `LessonPublished.create` and `enqueue`. */
function enqueueVariant(name: string, schema: string): Variant {
  const outbox = createOutbox({ schema });
  return {
    name,
    table: `${quoteSchema(schema)}.outbox`,
    write: (client, lessonId) =>
      outbox.enqueue(client, LessonPublished.create(lessonPayload(lessonId))),
    rates: [],
  };
}

/**
 * `PRODUCERS` clients, each committing one event per transaction (BEGIN, write, COMMIT)
 * as fast as it can for `seconds`. Returns commits per second over all of them.
 */
async function commitRate(
  clients: readonly pg.Client[],
  variant: Variant,
  lessons: readonly string[],
  seconds: number,
): Promise<number> {
  const started = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  const counts = await Promise.all(
    clients.map(async (client, producer) => {
      let commits = 0;
      while (Date.now() < deadline) {
        await client.query('BEGIN');
        await variant.write(
          client,
          lessons[(producer * 7919 + commits) % lessons.length] as string,
        );
        await client.query('COMMIT');
        commits++;
      }
      return commits;
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  return counts.reduce((sum, n) => sum + n, 0) / elapsed;
}

/**
 * What a producer's commit costs with the outbox's triggers: 8 clients, each event
 * enqueued in its own transaction through the public API, into
 *  1. the migrated outbox (NOTIFY trigger and write-order trigger), with a dispatcher's
 *     LISTEN open as in production;
 *  2. the same schema with only the NOTIFY trigger dropped (what producers would pay
 *     if dispatchers only polled and the trigger were not there);
 *  3. also without the write-order trigger (seq from its sequence by default);
 *  4. a plain INSERT … VALUES of the same row into a copy of the table without triggers.
 * The variants take turns in short rounds (order rotated each round) so background load
 * hits them alike; each figure is the median round, the ratio the median of the rounds'
 * with/without-NOTIFY ratios (each pair measured within one round).
 */
export const producerCost: Scenario = {
  names: ['producer-cost'],
  async run(bench: BenchContext) {
    // 5 s per variant with --quick, 20 s otherwise.
    const rounds = bench.settings.quick ? 5 : 10;
    const roundSeconds = bench.settings.quick ? 1 : 2;
    const lessons = Array.from({ length: AGGREGATES }, () => randomUUID());
    return bench.withSchemas(3, async (schemas) => {
      // a: as migrated; b: without the NOTIFY trigger; c: without either trigger.
      const [a, b, c] = schemas as [InSchema, InSchema, InSchema];
      const qb = quoteSchema(b.schema);
      const qc = quoteSchema(c.schema);
      // Trigger names as migrations 0001 and 0004 create them.
      await b.db.query(`DROP TRIGGER outbox_notify ON ${qb}.outbox`);
      await c.db.query(`DROP TRIGGER outbox_notify ON ${qc}.outbox`);
      await c.db.query(`DROP TRIGGER outbox_before_insert ON ${qc}.outbox`);
      await c.db.query(
        `ALTER TABLE ${qc}.outbox ALTER COLUMN seq SET DEFAULT nextval('${qc}.outbox_write_seq')`,
      );
      await c.db.query(`CREATE TABLE ${qc}.outbox_plain (LIKE ${qc}.outbox INCLUDING ALL)`);
      const plain: Variant = {
        name: 'plain insert',
        table: `${qc}.outbox_plain`,
        write: (client, lessonId) =>
          client.query(
            `INSERT INTO ${qc}.outbox_plain (aggregate_type, aggregate_id, event_type, payload)
             VALUES ($1, $2, $3, $4)`,
            ['lesson', lessonId, 'lesson-published', JSON.stringify(lessonPayload(lessonId))],
          ),
        rates: [],
      };
      const variants = [
        enqueueVariant('with NOTIFY', a.schema),
        enqueueVariant('without NOTIFY', b.schema),
        enqueueVariant('without triggers', c.schema),
        plain,
      ];
      const [withNotify, withoutNotify, withoutTriggers] = variants as [Variant, Variant, Variant];

      let notified = 0;
      const unlisten = await a.db.listen(notifyChannel(a.schema), () => notified++);
      const clients = Array.from(
        { length: PRODUCERS },
        () =>
          new pg.Client({
            connectionString: bench.settings.databaseUrl,
            application_name: 'edupulse-bench',
          }),
      );
      try {
        await Promise.all(clients.map((client) => client.connect()));
        const ratios: number[] = [];
        for (let r = 0; r < rounds; r++) {
          for (let i = 0; i < variants.length; i++) {
            const variant = variants[(r + i) % variants.length] as Variant;
            await a.db.query(`TRUNCATE ${variant.table}`);
            variant.rates.push(await commitRate(clients, variant, lessons, roundSeconds));
          }
          ratios.push((withNotify.rates[r] as number) / (withoutNotify.rates[r] as number));
          bench.log(
            `producer-cost: round ${r + 1}: ${variants.map((v) => `${v.name} ${Math.round(v.rates[r] as number)}/s`).join(', ')}`,
          );
        }
        // The notifications are asynchronous; a moment for the last ones to arrive.
        await sleep(100);
        if (notified === 0) throw new Error('producer-cost: the NOTIFY trigger never fired');
        const ratio = round(median(ratios));
        return [
          {
            name: 'producer-cost',
            producers: PRODUCERS,
            rounds,
            round_seconds: roundSeconds,
            commits_per_s: Math.round(median(withNotify.rates)),
            commits_per_s_without_notify: Math.round(median(withoutNotify.rates)),
            ratio,
            ratio_range: `${round(Math.min(...ratios))}–${round(Math.max(...ratios))}`,
            commits_per_s_without_triggers: Math.round(median(withoutTriggers.rates)),
            commits_per_s_plain_insert: Math.round(median(plain.rates)),
            target: 'ratio ≥ 0.9',
            met: ratio >= 0.9,
          },
        ];
      } finally {
        await Promise.all(clients.map((client) => client.end().catch(() => {})));
        await unlisten();
      }
    });
  },
};
