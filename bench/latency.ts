import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { EventBroker } from 'edupulse-outbox';
import pg from 'pg';
import { type BenchContext, quantile, round } from './context.js';

/**
 * Steady traffic, measured from the producer's COMMIT returning to the broker's
 * acknowledgement of that event.
 *
 * The publisher (our dispatcher, or the peer's listener) runs in a worker thread, the
 * producers in the main thread. A separate event loop is what `edupulse-outbox run` gets
 * as a process of its own, and it keeps the two sides from queueing behind each other's
 * callbacks: producers start on time and the publisher wakes when the NOTIFY arrives, so
 * the figure is the publisher's. Both sides read `process.hrtime`, one monotonic clock
 * for every thread of the process.
 */

/** Milliseconds on the process-wide monotonic clock, comparable between threads. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Writes one event with `client`, inside the transaction the harness opened; returns its id. */
export type Produce = (client: pg.PoolClient, n: number) => Promise<string>;

/**
 * Starts a publisher in the worker: it calls `acked(id)` when the broker acknowledged the
 * event `id`, and resolves with the function that stops it.
 */
export type StartLatencyPublisher<Options> = (
  options: Options,
  acked: (id: string) => void,
) => Promise<() => Promise<void>>;

/** Where the worker finds the publisher: a module exporting `startLatencyPublisher`, and its options. */
export interface PublisherSpec<Options> {
  /** URL of the module (its `import.meta.url`). */
  module: string;
  /** Passed to `startLatencyPublisher`; copied to the worker, so plain data only. */
  options: Options;
}

export interface LatencyPlan {
  /** Events per second, all producers together. */
  rate: number;
  producers: number;
  /** The measured phase. */
  seconds: number;
  /**
   * The same traffic just before it, not measured: the publisher, a fresh worker thread,
   * runs its code cold at first (its first 300–400 ms measured at several times the
   * latency of the rest), and a publisher in production has been running for long.
   */
  warmUpSeconds: number;
}

/**
 * 8 producers at `rate` events/s together (1,000 unless given), for 30 s (10 s with
 * `--quick`), after 2 s of the same traffic.
 */
export function latencyPlan(bench: BenchContext, rate = 1000): LatencyPlan {
  return { rate, producers: 8, seconds: bench.settings.quick ? 10 : 30, warmUpSeconds: 2 };
}

export interface LatencyFigures {
  events: number;
  /** The rate the producers reached: below the plan's when commits took longer than a slot. */
  events_per_s: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Events whose transaction began more than one producer interval after its slot. */
  late_events: number;
  /** The latest any transaction began after its slot. */
  max_start_lag_ms: number;
  /** Committed events the broker had not acknowledged a minute after the last commit. */
  unacknowledged: number;
  /** Acknowledgements beyond the first of an event. */
  duplicates: number;
}

/** A broker that reports each event the wrapped one acknowledged. */
export function recordingBroker(broker: EventBroker, acked: (id: string) => void): EventBroker {
  return {
    name: broker.name,
    connect: () => broker.connect(),
    close: () => broker.close(),
    async publish(batch) {
      const results = await broker.publish(batch);
      results.forEach((result, i) => {
        const message = batch[i];
        if (result.ok && message) acked(message.id);
      });
      return results;
    },
  };
}

type WorkerReply = { type: 'ready' } | { type: 'acks'; ids: string[]; times: number[] };

/** The worker's next message of `type`; rejects if the worker fails or exits first. */
function reply<T extends WorkerReply['type']>(
  worker: Worker,
  type: T,
): Promise<Extract<WorkerReply, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: WorkerReply) => {
      if (message.type !== type) return;
      done();
      resolve(message as Extract<WorkerReply, { type: T }>);
    };
    const onError = (error: Error) => {
      done();
      reject(error);
    };
    const onExit = (code: number) => {
      done();
      reject(new Error(`latency worker exited (${code}) before "${type}"`));
    };
    const done = () => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    };
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
  });
}

interface Produced {
  /** The measured phase's events: id → commit time. */
  commits: Map<string, number>;
  /** Events committed in the warm-up. */
  warmUpEvents: number;
  late: number;
  maxLagMs: number;
  seconds: number;
}

/**
 * Runs the producers on a schedule of absolute times: slot i is due at start + i/rate,
 * producer p takes the slots p, p + producers, …. A producer that falls behind sends its
 * late events at once (the count stays exact) and counts them as late. The warm-up's
 * slots come first, in the same schedule, and only their number is kept.
 */
