import { randomBytes } from 'node:crypto';
import { type Database, type EventBroker, migrate, pgDatabase } from 'edupulse-outbox';
import { quoteSchema } from './schema.js';

/** The brokers a steady scenario can publish to. */
export const steadyBrokers = ['nats', 'amqp', 'kafka'] as const;
export type SteadyBroker = (typeof steadyBrokers)[number];

/** Where the benchmarks run and how big they are. */
export interface BenchSettings {
  /** Smaller backlogs and shorter steady phases (the whole run under 5 minutes). */
  quick: boolean;
  /** The planned rate of `steady-latency`, events/s (1,000 unless given). */
  steadyRate: number;
  /** The broker the steady scenarios publish to (NATS unless given). */
  steadyBroker: SteadyBroker;
  databaseUrl: string;
  natsUrl: string;
  amqpUrl: string;
  kafkaUrl: string;
}

/**
 * One scenario's figures: `name` as the performance issue spells it, the figures in
 * snake_case, and when the scenario has a target, `target` (text) and `met`. A scenario
 * that could not run (a broker not reachable, the peer not installed) reports `skipped`
 * with the reason instead of figures.
 */
export interface ScenarioResult {
  name: string;
  target?: string;
  met?: boolean;
  skipped?: string;
  [figure: string]: unknown;
}

export interface Scenario {
  /** The names of the results it produces, for `--only`. */
  readonly names: readonly string[];
  run(bench: BenchContext, only: ReadonlySet<string>): Promise<ScenarioResult[]>;
}

/**
 * A scenario of one result per target (a broker, say), each named as its target: measures
 * those `--only` asks for, in order; `index` is the target's place in `targets`.
 */
export function perTarget<T extends { name: string }>(
  targets: readonly T[],
  measure: (bench: BenchContext, target: T, index: number) => Promise<ScenarioResult>,
): Scenario {
  return {
    names: targets.map((target) => target.name),
    async run(bench, only) {
      const results: ScenarioResult[] = [];
      for (const [index, target] of targets.entries()) {
        if (only.has(target.name)) results.push(await measure(bench, target, index));
      }
      return results;
    },
  };
}

export interface FillOptions {
  /** Aggregates the events are spread over. Default 10,000. */
  aggregates?: number;
}

/** What every scenario shares: settings, progress lines, fresh schemas, backlogs. */
export class BenchContext {
  constructor(
    readonly settings: BenchSettings,
    private readonly progress: (line: string) => void = (line) =>
      process.stderr.write(`bench: ${line}\n`),
  ) {}

  /** Backlog size of the drain scenarios: 200,000, or 50,000 with `--quick`. */
  get backlog(): number {
    return this.settings.quick ? 50_000 : 200_000;
  }

  log(line: string): void {
    this.progress(line);
  }

  /** A pool on the bench database. */
  database(maxConnections = 4): Database {
    return pgDatabase({
      connectionString: this.settings.databaseUrl,
      applicationName: 'edupulse-bench',
      maxConnections,
    });
  }

  /** Runs `body` in a freshly migrated schema of its own, dropped afterwards. */
  async withSchema<T>(
    body: (db: Database, schema: string) => Promise<T>,
    options: { partitions?: number; maxConnections?: number } = {},
  ): Promise<T> {
    const schema = `bench_${randomBytes(4).toString('hex')}`;
    const db = this.database(options.maxConnections);
    try {
      await migrate(db, schema, { partitions: options.partitions });
      return await body(db, schema);
    } finally {
      await db.query(`DROP SCHEMA IF EXISTS ${quoteSchema(schema)} CASCADE`);
      await db.close();
    }
  }

  /**
   * `count` fresh schemas at once (each as `withSchema` makes it), for scenarios that
   * interleave their variants round by round so background load hits them all alike.
   */
  async withSchemas<T>(
    count: number,
    body: (schemas: { db: Database; schema: string }[]) => Promise<T>,
    options: { partitions?: number; maxConnections?: number } = {},
    opened: { db: Database; schema: string }[] = [],
  ): Promise<T> {
    if (opened.length >= count) return body(opened);
    return this.withSchema(
      (db, schema) => this.withSchemas(count, body, options, [...opened, { db, schema }]),
      options,
    );
  }

  /**
   * `count` events of type lesson-published (about 80 bytes of JSON each) over
   * `aggregates` lessons, inserted with plain SQL, then vacuumed and analysed.
   */
  async fill(db: Database, schema: string, count: number, options: FillOptions = {}) {
    const table = `${quoteSchema(schema)}.outbox`;
    await db.query(
      `INSERT INTO ${table} (aggregate_type, aggregate_id, event_type, payload)
       SELECT 'lesson', 'lesson-' || (i % $2), 'lesson-published',
              json_build_object('lesson_id', 'lesson-' || (i % $2), 'title', 'Fractions', 'n', i)
       FROM generate_series(1, $1) AS i`,
      [count, options.aggregates ?? 10_000],
    );
    await db.query(`VACUUM ANALYZE ${table}`);
  }
}

/** Seconds since `started` (from `process.hrtime.bigint()`). */
export function secondsSince(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** The value at quantile `q` (0–1) of ascending `sorted`, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] as number;
}

/** The median of `values` (nearest rank: the lower middle one of an even count). */
export function median(values: readonly number[]): number {
  return quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

/** `ms` of CPU over `count` events as ms per 1,000 events, one decimal; undefined stays so. */
export function per1000(ms: number | undefined, count: number): number | undefined {
  return ms === undefined ? undefined : round((ms * 1000) / count, 1);
}

/** Rounds to `digits` decimals, for figures that read well in a table. */
export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** `new Error(…)` text of anything thrown, for skip reasons and error lines. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

/** A broker that accepts everything and sends nothing: the dispatcher's own cost. */
export function noopBroker(): EventBroker {
  return {
    name: 'noop',
    async connect() {},
    async publish(batch) {
      return batch.map(() => ({ ok: true }) as const);
    },
    async close() {},
  };
}
