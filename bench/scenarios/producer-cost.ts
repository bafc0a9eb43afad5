import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createOutbox,
  type Database,
  LessonPublished,
  notifyChannel,
  setProducerNotify,
} from 'edupulse-outbox';
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
 * Drops every trigger a migration put on the schema's outbox, whatever their names, and
 * draws seq from the outbox's own sequence by default, as the write-order trigger did.
 */
async function dropOutboxTriggers(db: Database, schema: string): Promise<void> {
  const table = `${quoteSchema(schema)}.outbox`;
  const { rows: triggers } = await db.query<{ name: string }>(
    'SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal',
    [table],
  );
  for (const { name } of triggers) {
    await db.query(`DROP TRIGGER "${name.replaceAll('"', '""')}" ON ${table}`);
  }
  const { rows } = await db.query<{ sequence: string | null; defaulted: boolean }>(
    `SELECT pg_get_serial_sequence($1, 'seq') AS sequence,
            (SELECT column_default IS NOT NULL OR is_identity = 'YES'
               FROM information_schema.columns
              WHERE table_schema = $2 AND table_name = 'outbox' AND column_name = 'seq') AS defaulted`,
    [table, schema],
  );
  const sequence = rows[0]?.sequence;
  if (!rows[0]?.defaulted && sequence) {
    await db.query(`ALTER TABLE ${table} ALTER COLUMN seq SET DEFAULT nextval('${sequence}')`);
  }
}

/**
 * What a producer's commit costs: 8 clients, each event in its own transaction, into
 *  1. the outbox exactly as `migrate()` leaves it by default (its triggers untouched),
 *     with a dispatcher's LISTEN open as in production: what a business transaction
 *     pays, against 5;
 *  2. the same schema with the producer NOTIFY set on (`setProducerNotify(…, true)`);
 *  3. and set off (`setProducerNotify(…, false)`): 2 against 3 is what the NOTIFY costs;
 *  4. the outbox without any trigger (seq from its sequence by default);
 *  5. a plain INSERT … VALUES of the same row into a copy of the table without triggers,
 *     sent as node-postgres sends a query with values (unnamed: parsed and planned each time);
 *  6. the same INSERT as a named statement (prepared once per connection), as enqueue
 *     sends its own on a direct connection: 1 against 6 compares like with like.
 * 1–4 write through the public API (`LessonPublished.create`, `enqueue`). The variants
 * take turns in short rounds (order rotated each round, after one round not measured)
 * so background load hits them alike; each figure is the median round, each ratio the
 * median of the rounds' ratios (both sides of a ratio measured within one round).
 */
