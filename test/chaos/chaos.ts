/**
 * The chaos driver: producers write events over many aggregates through PostgreSQL while
 * several `edupulse-outbox run` processes publish them, a killer SIGKILLs a random
 * dispatcher every 1–3 s (and starts its replacement at once), the broker is restarted
 * once and PostgreSQL once. When production is done the disruptions stop; the driver waits
 * until the outbox is empty and the broker holds at least every produced event, SIGTERMs
 * the dispatchers (each must exit 0), then an independent reader takes everything the
 * broker stored and counts lost, out-of-order and duplicate events.
 *
 * Counting, per produced event id: lost = produced but never delivered; duplicates =
 * deliveries beyond the first; out of order = a first delivery whose per-aggregate index
 * `n` is not above the previous first delivery's of the same aggregate (one aggregate's
 * transactions never overlap, so `n` is its commit order). Phantoms = delivered ids never
 * produced (a rolled-back transaction's events must not exist).
 *
 * The production under chaos (`produceUnderChaos`: producers, killer, restarts), the
 * driver's database pool and the report's pieces are shared with the consumer phase
 * (consumer-chaos.ts), which kills consumers instead of dispatchers.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { runCli } from '../helpers/cli.js';
import { PG_URL, testSchema } from '../helpers/db.js';
import { startDispatchers } from './dispatchers.js';
import { exitCode, type UnexpectedExit } from './process-pool.js';
import {
  createCommitsTable,
  type ProducedEvent,
  type ProductionStats,
  startProducers,
} from './producers.js';
import { type BrokerName, type ChaosTarget, createTarget, type Delivery } from './targets.js';

const run = promisify(execFile);

/** What is produced, and what is disrupted while it is: the part every chaos phase shares. */
export interface ChaosPlan {
  broker: BrokerName;
  events: number;
  aggregates: number;
  producers: number;
  /** A random process (of the phase's victims) is SIGKILLed every [min, max] ms while producers run. */
  killEveryMs: [number, number];
  restartBroker: boolean;
  restartPostgres: boolean;
  /** Events per second over all producers (0: unthrottled). Sets how long the chaos lasts. */
  rate?: number;
  /** Seed of every random choice (kill timing and victim, transaction sizes, aggregates). */
  seed?: number;
  /**
   * Cuts the run short (a test's timeout): production and disruptions stop, the run
   * cleans up and rejects with the signal's reason.
   */
  signal?: AbortSignal;
}

export interface ChaosOptions extends ChaosPlan {
  dispatchers: number;
  /** How long to wait after the last disruption for everything to arrive. Default 180 s. */
  recoveryTimeoutMs?: number;
  /** Passed to `run --batch-size`. Default 200. */
  batchSize?: number;
  /** Logged as the run goes (progress, disruptions). Default: nothing. */
  log?: (line: string) => void;
}

export interface ChaosSummary {
  broker: BrokerName;
  events: number;
  delivered: number;
  lost: number;
  outOfOrder: number;
  duplicates: number;
  /** Delivered ids no committed transaction produced. */
  phantoms: number;
  deadLetters: number;
  /** From the last disruption until the outbox was empty and the broker held every event; null: never. */
  recoverySeconds: number | null;
  kills: number;
  /**
   * Dispatchers that died on their own with anything but exit 2 (2 = refused to start,
   * e.g. PostgreSQL down at start-up, as documented): crashes the supervisor hid.
   */
  crashes: number;
  durationSeconds: number;
  details: ChaosDetails;
}

