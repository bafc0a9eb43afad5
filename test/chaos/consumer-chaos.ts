/**
 * The consumer chaos phase: exactly-once effects under chaos. Producers write events over
 * many aggregates through the outbox while `edupulse-outbox run` processes publish them
 * (steadily: none is killed here), and several consumer processes (consumers.ts,
 * consumer-process.mjs) under one consumer name apply them through `consume()` and the
 * inbox: per event, in one transaction, an effects row (event id, aggregate, the
 * producer's per-aggregate index `n`, an apply serial) and the aggregate's counter + 1.
 * A random consumer is SIGKILLed every 1–3 s and restarted at once, the broker is
 * restarted once and PostgreSQL once (chaos.ts, as the dispatcher phase does). When
 * production is done and the disruptions are over, the driver waits until every produced
 * event is applied, SIGTERMs the consumers once each slot's is running (each must exit 0),
 * and counts:
 *
 * - lost: produced, never applied;
 * - applied twice: effects rows beyond one per event id (the inbox must make it 0);
 * - out of order: per aggregate, in apply-serial order, an apply whose `n` is not above
 *   the previous apply's (the serial is drawn after the inbox locked the aggregate's row,
 *   so one aggregate's serials follow its commits);
 * - duplicates the inbox suppressed: exactly, from the `suppressed` rows the handler
 *   commits with each recognised duplicate; and as the consumers' `stats.duplicates`,
 *   summed over the last stats line of every process life (a lower bound: a SIGKILLed
 *   life loses what it counted after its last line);
 * - parked: rows in consumer_dead_letter;
 * - counters: aggregates whose counter differs from their number of effects rows.
 */
import { expect } from 'vitest';
import { PG_URL, testSchema } from '../helpers/db.js';
import {
  type AdminDb,
  adminDb,
  type ChaosDetails,
  type ChaosPlan,
  exitDetails,
  formatExits,
  formatRestarts,
  formatRuns,
  logFiles,
  prepareSchema,
  produceUnderChaos,
  type Restart,
  runArgs,
  seconds,
  seededRandom,
  waitUntil,
  whereAre,
  writePostMortem,
  producedMismatch as writtenMismatch,
} from './chaos.js';
import { type ConsumerPool, type ConsumerReports, startConsumers } from './consumers.js';
import { type DispatcherPool, startDispatchers } from './dispatchers.js';
import { exitCode } from './process-pool.js';
import { aggregateName, type ProducedEvent } from './producers.js';
import { type BrokerName, type ChaosTarget, createTarget } from './targets.js';

export interface ConsumerChaosOptions extends ChaosPlan {
  /** `edupulse-outbox run` processes publishing the events (never killed in this phase). */
  dispatchers: number;
  /** Consumer processes under one consumer name; the killer's victims. */
  consumers: number;
  /** How long to wait after the last disruption for every event to be applied. Default 180 s. */
  recoveryTimeoutMs?: number;
  /** Passed to `run --batch-size`. Default 200. */
  batchSize?: number;
  /**
   * Kafka: each consumer slot joins the group under a name of its own
   * (`group_instance_id`, static membership), kept across its restarts. Default false.
   */
  instanceNames?: boolean;
  /** Logged as the run goes (progress, disruptions). Default: nothing. */
  log?: (line: string) => void;
}

export interface ConsumerChaosSummary {
  broker: BrokerName;
  events: number;
  /** Produced events applied at least once. */
  applied: number;
  lost: number;
  appliedTwice: number;
  outOfOrder: number;
  /** Duplicates the inbox recognised, committed with the handler's transaction: exact. */
  suppressed: number;
  /** The consumers' `stats.duplicates`, summed over the last line of every process life. */
  suppressedReported: number;
  parked: number;
  /** Aggregates whose counter is not their number of effects rows. */
  counterMismatch: number;
  /** From the last disruption until every produced event was applied; null: never. */
  recoverySeconds: number | null;
  kills: number;
  /** Consumer processes that ended on their own (not SIGKILLed, not SIGTERMed at the end). */
  crashes: number;
  durationSeconds: number;
  details: ConsumerChaosDetails;
}

