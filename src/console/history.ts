import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SCAN_DUTY } from '../common/shared-check.js';
import type { Executor } from '../db/executor.js';
import { statements } from '../db/sql/index.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import type { SettledBatch } from '../dispatcher/events.js';

/** The outbox at one moment, and what moved since the sample before. */
export interface Sample {
  /** When it was taken, ms since the epoch. */
  t: number;
  pending: number;
  oldestAgeSeconds: number;
  deadLetters: number;
  /** Events published per second since the previous sample; null for the first. */
  publishedPerSecond: number | null;
  /** Commit → broker acknowledgement of the serving dispatcher's events since the previous sample. */
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
}

export interface HistoryOptions {
  db: Executor;
  schema: string;
  /** The dispatcher serving the console (`run --ui-port`): its events give the latency. */
  dispatcher?: Dispatcher | undefined;
  logger?: Logger | undefined;
  /** Default 2000. */
  intervalMs?: number;
  /** Default 10 minutes. */
  keepMs?: number;
}

// Latencies kept per interval: beyond this, every other one is dropped (quantiles hold).
const MAX_LATENCIES = 20_000;

interface Totals {
  outboxDeleted: bigint;
  deadInserted: bigint;
}

/**
 * Samples one schema's outbox every interval and keeps the last minutes: the charts of the
 * console. The publish rate comes from the outbox's statistics (rows that left it, less
 * those that went to the dead letters), so it covers every dispatcher of the schema; the
 * latency only the dispatcher serving the console can know.
 */
export class History {
  private readonly samples: Sample[] = [];
  private readonly latencies: number[] = [];
  private previous: (Totals & { t: number }) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private sampling: Promise<void> | undefined;
  private failing = false;
  private readonly onSettled = (batch: SettledBatch) => {
    for (const message of batch.published) {
      const occurred = Date.parse(message.occurredAt);
      if (!Number.isFinite(occurred)) continue;
      if (this.latencies.length >= MAX_LATENCIES) this.thin();
      this.latencies.push(Math.max(0, batch.acknowledgedAt - occurred));
    }
  };

  constructor(private readonly options: HistoryOptions) {}

  get intervalMs(): number {
    return this.options.intervalMs ?? 2000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.options.dispatcher?.on('settled', this.onSettled);
    // One sample at a time, each an interval after the one before began, or, when the
    // sample took longer than a tenth of that (counting a long backlog), nine times its
    // own length after it ended: the console holds the database at most a tenth of the
    // time, however long the backlog; its samples come further apart instead.
    const next = () => {
      const began = Date.now();
      this.sampling = this.sample().finally(() => {
        this.sampling = undefined;
        if (!this.running) return;
        const took = Date.now() - began;
        const wait = Math.max(this.intervalMs - took, SCAN_DUTY * took);
        this.timer = setTimeout(next, wait);
        this.timer.unref();
      });
    };
    // Started again while a sample of the last start runs: its end goes on from there.
    if (!this.sampling) next();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.options.dispatcher?.off('settled', this.onSettled);
    await this.sampling;
  }

  /** Oldest first. */
  list(): readonly Sample[] {
    return this.samples;
  }

  private thin(): void {
    let kept = 0;
    for (let i = 0; i < this.latencies.length; i += 2)
      this.latencies[kept++] = this.latencies[i] ?? 0;
    this.latencies.length = kept;
  }

  private async sample(): Promise<void> {
    try {
      const { rows } = await this.options.db.query<{
        pending: number;
        oldest_age_s: string;
        dead: number;
        outbox_deleted: string;
        dead_inserted: string;
      }>(statements(this.options.schema).outboxActivity);
      const row = rows[0];
      if (!row) return;
      const t = Date.now();
      const totals = {
        outboxDeleted: BigInt(row.outbox_deleted),
        deadInserted: BigInt(row.dead_inserted),
      };
      this.samples.push({
        t,
        pending: Number(row.pending),
        oldestAgeSeconds: Number(row.oldest_age_s),
        deadLetters: Number(row.dead),
        publishedPerSecond: this.rate(totals, t),
        ...this.takeLatencies(),
      });
      this.previous = { ...totals, t };
      const keepFrom = t - (this.options.keepMs ?? 600_000);
      while ((this.samples[0]?.t ?? t) < keepFrom) this.samples.shift();
      this.failing = false;
    } catch (error) {
      // Missing samples show as a gap; one line per outage, not one per interval.
      if (!this.failing) {
        this.options.logger?.warn(
          { err: errorMessage(error) },
          'console: cannot sample the outbox',
        );
      }
      this.failing = true;
      this.previous = undefined;
    }
  }

  private rate(totals: Totals, t: number): number | null {
    const previous = this.previous;
    if (!previous || t <= previous.t) return null;
    const published =
      totals.outboxDeleted - previous.outboxDeleted - (totals.deadInserted - previous.deadInserted);
    // Statistics reset (pg_stat_reset) or a restart of the server: no rate for this step.
    if (published < 0n) return null;
    return (Number(published) * 1000) / (t - previous.t);
  }

  private takeLatencies(): Pick<Sample, 'latencyP50Ms' | 'latencyP99Ms'> {
    if (!this.options.dispatcher || this.latencies.length === 0) {
      return { latencyP50Ms: null, latencyP99Ms: null };
    }
    const sorted = this.latencies.splice(0).sort((a, b) => a - b);
    const at = (q: number) =>
      sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    return { latencyP50Ms: at(0.5), latencyP99Ms: at(0.99) };
  }
}