export interface ChaosDetails {
  seed: number;
  server: string;
  aggregates: number;
  producers: number;
  dispatchers: number;
  productionSeconds: number;
  /** Events still in the outbox when production ended (what the recovery had to drain). */
  backlogAtEnd: number;
  transactions: number;
  producerRetries: number;
  unknownCommits: number;
  unknownCommitted: number;
  /** Produced ids that chaos_commits does not hold, or the reverse (producer bookkeeping). */
  producedMismatch: number;
  dispatchersStarted: number;
  brokerRestart?: Restart;
  postgresRestart?: Restart;
  unexpectedExits: {
    slot: number;
    code: number | null;
    signal: string | null;
    atSeconds: number;
    stderrTail: string;
  }[];
  /** Exit codes of the dispatchers SIGTERMed at the end (a signal's name if one ended it). */
  finalExitCodes: (number | string | null)[];
  /** `status --json` just before the SIGTERMs: pending, dead letters, dispatchers seen. */
  status?: { pending: number; deadLetters: number; dispatchers: number };
  /** What became of up to 20 lost events: still in the outbox, dead-lettered, or gone. */
  lostSamples: string[];
  outOfOrderSamples: string[];
  malformed: number;
  /** Where the dispatchers' logs and the deliveries were written when something was wrong. */
  postMortemDir?: string;
}

/** When a restart began, how long the server was left stopped, when it served again. */
export interface Restart {
  atSeconds: number;
  pauseSeconds: number;
  tookSeconds: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Seconds from `from` to `to`, to a tenth. */
export const seconds = (from: number, to = Date.now()) => Math.round((to - from) / 100) / 10;

/** mulberry32: small, seedable, good enough to pick victims and sizes. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function postgresCluster(): Promise<string> {
  const versions = await readdir('/etc/postgresql');
  const version = versions.sort().at(-1);
  if (!version) throw new Error('no cluster under /etc/postgresql');
  return version;
}

/** Stops the local PostgreSQL (fast: active sessions are cut), waits, starts it again. */
export async function restartPostgres(pauseMs: number): Promise<void> {
  const version = await postgresCluster();
  const ctl = (action: 'stop' | 'start') =>
    run('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', action], {
      timeout: 120_000,
    });
  try {
    await ctl('stop');
    await sleep(pauseMs);
  } finally {
    await ctl('start');
  }
}

interface Counted {
  delivered: number;
  lost: ProducedEvent[];
  outOfOrder: string[];
  duplicates: number;
  phantoms: number;
  malformed: number;
}

/** Lost, out-of-order, duplicate and phantom events of `deliveries` (in broker order). */
export function countDeliveries(
  produced: readonly ProducedEvent[],
  deliveries: readonly Delivery[],
): Counted {
  const byId = new Map(produced.map((event) => [event.id, event]));
  const seen = new Set<string>();
  const lastN = new Map<string, number>();
  const outOfOrder: string[] = [];
  let duplicates = 0;
  let phantoms = 0;
  let malformed = 0;
  for (const delivery of deliveries) {
    if (seen.has(delivery.id)) {
      duplicates++;
      continue;
    }
    seen.add(delivery.id);
    const event = byId.get(delivery.id);
    if (!event) {
      phantoms++;
      continue;
    }
    // The body is what the producer wrote; it must match the event the id names.
    let body: { aggregate?: unknown; n?: unknown } = {};
    try {
      body = JSON.parse(delivery.body) as typeof body;
    } catch {}
    if (
      body.aggregate !== event.aggregate ||
      body.n !== event.n ||
      delivery.subject !== event.aggregate ||
      delivery.dedupId !== (delivery.expectedDedupId ?? delivery.id)
    ) {
      malformed++;
    }
    const previous = lastN.get(event.aggregate);
    if (previous !== undefined && event.n <= previous) {
      outOfOrder.push(
        `${event.aggregate}: n=${event.n} (seq ${delivery.sequence}) after n=${previous}`,
      );
    }
    lastN.set(event.aggregate, Math.max(previous ?? -1, event.n));
  }
  const lost = produced.filter((event) => !seen.has(event.id));
  return { delivered: seen.size, lost, outOfOrder, duplicates, phantoms, malformed };
}

/** The driver's own pool on PostgreSQL; `query` retries while PostgreSQL is away. */
export interface AdminDb {
  readonly pool: pg.Pool;
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  end(): Promise<void>;
}