export interface ConsumerChaosDetails {
  seed: number;
  server: string;
  consumer: string;
  aggregates: number;
  producers: number;
  dispatchers: number;
  consumers: number;
  consumersStarted: number;
  productionSeconds: number;
  /** When production ended: events still in the outbox, and produced events not yet applied. */
  backlogAtEnd: number;
  unappliedAtEnd: number;
  transactions: number;
  producerRetries: number;
  producedMismatch: number;
  brokerRestart?: Restart;
  postgresRestart?: Restart;
  /**
   * Exit codes of the consumers, then of the dispatchers, SIGTERMed at the end; the
   * signal's name for a process that a signal ended.
   */
  consumerExitCodes: (number | string | null)[];
  dispatcherExitCodes: (number | string | null)[];
  consumerExits: ChaosDetails['unexpectedExits'];
  dispatcherExits: ChaosDetails['unexpectedExits'];
  reports: ConsumerReports;
  /** Effects rows of ids nobody produced, and rows whose aggregate or `n` is not the event's. */
  phantoms: number;
  malformed: number;
  /** Dead letters of the dispatchers (an event never published cannot be applied). */
  outboxDeadLetters: number;
  effectsRows: number;
  lostSamples: string[];
  outOfOrderSamples: string[];
  twiceSamples: string[];
  parkedSamples: string[];
  counterSamples: string[];
  postMortemDir?: string;
}

/** One effects row, in apply-serial order. */
export interface Apply {
  serial: string;
  event_id: string;
  aggregate_id: string;
  n: number;
  pid: number;
  applied_at: string;
}

interface CountedApplies {
  applied: number;
  lost: ProducedEvent[];
  twice: string[];
  outOfOrder: string[];
  phantoms: number;
  malformed: number;
  /** Effects rows per aggregate. */
  perAggregate: Map<string, number>;
}

/** Lost, doubly applied and out-of-order events of `applies` (in apply-serial order). */
export function countApplies(
  produced: readonly ProducedEvent[],
  applies: readonly Apply[],
): CountedApplies {
  const byId = new Map(produced.map((event) => [event.id, event]));
  const seen = new Map<string, Apply>();
  const previous = new Map<string, Apply>();
  const perAggregate = new Map<string, number>();
  const twice: string[] = [];
  const outOfOrder: string[] = [];
  let phantoms = 0;
  let malformed = 0;
  for (const apply of applies) {
    perAggregate.set(apply.aggregate_id, (perAggregate.get(apply.aggregate_id) ?? 0) + 1);
    const first = seen.get(apply.event_id);
    if (first) {
      twice.push(
        `${apply.event_id} ${apply.aggregate_id} n=${apply.n}: serial ${first.serial} (pid ${first.pid}) and ${apply.serial} (pid ${apply.pid})`,
      );
    } else {
      seen.set(apply.event_id, apply);
    }
    const event = byId.get(apply.event_id);
    if (!event) phantoms++;
    else if (event.aggregate !== apply.aggregate_id || event.n !== apply.n) malformed++;
    const before = previous.get(apply.aggregate_id);
    if (before && apply.n <= before.n) {
      outOfOrder.push(
        `${apply.aggregate_id}: n=${apply.n} (serial ${apply.serial}, pid ${apply.pid}) after n=${before.n} (serial ${before.serial}, pid ${before.pid})`,
      );
    }
    previous.set(apply.aggregate_id, apply);
  }
  const lost = produced.filter((event) => !seen.has(event.id));
  const applied = produced.length - lost.length;
  return { applied, lost, twice, outOfOrder, phantoms, malformed, perAggregate };
}

/** The consumers' tables next to the outbox: effects, counters (one row per aggregate), suppressed. */
async function createEffectsTables(admin: AdminDb, schema: string, aggregates: number) {
  const s = `"${schema}"`;
  await admin.query(`CREATE TABLE ${s}.effects (
    serial       bigserial PRIMARY KEY,
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    aggregate_id text NOT NULL,
    n            integer NOT NULL,
    pid          integer NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT clock_timestamp())`);
  await admin.query(`CREATE TABLE ${s}.counters (
    aggregate_id text PRIMARY KEY,
    applied      integer NOT NULL)`);
  await admin.query(`INSERT INTO ${s}.counters SELECT unnest($1::text[]), 0`, [
    Array.from({ length: aggregates }, (_, index) => aggregateName(index)),
  ]);
  await admin.query(`CREATE TABLE ${s}.suppressed (
    serial   bigserial PRIMARY KEY,
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    pid      integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp())`);
}

const count = async (admin: AdminDb, sql: string): Promise<number> =>
  (await admin.query<{ n: number }>(sql))[0]?.n ?? 0;

