import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Database, DatabaseSession } from '../db/database.js';
import type { Executor } from '../db/executor.js';
import { notifyChannel } from '../db/identifier.js';
import type { Statements } from '../db/sql/index.js';

/** Wakes a sleeping loop early: a NOTIFY, a stop request. A wake with no sleeper is kept for the next sleep. */
export class Wakeup {
  private pending = false;
  private release: (() => void) | undefined;

  wake(): void {
    if (this.release) this.release();
    else this.pending = true;
  }

  /** Ends a sleep under way, if any; unlike `wake`, leaves the next sleep alone. */
  interruptSleep(): void {
    this.release?.();
  }

  /** Resolves after `ms` with false, or with true when woken (at once if woken since the last sleep). */
  sleep(ms: number): Promise<boolean> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(timer);
        this.release = undefined;
        resolve(woken);
      };
      const timer = setTimeout(() => done(false), ms);
      this.release = () => done(true);
    });
  }
}

/**
 * The dispatcher's LISTEN on the outbox trigger's channel, once for all lanes. A lost
 * listening connection is said once and retried by the next round of any lane (`ensure`);
 * the lanes poll meanwhile.
 */
export class Notifications {
  private listening: Promise<void> | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private failing = false;

  constructor(
    private readonly db: Database,
    private readonly schema: string,
    private readonly logger: Logger,
    /** Called for every notification, and once after (re)listening. */
    private readonly onNotify: () => void,
  ) {}

  /** Listens unless it already does (or is starting to); never rejects. */
  ensure(): Promise<void> {
    this.listening ??= this.listen().catch(() => {
      this.listening = undefined;
    });
    return this.listening;
  }

  get active(): boolean {
    return this.listening !== undefined;
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    this.unlisten = undefined;
    this.listening = undefined;
  }

  private async listen(): Promise<void> {
    try {
      this.unlisten = await this.db.listen(notifyChannel(this.schema), this.onNotify, (error) => {
        this.listening = undefined;
        this.failing = true;
        this.unlisten = undefined;
        this.logger.warn(
          { err: errorMessage(error) },
          'notification connection lost; polling until it is back',
        );
      });
      // Notifications sent while we were not listening are gone: look once now.
      this.onNotify();
    } catch (error) {
      // Once per outage, not once per round of the loop while the database is away.
      const level = this.failing ? 'debug' : 'warn';
      this.failing = true;
      this.logger[level]({ err: errorMessage(error) }, 'cannot listen for notifications; polling');
      throw error;
    }
    this.failing = false;
  }
}

export interface WriteProbeOptions {
  db: Database;
  sql: Statements;
  logger: Logger;
  minMs: number;
  maxMs: number;
  /** Wait after a failed look (the database away), before looking again. */
  retryMs: number;
  /**
   * Called when the write sequence moved (something was written since the last look), and
   * after each failed look: the probe cannot tell then, so the lanes look for themselves,
   * every `retryMs`, and report the database if it is away.
   */
  onWrite: () => void;
  /**
   * True while a lane claims, publishes or settles a batch: a look then is skipped. It
   * could only wake that lane for after its batch, when the lane asks for a look itself
   * (`lookNow`); at a steady trickle the lanes go from batch to batch, and the looks in
   * between were a quarter of the probe's statements.
   */
  busy: () => boolean;
}

/**
 * The wake-up that costs producers nothing: it reads the outbox's write sequence (one
 * catalogue read, no index, 0.04 ms) and wakes the lanes when it moved. Every producer
 * draws a seq before its commit, so a move means events were written, committed or about
 * to be; a claim that finds them still uncommitted is retried by the lane itself (see
 * Lane.recheckMs). It looks every `minMs` while the sequence keeps moving and slows down
 * by half at each look that finds nothing, to `maxMs`: the idle cost is bounded by
 * `maxMs`, and a first event after a quiet spell waits at most that long.
 *
 * On PostgreSQL it runs on a connection of its own (so no claim waits for it, nor it for
 * a claim); on an embedded database, through the one session there is.
 */