async function produceSteadily(
  pool: pg.Pool,
  produce: Produce,
  plan: LatencyPlan,
): Promise<Produced> {
  const intervalMs = 1000 / plan.rate;
  const slotsPerProducer = (seconds: number) => Math.round((plan.rate * seconds) / plan.producers);
  const warmUpSlots = slotsPerProducer(plan.warmUpSeconds) * plan.producers;
  const perProducer = slotsPerProducer(plan.warmUpSeconds) + slotsPerProducer(plan.seconds);
  const producerIntervalMs = intervalMs * plan.producers;
  const result: Produced = {
    commits: new Map(),
    warmUpEvents: 0,
    late: 0,
    maxLagMs: 0,
    seconds: 0,
  };
  const start = nowMs() + 50;
  const measuredFrom = start + warmUpSlots * intervalMs;
  const producer = async (p: number) => {
    for (let k = 0; k < perProducer; k++) {
      const slot = k * plan.producers + p;
      const measured = slot >= warmUpSlots;
      const due = start + slot * intervalMs;
      const wait = due - nowMs();
      if (wait > 0) await sleep(wait);
      const lag = nowMs() - due;
      if (measured) {
        if (lag > producerIntervalMs) result.late++;
        result.maxLagMs = Math.max(result.maxLagMs, lag);
      }
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const id = await produce(client, slot);
        await client.query('COMMIT');
        if (measured) result.commits.set(id, nowMs());
        else result.warmUpEvents++;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    }
  };
  await Promise.all(Array.from({ length: plan.producers }, (_, p) => producer(p)));
  result.seconds = (nowMs() - measuredFrom) / 1000;
  return result;
}

/**
 * Starts the publisher in a worker, runs the producers, waits up to `graceMs` (default a
 * minute) for the last acknowledgements, and computes the figures. The quantiles are of
 * the acknowledged events; `unacknowledged` says how many are missing from them.
 */
export async function measureLatency<Options>(
  bench: BenchContext,
  produce: Produce,
  publisher: PublisherSpec<Options>,
  options: { plan?: LatencyPlan; graceMs?: number } = {},
): Promise<LatencyFigures> {
  const plan = options.plan ?? latencyPlan(bench);
  const worker = new Worker(new URL('./latency-worker.js', import.meta.url), {
    workerData: publisher,
  });
  const pool = new pg.Pool({
    connectionString: bench.settings.databaseUrl,
    max: plan.producers,
    application_name: 'edupulse-bench-producer',
  });
  pool.on('error', () => {});
  try {
    await reply(worker, 'ready');
    // Connections opened now, not during the first slots.
    const warm = await Promise.all(Array.from({ length: plan.producers }, () => pool.connect()));
    for (const client of warm) client.release();
    const produced = await produceSteadily(pool, produce, plan);
    const acks = reply(worker, 'acks');
    worker.postMessage({
      expected: produced.warmUpEvents + produced.commits.size,
      graceMs: options.graceMs ?? 60_000,
    });
    const { ids, times } = await acks;
    return figures(produced, ids, times);
  } finally {
    await pool.end();
    await worker.terminate();
  }
}

function figures(
  produced: Produced,
  ids: readonly string[],
  times: readonly number[],
): LatencyFigures {
  const firstAck = new Map<string, number>();
  let duplicates = 0;
  ids.forEach((id, i) => {
    if (firstAck.has(id)) duplicates++;
    else firstAck.set(id, times[i] as number);
  });
  const latencies: number[] = [];
  let unacknowledged = 0;
  for (const [id, committed] of produced.commits) {
    const acked = firstAck.get(id);
    if (acked === undefined) unacknowledged++;
    else latencies.push(acked - committed);
  }
  latencies.sort((a, b) => a - b);
  return {
    events: produced.commits.size,
    events_per_s: Math.round(produced.commits.size / produced.seconds),
    p50_ms: round(quantile(latencies, 0.5)),
    p95_ms: round(quantile(latencies, 0.95)),
    p99_ms: round(quantile(latencies, 0.99)),
    max_ms: round(latencies.at(-1) ?? Number.NaN),
    late_events: produced.late,
    max_start_lag_ms: round(produced.maxLagMs),
    unacknowledged,
    duplicates,
  };
}