export async function runConsumerChaos(
  options: ConsumerChaosOptions,
): Promise<ConsumerChaosSummary> {
  const began = Date.now();
  const log = (line: string) =>
    options.log?.(`[${options.broker} consumers ${seconds(began)}s] ${line}`);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = seededRandom(seed);
  const recoveryTimeoutMs = options.recoveryTimeoutMs ?? 180_000;

  const schema = testSchema(`cons_${options.broker}`);
  const s = `"${schema}"`;
  const admin = adminDb();
  const appliedSoFar = () =>
    count(admin, `SELECT count(DISTINCT event_id)::int AS n FROM ${s}.effects`);

  let target: ChaosTarget | undefined;
  let consumers: ConsumerPool | undefined;
  let dispatchers: DispatcherPool | undefined;
  const { signal } = options;
  // Cut short: no process is started again, and the steps below reject.
  const abort = () => {
    void consumers?.destroy();
    void dispatchers?.destroy();
  };
  signal?.addEventListener('abort', abort, { once: true });
  try {
    await prepareSchema(admin, schema);
    await createEffectsTables(admin, schema, options.aggregates);
    target = await createTarget(options.broker, { restartable: options.restartBroker });
    const consumer = target.consumerName('effects');
    log(
      `schema ${schema}, ${target.server}, consumer ${consumer}, seed ${seed}${options.instanceNames && options.broker === 'kafka' ? ', a group_instance_id per slot' : ''}`,
    );

    // Consumers first: on RabbitMQ their queue must be bound before anything is published
    // (one started process has bound it; the others may still be joining).
    const pool = startConsumers({
      count: options.consumers,
      random,
      brokerUrl: target.url,
      instanceNames: options.instanceNames === true && options.broker === 'kafka',
      databaseUrl: PG_URL,
      schema,
      consumer,
    });
    consumers = pool;
    await pool.ready(1, 120_000, signal);
    log('a consumer started');
    signal?.throwIfAborted();
    dispatchers = startDispatchers({
      count: options.dispatchers,
      random,
      // Here they only feed the consumers: a write probe every 50 ms while events flow
      // (not 2) claims bigger batches and keeps a small machine's run queue short.
      args: [...runArgs(schema, target.url, options.batchSize), '--wake-probe-min-ms', '50'],
    });

    const chaos = { plan: options, schema, target, random, began, log };
    const production = await produceUnderChaos({
      ...chaos,
      kill: () => pool.killRandom(),
      progress: () => `consumer kills ${pool.kills}`,
    });
    const { stats, productionSeconds, lastDisruption } = production;
    const produced = stats.produced;
    const backlog = await count(admin, `SELECT count(*)::int AS n FROM ${s}.outbox`);
    const unappliedAtEnd = produced.length - (await appliedSoFar());
    log(
      `production done: ${produced.length} events in ${productionSeconds} s, ${backlog} pending, ${unappliedAtEnd} not applied yet`,
    );

    // Recovery: every produced event applied.
    let lastLog = Date.now();
    const recoveredAt = await waitUntil(
      async () => {
        const applied = await appliedSoFar();
        if (Date.now() - lastLog >= 10_000) {
          lastLog = Date.now();
          log(`applied ${applied} of ${produced.length}`);
        }
        return applied >= produced.length;
      },
      recoveryTimeoutMs,
      500,
      signal,
    );
    const recoverySeconds = recoveredAt === undefined ? null : seconds(lastDisruption, recoveredAt);
    log(
      recoverySeconds === null
        ? `not recovered within ${recoveryTimeoutMs / 1000} s`
        : `every event applied ${recoverySeconds} s after the last disruption`,
    );

    // The killer's last victim may have been replaced a moment ago: a process SIGTERMed
    // while still loading ends by the signal, as any Node program does before it installs
    // its handler. Stop what is running: every slot's consumer receiving or standing by.
    await pool.ready(options.consumers, 120_000, signal).catch((error: unknown) => {
      log(`before the stop: ${error instanceof Error ? error.message : String(error)}`);
    });
    const consumerExitCodes = (await pool.stop(60_000)).map(exitCode);
    const dispatcherExitCodes = (await dispatchers.stop(30_000)).map(exitCode);

    const applies = await admin.query<Apply>(
      // serial is a bigint: node-postgres gives it as text.
      `SELECT serial, event_id::text AS event_id, aggregate_id, n, pid, applied_at::text AS applied_at
         FROM ${s}.effects ORDER BY serial`,
    );
    const counted = countApplies(produced, applies);
    const counters = await admin.query<{ aggregate_id: string; applied: number }>(
      `SELECT aggregate_id, applied FROM ${s}.counters ORDER BY aggregate_id`,
    );
    const counterSamples: string[] = [];
    const known = new Set(counters.map((row) => row.aggregate_id));
    let counterMismatch = [...counted.perAggregate.keys()].filter((id) => !known.has(id)).length;
    for (const row of counters) {
      const rows = counted.perAggregate.get(row.aggregate_id) ?? 0;
      if (row.applied === rows) continue;
      counterMismatch++;
      counterSamples.push(`${row.aggregate_id}: counter ${row.applied}, effects rows ${rows}`);
    }
    const parkedRows = await admin.query<{ line: string }>(
      `SELECT coalesce(event_id, '?') || ' ' || coalesce(aggregate_id, '?') || ' (' || origin || ', '
              || attempts || ' attempts): ' || last_error AS line
         FROM ${s}.consumer_dead_letter ORDER BY dead_at`,
    );
    const reports = pool.reports();

    const summary: ConsumerChaosSummary = {
      broker: options.broker,
      events: produced.length,
      applied: counted.applied,
      lost: counted.lost.length,
      appliedTwice: applies.length - new Set(applies.map((apply) => apply.event_id)).size,
      outOfOrder: counted.outOfOrder.length,
      suppressed: await count(admin, `SELECT count(*)::int AS n FROM ${s}.suppressed`),
      suppressedReported: reports.stats.duplicates ?? 0,
      parked: parkedRows.length,
      counterMismatch,
      recoverySeconds,
      kills: pool.kills,
      crashes: pool.unexpectedExits.length,
      durationSeconds: 0,
      details: {
        seed,
        server: target.server,
        consumer,
        aggregates: options.aggregates,
        producers: Math.max(1, Math.min(options.producers, options.aggregates)),
        dispatchers: options.dispatchers,
        consumers: options.consumers,
        consumersStarted: pool.started,
        productionSeconds,
        backlogAtEnd: backlog,
        unappliedAtEnd,
        transactions: stats.transactions,
        producerRetries: stats.retries,
        producedMismatch: await writtenMismatch(admin, schema, produced),
        ...(production.brokerRestart ? { brokerRestart: production.brokerRestart } : {}),
        ...(production.postgresRestart ? { postgresRestart: production.postgresRestart } : {}),
        consumerExitCodes,
        dispatcherExitCodes,
        consumerExits: exitDetails(pool.unexpectedExits),
        dispatcherExits: exitDetails(dispatchers.unexpectedExits),
        reports,
        phantoms: counted.phantoms,
        malformed: counted.malformed,
        outboxDeadLetters: await count(
          admin,
          `SELECT count(*)::int AS n FROM ${s}.outbox_dead_letter`,
        ),
        effectsRows: applies.length,
        lostSamples: await whereAre(
          admin,
          schema,
          counted.lost,
          'published (gone from the outbox), never applied',
        ),
        outOfOrderSamples: counted.outOfOrder.slice(0, 20),
        twiceSamples: counted.twice.slice(0, 20),
        parkedSamples: parkedRows.slice(0, 20).map((row) => row.line),
        counterSamples: counterSamples.slice(0, 20),
      },
    };

    if (!consumerChaosPassed(summary) || process.env.CHAOS_POST_MORTEM === 'always') {
      summary.details.postMortemDir = await writePostMortem(`consumers-${options.broker}`, {
        ...logFiles('consumer', pool.logs()),
        ...logFiles('dispatcher', dispatchers.logs()),
        'produced.ndjson': produced.map((event) => JSON.stringify(event)).join('\n'),
        'effects.ndjson': applies.map((apply) => JSON.stringify(apply)).join('\n'),
        'suppressed.ndjson': (
          await admin.query(
            `SELECT serial, event_id::text AS event_id, pid, at::text AS at FROM ${s}.suppressed ORDER BY serial`,
          )
        )
          .map((row) => JSON.stringify(row))
          .join('\n'),
      });
    }
    summary.durationSeconds = seconds(began);
    log(`done in ${summary.durationSeconds} s`);
    return summary;
  } finally {
    signal?.removeEventListener('abort', abort);
    await consumers?.destroy().catch(() => {});
    await dispatchers?.destroy().catch(() => {});
    await target?.cleanup().catch((error) => options.log?.(`clean-up failed: ${String(error)}`));
    await admin.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => {});
    await admin.end().catch(() => {});
  }
}