export function adminDb(): AdminDb {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2, connectionTimeoutMillis: 5000 });
  pool.on('error', () => {});
  return {
    pool,
    async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []) {
      for (let attempt = 0; ; attempt++) {
        try {
          return (await pool.query<R>(text, values)).rows;
        } catch (error) {
          if (attempt >= 150) throw error;
          await sleep(200);
        }
      }
    },
    end: () => pool.end(),
  };
}

/** The `edupulse-outbox run` arguments of a chaos run's dispatchers. */
export function runArgs(schema: string, brokerUrl: string, batchSize = 200): string[] {
  return [
    'run',
    '--database-url',
    PG_URL,
    '--schema',
    schema,
    '--broker',
    brokerUrl,
    '--batch-size',
    String(batchSize),
    '--retry-max-delay-ms',
    '2000',
  ];
}

/** Migrates `schema` (a fresh one) with the CLI and adds the producers' commits table. */
export async function prepareSchema(admin: AdminDb, schema: string): Promise<void> {
  const migrated = await runCli(['migrate', '--database-url', PG_URL, '--schema', schema]);
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
  await createCommitsTable(admin.pool, schema);
}

/** A production that ran under chaos, once it and every disruption are over. */
export interface ChaosProduction {
  stats: ProductionStats;
  productionSeconds: number;
  /** When the last kill or restart ended (epoch ms): the recovery is counted from here. */
  lastDisruption: number;
  brokerRestart?: Restart;
  postgresRestart?: Restart;
}

export interface ChaosRun {
  plan: ChaosPlan;
  schema: string;
  target: ChaosTarget;
  random: () => number;
  /** When the run began (epoch ms): restarts are reported from here. */
  began: number;
  /** SIGKILLs a random victim of the phase (and starts its replacement). */
  kill: () => void;
  /** What the progress line adds to the produced count: `kills 4`. */
  progress: () => string;
  log: (line: string) => void;
}

/**
 * The producers write `plan.events` over `plan.aggregates` while `kill` is called every
 * `killEveryMs`, the broker is restarted at a quarter of the production and PostgreSQL at
 * 60 % (or as soon as production ends, if it is quicker than that). Resolves when the
 * production, the killer and the restarts are all over; rejects if a restart failed.
 */
