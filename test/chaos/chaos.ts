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
import { createCommitsTable, type ProducedEvent, startProducers } from './producers.js';
import { type BrokerName, type ChaosTarget, createTarget, type Delivery } from './targets.js';

const run = promisify(execFile);

export interface ChaosOptions {
  broker: BrokerName;
  events: number;
  aggregates: number;
  producers: number;
  dispatchers: number;
  /** A random dispatcher is SIGKILLed every [min, max] ms while producers run. */
  killEveryMs: [number, number];
  restartBroker: boolean;
  restartPostgres: boolean;
  /** Events per second over all producers (0: unthrottled). Sets how long the chaos lasts. */
  rate?: number;
  /** Seed of every random choice (kill timing and victim, transaction sizes, aggregates). */
  seed?: number;
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
  /** When each restart began, how long the server was left stopped, when it served again. */
  brokerRestart?: { atSeconds: number; pauseSeconds: number; tookSeconds: number };
  postgresRestart?: { atSeconds: number; pauseSeconds: number; tookSeconds: number };
  unexpectedExits: {
    slot: number;
    code: number | null;
    signal: string | null;
    atSeconds: number;
    stderrTail: string;
  }[];
  /** Exit codes of the dispatchers SIGTERMed at the end. */
  finalExitCodes: (number | null)[];
  /** `status --json` just before the SIGTERMs: pending, dead letters, dispatchers seen. */
  status?: { pending: number; deadLetters: number; dispatchers: number };
  /** What became of up to 20 lost events: still in the outbox, dead-lettered, or gone. */
  lostSamples: string[];
  outOfOrderSamples: string[];
  malformed: number;
  /** Where the dispatchers' logs and the deliveries were written when something was wrong. */
  postMortemDir?: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
async function restartPostgres(pauseMs: number): Promise<void> {
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
      delivery.dedupId !== delivery.id
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

export async function runChaos(options: ChaosOptions): Promise<ChaosSummary> {
  const began = Date.now();
  const seconds = (from: number, to = Date.now()) => Math.round((to - from) / 100) / 10;
  const log = (line: string) => options.log?.(`[${options.broker} ${seconds(began)}s] ${line}`);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = seededRandom(seed);
  const producers = Math.max(1, Math.min(options.producers, options.aggregates));
  const recoveryTimeoutMs = options.recoveryTimeoutMs ?? 180_000;
  const [killMin, killMax] = options.killEveryMs;

  const schema = testSchema(`chaos_${options.broker}`);
  const admin = new pg.Pool({ connectionString: PG_URL, max: 2, connectionTimeoutMillis: 5000 });
  admin.on('error', () => {});
  /** A query on the driver's own pool, retried while PostgreSQL is away. */
  const query = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await admin.query<R>(text, values)).rows;
      } catch (error) {
        if (attempt >= 150) throw error;
        await sleep(200);
      }
    }
  };

  let target: ChaosTarget | undefined;
  let pool: ReturnType<typeof startDispatchers> | undefined;
  try {
    const migrated = await runCli(['migrate', '--database-url', PG_URL, '--schema', schema]);
    if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
    await createCommitsTable(admin, schema);
    target = await createTarget(options.broker, { restartable: options.restartBroker });
    log(`schema ${schema}, ${target.server}, seed ${seed}`);

    pool = startDispatchers({
      count: options.dispatchers,
      random,
      args: [
        'run',
        '--database-url',
        PG_URL,
        '--schema',
        schema,
        '--broker',
        target.url,
        '--batch-size',
        String(options.batchSize ?? 200),
        '--retry-max-delay-ms',
        '2000',
      ],
    });
    const dispatchers = pool;

    const productionStarted = Date.now();
    const production = startProducers({
      databaseUrl: PG_URL,
      schema,
      events: options.events,
      aggregates: options.aggregates,
      producers,
      rate: options.rate ?? 0,
      random,
    });
    let producing = true;
    let lastDisruption = Date.now();
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
        dispatchers.killRandom();
        lastDisruption = Date.now();
      }
    })();

    // The broker restart at a quarter of the production, PostgreSQL's at 60 % (or as soon
    // as production ends, if it is quicker than that).
    let brokerRestart: ChaosDetails['brokerRestart'];
    let postgresRestart: ChaosDetails['postgresRestart'];
    const restarts = (async () => {
      const reached = async (fraction: number) => {
        while (producing && production.progress() < options.events * fraction) await sleep(50);
      };
      if (options.restartBroker) {
        await reached(0.25);
        const at = Date.now();
        const pause = 3000 + Math.floor(random() * 2000);
        log(`restarting the broker (${pause} ms down) at ${production.progress()} produced`);
        await (target as ChaosTarget).restart(pause);
        brokerRestart = {
          atSeconds: seconds(began, at),
          pauseSeconds: pause / 1000,
          tookSeconds: seconds(at),
        };
        lastDisruption = Math.max(lastDisruption, Date.now());
        log(`broker back after ${brokerRestart.tookSeconds} s`);
      }
      if (options.restartPostgres) {
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
      log(`produced ${production.progress()}, kills ${dispatchers.kills}`);
    }, 10_000);
    let stats: Awaited<typeof production.done>;
    try {
      stats = await production.done;
      await killer;
      const failure = await restartFailure;
      if (failure) throw failure;
    } finally {
      clearInterval(progress);
    }
    const productionSeconds = seconds(productionStarted);
    const produced = stats.produced;
    const [{ backlog }] = (await query<{ backlog: number }>(
      `SELECT count(*)::int AS backlog FROM "${schema}".outbox`,
    )) as [{ backlog: number }];
    log(`production done: ${produced.length} events in ${productionSeconds} s, ${backlog} pending`);

    // Recovery: the outbox empty, and the broker holding at least every produced event.
    const deadline = Date.now() + recoveryTimeoutMs;
    let recoveredAt: number | undefined;
    while (Date.now() < deadline) {
      const [{ n }] = (await query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${schema}".outbox`,
      )) as [{ n: number }];
      if (n === 0) {
        const stored = await target.stored().catch(() => -1);
        if (stored >= produced.length) {
          recoveredAt = Date.now();
          break;
        }
      }
      await sleep(200);
    }
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
    const finalExitCodes = exits.map((exit) => exit.code);

    const deliveries = await target.readAll(120_000);
    const counted = countDeliveries(produced, deliveries);

    // Producer bookkeeping against the table the transactions wrote.
    const committedIds = new Set(
      (
        await query<{ id: string }>(`SELECT unnest(ids)::text AS id FROM "${schema}".chaos_commits`)
      ).map((row) => row.id),
    );
    const producedIds = new Set(produced.map((event) => event.id));
    let producedMismatch = Math.abs(committedIds.size - producedIds.size);
    for (const id of producedIds) if (!committedIds.has(id)) producedMismatch++;

    const [{ dead }] = (await query<{ dead: number }>(
      `SELECT count(*)::int AS dead FROM "${schema}".outbox_dead_letter`,
    )) as [{ dead: number }];

    // Where the lost ones are: still pending, dead-lettered, or deleted without arriving.
    const lostSamples: string[] = [];
    for (const event of counted.lost.slice(0, 20)) {
      const [where] = await query<{ place: string }>(
        `SELECT 'pending (attempts ' || attempts || ', ' || coalesce(last_error, '') || ')' AS place
           FROM "${schema}".outbox WHERE id = $1
         UNION ALL
         SELECT 'dead-lettered: ' || last_error FROM "${schema}".outbox_dead_letter WHERE id = $1`,
        [event.id],
      );
      lostSamples.push(
        `${event.id} ${event.aggregate} n=${event.n}: ${where?.place ?? 'gone from the outbox, never at the broker'}`,
      );
    }

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
        producedMismatch,
        dispatchersStarted: dispatchers.started,
        ...(brokerRestart ? { brokerRestart } : {}),
        ...(postgresRestart ? { postgresRestart } : {}),
        unexpectedExits: dispatchers.unexpectedExits.map((exit) => ({
          slot: exit.slot,
          code: exit.code,
          signal: exit.signal,
          atSeconds: Math.round(exit.atMs / 100) / 10,
          stderrTail: exit.stderrTail,
        })),
        finalExitCodes,
        ...(status ? { status } : {}),
        lostSamples,
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
      producedMismatch > 0 ||
      finalExitCodes.some((code) => code !== 0) ||
      recoverySeconds === null;
    if (wrong) {
      // Everything needed to look into it afterwards. (Crashes alone do not write this:
      // their stderr is in the details already.)
      const dir = await mkdtemp(join(tmpdir(), `edupulse-chaos-${options.broker}-`));
      for (const [i, entry] of dispatchers.logs().entries()) {
        await writeFile(join(dir, `dispatcher-${i}.log`), `# ${entry.label}\n${entry.stderr}`);
      }
      await writeFile(
        join(dir, 'produced.ndjson'),
        produced.map((event) => JSON.stringify(event)).join('\n'),
      );
      await writeFile(
        join(dir, 'deliveries.ndjson'),
        deliveries.map((delivery) => JSON.stringify(delivery)).join('\n'),
      );
      summary.details.postMortemDir = dir;
    }
    summary.durationSeconds = seconds(began);
    log(`done in ${summary.durationSeconds} s`);
    return summary;
  } finally {
    await pool?.destroy().catch(() => {});
    await target?.cleanup().catch((error) => options.log?.(`clean-up failed: ${String(error)}`));
    await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await admin.end().catch(() => {});
  }
}