export const producerCost: Scenario = {
  names: ['producer-cost'],
  async run(bench: BenchContext) {
    // 5 s per variant with --quick, 20 s otherwise.
    const rounds = bench.settings.quick ? 5 : 10;
    const roundSeconds = bench.settings.quick ? 1 : 2;
    const lessons = Array.from({ length: AGGREGATES }, () => randomUUID());
    return bench.withSchemas(4, async (schemas) => {
      // a: as migrated; b: NOTIFY on; c: NOTIFY off; d: no triggers, and the bare table.
      const [a, b, c, d] = schemas as [InSchema, InSchema, InSchema, InSchema];
      await setProducerNotify(b.db, b.schema, true);
      await setProducerNotify(c.db, c.schema, false);
      await dropOutboxTriggers(d.db, d.schema);
      const qd = quoteSchema(d.schema);
      await d.db.query(`CREATE TABLE ${qd}.outbox_plain (LIKE ${qd}.outbox INCLUDING ALL)`);
      const plain: Variant = {
        name: 'plain insert',
        table: `${qd}.outbox_plain`,
        write: (client, lessonId) =>
          client.query(
            `INSERT INTO ${qd}.outbox_plain (aggregate_type, aggregate_id, event_type, payload)
             VALUES ($1, $2, $3, $4)`,
            ['lesson', lessonId, 'lesson-published', JSON.stringify(lessonPayload(lessonId))],
          ),
        rates: [],
      };
      // The same INSERT as a named statement: what an application gets from preparing its
      // own, as enqueue prepares its insert on a direct connection.
      const plainText = `INSERT INTO ${qd}.outbox_plain (aggregate_type, aggregate_id, event_type, payload)
             VALUES ($1, $2, $3, $4)`;
      const plainPrepared: Variant = {
        name: 'plain insert prepared',
        table: plain.table,
        write: (client, lessonId) =>
          client.query({
            name: 'bench-plain-insert',
            text: plainText,
            values: [
              'lesson',
              lessonId,
              'lesson-published',
              JSON.stringify(lessonPayload(lessonId)),
            ],
          }),
        rates: [],
      };
      const variants = [
        enqueueVariant('as migrated', a.schema),
        enqueueVariant('with NOTIFY', b.schema),
        enqueueVariant('without NOTIFY', c.schema),
        enqueueVariant('without triggers', d.schema),
        plain,
        plainPrepared,
      ];
      const [asMigrated, withNotify, withoutNotify, withoutTriggers] = variants as [
        Variant,
        Variant,
        Variant,
        Variant,
      ];

      // A dispatcher listens on every outbox a producer writes to, so a NOTIFY costs
      // what it costs in production; the counts also check each setting did its part.
      const notified = new Map<InSchema, number>([
        [a, 0],
        [b, 0],
        [c, 0],
      ]);
      const unlisten = await Promise.all(
        [...notified.keys()].map((s) =>
          s.db.listen(notifyChannel(s.schema), () =>
            notified.set(s, (notified.get(s) as number) + 1),
          ),
        ),
      );
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
        // One round not measured: the clients' first statements (parsing, the catalogue
        // caches, the JIT) would otherwise fall on the variant that comes first.
        for (const variant of variants) {
          await a.db.query(`TRUNCATE ${variant.table}`);
          await commitRate(clients, variant, lessons, roundSeconds / 2);
        }
        const ratios: number[] = [];
        const toPlain: number[] = [];
        const toPlainPrepared: number[] = [];
        // As migrated ÷ NOTIFY set off: two outboxes set up alike while the default leaves
        // the NOTIFY off, so what one round's ratio moves by noise alone.
        const alike: number[] = [];
        for (let r = 0; r < rounds; r++) {
          for (let i = 0; i < variants.length; i++) {
            const variant = variants[(r + i) % variants.length] as Variant;
            await a.db.query(`TRUNCATE ${variant.table}`);
            variant.rates.push(await commitRate(clients, variant, lessons, roundSeconds));
          }
          ratios.push((withNotify.rates[r] as number) / (withoutNotify.rates[r] as number));
          toPlain.push((asMigrated.rates[r] as number) / (plain.rates[r] as number));
          toPlainPrepared.push(
            (asMigrated.rates[r] as number) / (plainPrepared.rates[r] as number),
          );
          alike.push((asMigrated.rates[r] as number) / (withoutNotify.rates[r] as number));
          bench.log(
            `producer-cost: round ${r + 1}: ${variants.map((v) => `${v.name} ${Math.round(v.rates[r] as number)}/s`).join(', ')}`,
          );
        }
        // The notifications are asynchronous; a moment for the last ones to arrive.
        await sleep(100);
        if (notified.get(b) === 0) {
          throw new Error('producer-cost: no NOTIFY arrived with the producer NOTIFY set on');
        }
        if (notified.get(c) !== 0) {
          throw new Error('producer-cost: a NOTIFY arrived with the producer NOTIFY set off');
        }
        const ratio = round(median(ratios));
        const ratioToPlain = round(median(toPlain));
        const range = (values: number[]) =>
          `${round(Math.min(...values))}–${round(Math.max(...values))}`;
        const asMigratedNotify = (notified.get(a) as number) > 0 ? 'on' : 'off';
        return [
          {
            name: 'producer-cost',
            producers: PRODUCERS,
            rounds,
            round_seconds: roundSeconds,
            commits_per_s: Math.round(median(withNotify.rates)),
            commits_per_s_without_notify: Math.round(median(withoutNotify.rates)),
            ratio,
            ratio_range: range(ratios),
            commits_per_s_without_triggers: Math.round(median(withoutTriggers.rates)),
            commits_per_s_plain_insert: Math.round(median(plain.rates)),
            commits_per_s_as_migrated: Math.round(median(asMigrated.rates)),
            // Observed, not read from the schema: whether its inserts woke a listener.
            as_migrated_notify: asMigratedNotify,
            ratio_to_plain_insert: ratioToPlain,
            ratio_to_plain_insert_range: range(toPlain),
            commits_per_s_plain_insert_prepared: Math.round(median(plainPrepared.rates)),
            ratio_to_plain_insert_prepared: round(median(toPlainPrepared)),
            ...(asMigratedNotify === 'off' ? { same_setup_ratio_range: range(alike) } : {}),
            target: 'ratio_to_plain_insert ≥ 0.85',
            met: ratioToPlain >= 0.85,
          },
        ];
      } finally {
        await Promise.all(clients.map((client) => client.end().catch(() => {})));
        await Promise.all(unlisten.map((stop) => stop()));
      }
    });
  },
};