export async function produceUnderChaos(run: ChaosRun): Promise<ChaosProduction> {
  const { plan, random, began, log } = run;
  const [killMin, killMax] = plan.killEveryMs;
  const productionStarted = Date.now();
  const production = startProducers({
    databaseUrl: PG_URL,
    schema: run.schema,
    events: plan.events,
    aggregates: plan.aggregates,
    producers: Math.max(1, Math.min(plan.producers, plan.aggregates)),
    rate: plan.rate ?? 0,
    random,
  });
  let producing = true;
  let lastDisruption = Date.now();
  const abort = () => {
    producing = false;
    production.stop();
  };
  plan.signal?.addEventListener('abort', abort, { once: true });
  production.done
    .finally(() => {
      producing = false;
    })
    .catch(() => {});

  // The killer: every killMin–killMax ms while producers run.
  const killer = (async () => {
    for (;;) {
      const wait = killMin + random() * (killMax - killMin);
      const until = Date.now() + wait;
      while (producing && Date.now() < until) await sleep(Math.min(100, until - Date.now()));
      if (!producing) return;
      run.kill();
      lastDisruption = Date.now();
    }
  })();

  let brokerRestart: Restart | undefined;
  let postgresRestart: Restart | undefined;
  const restarts = (async () => {
    const reached = async (fraction: number) => {
      while (producing && production.progress() < plan.events * fraction) await sleep(50);
    };
    if (plan.restartBroker) {
      await reached(0.25);
      const at = Date.now();
      const pause = 3000 + Math.floor(random() * 2000);
      log(`restarting the broker (${pause} ms down) at ${production.progress()} produced`);
      await run.target.restart(pause);
      brokerRestart = {
        atSeconds: seconds(began, at),
        pauseSeconds: pause / 1000,
        tookSeconds: seconds(at),
      };
      lastDisruption = Math.max(lastDisruption, Date.now());
      log(`broker back after ${brokerRestart.tookSeconds} s`);
    }
    if (plan.restartPostgres) {
      await reached(0.6);
      const at = Date.now();
      log(`restarting PostgreSQL at ${production.progress()} produced`);
      await restartPostgres(2000);
      postgresRestart = {
        atSeconds: seconds(began, at),
        pauseSeconds: 2,
        tookSeconds: seconds(at),
      };
      lastDisruption = Math.max(lastDisruption, Date.now());
      log(`PostgreSQL back after ${postgresRestart.tookSeconds} s`);
    }
  })();
  // Held until production is over (a failed restart fails the run then, not as an
  // unhandled rejection now).
  const restartFailure = restarts.then(
    () => undefined,
    (error: unknown) => error,
  );

  const progress = setInterval(() => {
    log(`produced ${production.progress()}, ${run.progress()}`);
  }, 10_000);
  try {
    const stats = await production.done;
    await killer;
    const failure = await restartFailure;
    if (failure) throw failure;
    plan.signal?.throwIfAborted();
    return {
      stats,
      productionSeconds: seconds(productionStarted),
      lastDisruption,
      ...(brokerRestart ? { brokerRestart } : {}),
      ...(postgresRestart ? { postgresRestart } : {}),
    };
  } finally {
    clearInterval(progress);
    plan.signal?.removeEventListener('abort', abort);
  }
}

/**
 * Polls `condition` every `intervalMs` until it holds (the time it did) or `timeoutMs`
 * passed (undefined); rejects once `signal` is aborted.
 */
export async function waitUntil(
  condition: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 200,
  signal?: AbortSignal,
): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    if (await condition()) return Date.now();
    await sleep(intervalMs);
  }
  return undefined;
}

/** Produced ids that `chaos_commits` does not hold, and the reverse (producer bookkeeping). */
export async function producedMismatch(
  admin: AdminDb,
  schema: string,
  produced: readonly ProducedEvent[],
): Promise<number> {
  const committedIds = new Set(
    (
      await admin.query<{ id: string }>(
        `SELECT unnest(ids)::text AS id FROM "${schema}".chaos_commits`,
      )
    ).map((row) => row.id),
  );
  const producedIds = new Set(produced.map((event) => event.id));
  let mismatch = Math.abs(committedIds.size - producedIds.size);
  for (const id of producedIds) if (!committedIds.has(id)) mismatch++;
  return mismatch;
}

/**
 * Where up to 20 events are: still pending in the outbox, dead-lettered by a dispatcher,
 * or neither (`otherwise`, e.g. published and never seen again).
 */
export async function whereAre(
  admin: AdminDb,
  schema: string,
  events: readonly ProducedEvent[],
  otherwise: string,
): Promise<string[]> {
  const samples: string[] = [];
  for (const event of events.slice(0, 20)) {
    const [where] = await admin.query<{ place: string }>(
      `SELECT 'pending (attempts ' || attempts || ', ' || coalesce(last_error, '') || ')' AS place
         FROM "${schema}".outbox WHERE id = $1
       UNION ALL
       SELECT 'dead-lettered: ' || last_error FROM "${schema}".outbox_dead_letter WHERE id = $1`,
      [event.id],
    );
    samples.push(`${event.id} ${event.aggregate} n=${event.n}: ${where?.place ?? otherwise}`);
  }
  return samples;
}

/** Writes `files` (name → content) into a fresh temporary directory; its path. */
export async function writePostMortem(
  name: string,
  files: Record<string, string>,
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `edupulse-chaos-${name}-`));
  for (const [file, content] of Object.entries(files)) await writeFile(join(dir, file), content);
  return dir;
}