/** The phase's requirements as soft expectations, each named after the broker. */
export function expectConsumerChaosPassed(summary: ConsumerChaosSummary, events: number): void {
  const { broker, details: d } = summary;
  expect.soft(summary.events, `${broker} events`).toBe(events);
  expect.soft(summary.lost, `${broker} lost`).toBe(0);
  expect.soft(summary.appliedTwice, `${broker} applied twice`).toBe(0);
  expect.soft(summary.outOfOrder, `${broker} out of order`).toBe(0);
  expect.soft(summary.parked, `${broker} parked`).toBe(0);
  expect.soft(summary.counterMismatch, `${broker} counters`).toBe(0);
  expect.soft(summary.recoverySeconds, `${broker} every event applied`).not.toBeNull();
  expect.soft(d.phantoms, `${broker} phantoms`).toBe(0);
  expect.soft(d.malformed, `${broker} malformed`).toBe(0);
  expect.soft(d.producedMismatch, `${broker} bookkeeping`).toBe(0);
  expect
    .soft(d.consumerExitCodes, `${broker} consumer exit codes`)
    .toEqual(d.consumerExitCodes.map(() => 0));
  expect.soft(d.consumerExitCodes.length, `${broker} consumers`).toBe(d.consumers);
  expect
    .soft(d.dispatcherExitCodes, `${broker} dispatcher exit codes`)
    .toEqual(d.dispatcherExitCodes.map(() => 0));
  expect.soft(summary.kills, `${broker} kills`).toBeGreaterThan(0);
}