/** One table, one row per run: the numbers the issue asks for. */
export function formatSummary(summaries: readonly ChaosSummary[]): string {
  const header = [
    'broker',
    'events',
    'delivered',
    'lost',
    'out-of-order',
    'duplicates',
    'dead letters',
    'kills',
    'crashes',
    'recovery s',
    'duration s',
  ];
  const rows = summaries.map((s) => [
    s.broker,
    String(s.events),
    String(s.delivered),
    String(s.lost),
    String(s.outOfOrder),
    String(s.duplicates),
    String(s.deadLetters),
    String(s.kills),
    String(s.crashes),
    s.recoverySeconds === null ? 'never' : s.recoverySeconds.toFixed(1),
    s.durationSeconds.toFixed(1),
  ]);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const rule = `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
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
        (d.brokerRestart
          ? `; broker restart at ${d.brokerRestart.atSeconds} s (stopped, ${d.brokerRestart.pauseSeconds} s pause, serving again after ${d.brokerRestart.tookSeconds} s)`
          : '') +
        (d.postgresRestart
          ? `; PostgreSQL restart at ${d.postgresRestart.atSeconds} s (stopped, ${d.postgresRestart.pauseSeconds} s pause, serving again after ${d.postgresRestart.tookSeconds} s)`
          : '') +
        `; final exit codes ${d.finalExitCodes.join(',')}; phantoms ${s.phantoms}, malformed ${d.malformed}, ` +
        `bookkeeping mismatch ${d.producedMismatch}` +
        (d.status
          ? `; status before stop: ${d.status.pending} pending, ${d.status.deadLetters} dead, ${d.status.dispatchers} dispatchers`
          : ''),
    );
    for (const exit of d.unexpectedExits) {
      const lines = exit.stderrTail.split('\n');
      // A refused start (exit 2: database unreachable) says it in its last line; anything
      // else (a crash) gets its whole tail.
      const shown =
        exit.code === 2
          ? lines.slice(-1)
          : lines.filter((line) => /throw|Error|error:|Emitted|^\s+at /.test(line)).slice(0, 6);
      out.push(
        `  unexpected exit, slot ${exit.slot} at ${exit.atSeconds} s: code ${exit.code} signal ${exit.signal}:`,
        ...shown.map((line) => `    ${line.slice(0, 400)}`),
      );
    }
    for (const sample of d.lostSamples) out.push(`  lost: ${sample}`);
    for (const sample of d.outOfOrderSamples) out.push(`  out of order: ${sample}`);
    if (d.postMortemDir) out.push(`  logs, produced and delivered events: ${d.postMortemDir}`);
  }
  return out.join('\n');
}