/** The logs of a pool's processes as post-mortem files: `<prefix>-<i>.log`. */
export function logFiles(
  prefix: string,
  logs: readonly { label: string; stderr: string; stdout?: string }[],
): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [i, entry] of logs.entries()) {
    const stdout = entry.stdout ? `\n# stdout\n${entry.stdout}` : '';
    files[`${prefix}-${i}.log`] = `# ${entry.label}\n${entry.stderr}${stdout}`;
  }
  return files;
}

/** A pool's unexpected exits as reported in the details (times in seconds). */
export function exitDetails(exits: readonly UnexpectedExit[]): ChaosDetails['unexpectedExits'] {
  return exits.map((exit) => ({
    slot: exit.slot,
    code: exit.code,
    signal: exit.signal,
    atSeconds: Math.round(exit.atMs / 100) / 10,
    stderrTail: exit.stderrTail,
  }));
}

export async function runChaos(options: ChaosOptions): Promise<ChaosSummary> {
  const began = Date.now();
  const log = (line: string) => options.log?.(`[${options.broker} ${seconds(began)}s] ${line}`);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = seededRandom(seed);
  const producers = Math.max(1, Math.min(options.producers, options.aggregates));
  const recoveryTimeoutMs = options.recoveryTimeoutMs ?? 180_000;

  const schema = testSchema(`chaos_${options.broker}`);
  const admin = adminDb();
  const { query } = admin;

  let target: ChaosTarget | undefined;
  let pool: ReturnType<typeof startDispatchers> | undefined;
  // Cut short (options.signal): no dispatcher is started again, and the steps below reject.
  const abort = () => void pool?.destroy();
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    await prepareSchema(admin, schema);
    target = await createTarget(options.broker, { restartable: options.restartBroker });
    log(`schema ${schema}, ${target.server}, seed ${seed}`);

    pool = startDispatchers({
      count: options.dispatchers,
      random,
      args: runArgs(schema, target.url, options.batchSize),
    });
    const dispatchers = pool;

    const production = await produceUnderChaos({
      plan: options,
      schema,
      target,
      random,
      began,
      kill: () => dispatchers.killRandom(),
      progress: () => `kills ${dispatchers.kills}`,
      log,
    });
    const { stats, productionSeconds, lastDisruption } = production;
    const produced = stats.produced;
    const [{ backlog }] = (await query<{ backlog: number }>(
      `SELECT count(*)::int AS backlog FROM "${schema}".outbox`,
    )) as [{ backlog: number }];
    log(`production done: ${produced.length} events in ${productionSeconds} s, ${backlog} pending`);

    // Recovery: the outbox empty, and the broker holding at least every produced event.
    const chaosTarget = target;
    const recoveredAt = await waitUntil(
      async () => {
        const [{ n }] = (await query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "${schema}".outbox`,
        )) as [{ n: number }];
        if (n > 0) return false;
        return (await chaosTarget.stored().catch(() => -1)) >= produced.length;
      },
      recoveryTimeoutMs,
      200,
      options.signal,
    );
    const recoverySeconds = recoveredAt === undefined ? null : seconds(lastDisruption, recoveredAt);
    log(
      recoverySeconds === null
        ? `not recovered within ${recoveryTimeoutMs / 1000} s`
        : `recovered ${recoverySeconds} s after the last disruption`,
    );

    const statusRun = await runCli([
      'status',
      '--database-url',
      PG_URL,
      '--schema',
      schema,
      '--json',
    ]);
    let status: ChaosDetails['status'];
    try {
      const parsed = JSON.parse(statusRun.stdout) as {
        pending: number;
        deadLetters: number;
        dispatchers: unknown[];
      };
      status = {
        pending: parsed.pending,
        deadLetters: parsed.deadLetters,
        dispatchers: parsed.dispatchers.length,
      };
    } catch {}

    const exits = await dispatchers.stop(30_000);
    const finalExitCodes = exits.map(exitCode);

    const deliveries = await target.readAll(120_000);
    const counted = countDeliveries(produced, deliveries);
    const mismatch = await producedMismatch(admin, schema, produced);

    const [{ dead }] = (await query<{ dead: number }>(
      `SELECT count(*)::int AS dead FROM "${schema}".outbox_dead_letter`,
    )) as [{ dead: number }];

    const summary: ChaosSummary = {
      broker: options.broker,
      events: produced.length,
      delivered: counted.delivered,
      lost: counted.lost.length,
      outOfOrder: counted.outOfOrder.length,
      duplicates: counted.duplicates,
      phantoms: counted.phantoms,
      deadLetters: dead,
      recoverySeconds,
      kills: dispatchers.kills,
      crashes: dispatchers.unexpectedExits.filter((exit) => exit.code !== 2).length,
      durationSeconds: 0,
      details: {
        seed,
        server: target.server,
        aggregates: options.aggregates,
        producers,
        dispatchers: options.dispatchers,
        productionSeconds,
        backlogAtEnd: backlog,
        transactions: stats.transactions,
        producerRetries: stats.retries,
        unknownCommits: stats.unknownCommits,
        unknownCommitted: stats.unknownCommitted,
        producedMismatch: mismatch,
        dispatchersStarted: dispatchers.started,
        ...(production.brokerRestart ? { brokerRestart: production.brokerRestart } : {}),
        ...(production.postgresRestart ? { postgresRestart: production.postgresRestart } : {}),
        unexpectedExits: exitDetails(dispatchers.unexpectedExits),
        finalExitCodes,
        ...(status ? { status } : {}),
        // Where the lost ones are: still pending, dead-lettered, or deleted without arriving.
        lostSamples: await whereAre(
          admin,
          schema,
          counted.lost,
          'gone from the outbox, never at the broker',
        ),
        outOfOrderSamples: counted.outOfOrder.slice(0, 20),
        malformed: counted.malformed,
      },
    };

    const wrong =
      summary.lost > 0 ||
      summary.outOfOrder > 0 ||
      summary.phantoms > 0 ||
      summary.deadLetters > 0 ||
      counted.malformed > 0 ||
      mismatch > 0 ||
      finalExitCodes.some((code) => code !== 0) ||
      recoverySeconds === null;
    if (wrong) {
      // Everything needed to look into it afterwards. (Crashes alone do not write this:
      // their stderr is in the details already.)
      summary.details.postMortemDir = await writePostMortem(options.broker, {
        ...logFiles('dispatcher', dispatchers.logs()),
        'produced.ndjson': produced.map((event) => JSON.stringify(event)).join('\n'),
        'deliveries.ndjson': deliveries.map((delivery) => JSON.stringify(delivery)).join('\n'),
      });
    }
    summary.durationSeconds = seconds(began);
    log(`done in ${summary.durationSeconds} s`);
    return summary;
  } finally {
    options.signal?.removeEventListener('abort', abort);
    await pool?.destroy().catch(() => {});
    await target?.cleanup().catch((error) => options.log?.(`clean-up failed: ${String(error)}`));
    await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await admin.end().catch(() => {});
  }
}

/** One table, one row per run: the numbers the issue asks for. */
export function formatSummary(summaries: readonly ChaosSummary[]): string {
  return formatRuns(
    summaries,
    'events|delivered|lost|out-of-order|duplicates|dead letters',
    (s) => [s.events, s.delivered, s.lost, s.outOfOrder, s.duplicates, s.deadLetters],
  );
}

/** What every chaos phase's summary has: the columns all their tables share. */
interface RunTotals {
  broker: string;
  kills: number;
  crashes: number;
  recoverySeconds: number | null;
  durationSeconds: number;
}

/**
 * A phase's table, one row per run: the broker, the phase's own numbers (`titles`, split
 * at `|`; `numbers` gives a run's), then kills, crashes, recovery and duration.
 */
export function formatRuns<S extends RunTotals>(
  summaries: readonly S[],
  titles: string,
  numbers: (summary: S) => number[],
): string {
  const header = ['broker', ...titles.split('|'), 'kills', 'crashes', 'recovery s', 'duration s'];
  const rows = summaries.map((s) => [
    s.broker,
    ...numbers(s).map(String),
    String(s.kills),
    String(s.crashes),
    s.recoverySeconds === null ? 'never' : s.recoverySeconds.toFixed(1),
    s.durationSeconds.toFixed(1),
  ]);
  return formatTable(header, rows);
}

/** A Markdown table: the first column left-aligned, the others (numbers) right-aligned. */
export function formatTable(header: readonly string[], rows: readonly string[][]): string {
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const rule = `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** The restarts of a run, for its details line ('' when it had none). */
export function formatRestarts(d: Pick<ChaosDetails, 'brokerRestart' | 'postgresRestart'>): string {
  return (
    (d.brokerRestart
      ? `; broker restart at ${d.brokerRestart.atSeconds} s (stopped, ${d.brokerRestart.pauseSeconds} s pause, serving again after ${d.brokerRestart.tookSeconds} s)`
      : '') +
    (d.postgresRestart
      ? `; PostgreSQL restart at ${d.postgresRestart.atSeconds} s (stopped, ${d.postgresRestart.pauseSeconds} s pause, serving again after ${d.postgresRestart.tookSeconds} s)`
      : '')
  );
}

/** Lines for a pool's unexpected exits: the last line of a refused start, a crash's error lines. */
export function formatExits(exits: ChaosDetails['unexpectedExits']): string[] {
  const out: string[] = [];
  for (const exit of exits) {
    const lines = exit.stderrTail.split('\n');
    // A refused start (exit 2: database unreachable) says it in its last line; anything
    // else (a crash) gets its whole tail.
    const shown =
      exit.code === 2
        ? lines.slice(-1)
        : lines
            .filter((line) => /^edupulse-outbox: |throw|Error|error:|Emitted|^\s+at /.test(line))
            .slice(0, 6);
    out.push(
      `  unexpected exit, slot ${exit.slot} at ${exit.atSeconds} s: code ${exit.code} signal ${exit.signal}:`,
      ...shown.map((line) => `    ${line.slice(0, 400)}`),
    );
  }
  return out;
}

/** A few lines per run beyond the table: seed, server, restarts, exits, samples of problems. */
export function formatDetails(summaries: readonly ChaosSummary[]): string {
  const out: string[] = [];
  for (const s of summaries) {
    const d = s.details;
    out.push(
      `${s.broker}: seed ${d.seed}; ${d.server}; ${d.aggregates} aggregates, ${d.producers} producers, ` +
        `${d.dispatchers} dispatchers (${d.dispatchersStarted} processes started); production ` +
        `${d.productionSeconds} s (${d.backlogAtEnd} pending at its end), ${d.transactions} transactions, ${d.producerRetries} retried, ` +
        `${d.unknownCommits} unknown commits (${d.unknownCommitted} had committed)` +
        formatRestarts(d) +
        `; final exit codes ${d.finalExitCodes.join(',')}; phantoms ${s.phantoms}, malformed ${d.malformed}, ` +
        `bookkeeping mismatch ${d.producedMismatch}` +
        (d.status
          ? `; status before stop: ${d.status.pending} pending, ${d.status.deadLetters} dead, ${d.status.dispatchers} dispatchers`
          : ''),
    );
    out.push(...formatExits(d.unexpectedExits));
    for (const sample of d.lostSamples) out.push(`  lost: ${sample}`);
    for (const sample of d.outOfOrderSamples) out.push(`  out of order: ${sample}`);
    if (d.postMortemDir) out.push(`  logs, produced and delivered events: ${d.postMortemDir}`);
  }
  return out.join('\n');
}