/** Everything the phase requires: nothing lost, twice, out of order or parked; clean exits. */
export function consumerChaosPassed(summary: ConsumerChaosSummary): boolean {
  const d = summary.details;
  return (
    summary.lost === 0 &&
    summary.appliedTwice === 0 &&
    summary.outOfOrder === 0 &&
    summary.parked === 0 &&
    summary.counterMismatch === 0 &&
    summary.recoverySeconds !== null &&
    d.phantoms === 0 &&
    d.malformed === 0 &&
    d.producedMismatch === 0 &&
    d.consumerExitCodes.every((code) => code === 0) &&
    d.dispatcherExitCodes.every((code) => code === 0)
  );
}

/** One table, one row per broker. */
export function formatConsumerSummary(summaries: readonly ConsumerChaosSummary[]): string {
  const titles =
    'events|applied|lost|applied twice|out of order|dups suppressed|dups (stats)|parked|counters off';
  return [
    formatRuns(summaries, titles, (s) => [
      s.events,
      s.applied,
      s.lost,
      s.appliedTwice,
      s.outOfOrder,
      s.suppressed,
      s.suppressedReported,
      s.parked,
      s.counterMismatch,
    ]),
    'dups suppressed: duplicates the inbox recognised, each recorded in the committed handler ' +
      "transaction (exact). dups (stats): the consumers' stats.duplicates, summed over the last " +
      'line of every process life; a SIGKILLed life loses what it counted after its last line ' +
      '(printed every 500 ms), so it is a lower bound. counters off: aggregates whose counter ' +
      'is not their number of effects rows. crashes: consumer processes that ended on their own.',
  ].join('\n');
}

/** A few lines per run beyond the table: seed, server, restarts, exits, samples of problems. */
export function formatConsumerDetails(summaries: readonly ConsumerChaosSummary[]): string {
  const out: string[] = [];
  for (const s of summaries) {
    const d = s.details;
    const r = d.reports;
    out.push(
      `${s.broker}: seed ${d.seed}; ${d.server}; consumer ${d.consumer}; ${d.aggregates} aggregates, ` +
        `${d.producers} producers, ${d.dispatchers} dispatchers, ${d.consumers} consumers ` +
        `(${d.consumersStarted} processes started); production ${d.productionSeconds} s ` +
        `(${d.backlogAtEnd} in the outbox, ${d.unappliedAtEnd} not applied at its end), ` +
        `${d.transactions} transactions, ${d.producerRetries} retried` +
        formatRestarts(d) +
        `; exit codes: consumers ${d.consumerExitCodes.join(',')}, dispatchers ${d.dispatcherExitCodes.join(',')}` +
        `; effects rows ${d.effectsRows}, phantoms ${d.phantoms}, malformed ${d.malformed}, ` +
        `bookkeeping mismatch ${d.producedMismatch}, dispatcher dead letters ${d.outboxDeadLetters}` +
        `; stats over ${r.lives} lives (${r.finals} final): ` +
        Object.entries(r.stats)
          .map(([name, value]) => `${name} ${value}`)
          .join(', '),
    );
    out.push(...formatExits(d.consumerExits));
    if (d.dispatcherExits.length > 0) out.push('  dispatchers:', ...formatExits(d.dispatcherExits));
    for (const sample of d.lostSamples) out.push(`  lost: ${sample}`);
    for (const sample of d.twiceSamples) out.push(`  applied twice: ${sample}`);
    for (const sample of d.outOfOrderSamples) out.push(`  out of order: ${sample}`);
    for (const sample of d.parkedSamples) out.push(`  parked: ${sample}`);
    for (const sample of d.counterSamples) out.push(`  counter: ${sample}`);
    if (d.postMortemDir) out.push(`  logs, produced events and effects: ${d.postMortemDir}`);
  }
  return out.join('\n');
}