export class WriteProbe {
  private last: string | undefined;
  private intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private session: DatabaseSession | undefined;
  private stopped = true;
  private failing = false;
  /** The write sequence's oid, the probe's parameter. */
  private sequence: string | undefined;
  /** When the last look (not a skipped one) began. */
  private lastLookAt = 0;

  constructor(private readonly options: WriteProbeOptions) {
    this.intervalMs = options.minMs;
  }

  /**
   * Takes the first look before the lanes' first claims, so that anything written after
   * it is seen as a move (a look after those claims would take it for the starting mark).
   */
  async start(): Promise<void> {
    this.stopped = false;
    await this.look();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await this.session?.close();
    this.session = undefined;
  }

  /**
   * Looks as soon as `minMs` allows, instead of at the next tick: a lane has finished its
   * batch and is about to sleep. Not while a look fails: the lanes then poll on their own.
   */
  lookNow(): void {
    if (this.stopped || this.running || this.failing) return;
    // Still no sooner than minMs after the last look: a higher setting lets events
    // gather between batches (fewer, larger ones).
    const wait = this.lastLookAt + this.options.minMs - Date.now();
    if (wait > 0) {
      this.schedule(wait);
      return;
    }
    clearTimeout(this.timer);
    this.lookOnce();
  }

  /** One look, the only one under way: each ends by scheduling the next. */
  private lookOnce(): void {
    const running = this.look().finally(() => {
      if (this.running === running) this.running = undefined;
    });
    this.running = running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.lookOnce(), ms);
    // The lanes keep the process alive while the dispatcher runs; this timer need not.
    this.timer.unref();
  }

  private async look(): Promise<void> {
    const { minMs, maxMs, retryMs, logger, onWrite } = this.options;
    let next = retryMs;
    // A skipped look keeps the last one's mark: whatever was written since, the next
    // look sees.
    if (this.options.busy()) {
      this.intervalMs = minMs;
      this.schedule(minMs);
      return;
    }
    this.lastLookAt = Date.now();
    try {
      const executor = await this.executor();
      if (this.sequence === undefined) {
        const { rows } = await executor.query<{ oid: string }>(this.options.sql.outboxWriteSeqOid);
        this.sequence = String(rows[0]?.oid);
      }
      const { rows } = await executor.query<{ last_seq: string }>(
        this.options.sql.outboxWriteProbe,
        [this.sequence],
      );
      const seq = rows[0]?.last_seq ?? '0';
      if (this.last !== undefined && seq !== this.last) {
        onWrite();
        this.intervalMs = minMs;
      } else {
        this.intervalMs = Math.min(maxMs, Math.ceil(this.intervalMs * 1.5));
      }
      // The first look sets the mark: what was written before is the first claims' to find.
      this.last = seq;
      next = this.intervalMs;
      if (this.failing) logger.info({}, 'write probe answering again');
      this.failing = false;
    } catch (error) {
      // Once per outage; the lanes poll meanwhile and report the database themselves.
      if (!this.failing) {
        logger.warn({ err: errorMessage(error) }, 'write probe failed; polling until it answers');
      }
      this.failing = true;
      await this.session?.close().catch(() => {});
      this.session = undefined;
      // Looked up again: a sequence dropped and made anew (a restore in place) has
      // another oid, and the old one would fail every look from now on.
      this.sequence = undefined;
      onWrite();
    }
    this.schedule(next);
  }

  private async executor(): Promise<Executor> {
    const { db } = this.options;
    if (!db.session) return db;
    if (!this.session) {
      const session = await db.session('edupulse-outbox wake-up');
      session.onLost(() => {
        if (this.session === session) this.session = undefined;
      });
      this.session = session;
    }
    return this.session;
  }
}
