import { EventEmitter } from 'node:events';
import { notifyChannel } from '../db/identifier.js';
import { assertSchemaCurrent, readPartitionCount } from '../db/migrate.js';
import { seqArray, statements } from '../db/statements.js';
import {
  BrokerUnavailableError,
  ConfigError,
  errorMessage,
  SchemaVersionError,
} from '../errors.js';
import type { OutboxMessage } from '../events/cloudevents.js';
import { publishTraced } from '../observability/tracing.js';
import { withTimeout } from '../timeout.js';
import { backoffDelayMs, Wakeup } from './backoff.js';
import { type BatchOutcome, publishInRounds } from './batch.js';
import { readWriteHorizon } from './horizon.js';
import {
  type DispatcherOptions,
  type ResolvedDispatcherOptions,
  resolveDispatcherOptions,
} from './options.js';
import { PartitionOwnership } from './ownership.js';

interface ClaimedRow {
  seq: string;
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: string;
  headers: string;
  partition: number;
  occurred_at: string;
  attempts: number;
}

export interface BatchReport {
  claimed: number;
  published: number;
  retried: number;
  deadLettered: number;
  held: number;
}

export interface DispatcherStats {
  published: number;
  retried: number;
  deadLettered: number;
  batches: number;
}

/** The events of one committed batch, for metrics: what was published, retried, parked. */
export interface SettledBatch {
  published: readonly OutboxMessage[];
  retried: readonly { message: OutboxMessage; error: string }[];
  deadLettered: readonly { message: OutboxMessage; error: string }[];
  /** When the broker had answered the whole batch (ms since the epoch). */
  acknowledgedAt: number;
}

/** What the loop is doing, for health and readiness checks. */
export interface DispatcherHealth {
  /** `idle`: waiting for work; `dispatching`: a claim or publish is under way; `backoff`: waiting after an outage; `stopped`: not started, stopped, or stopped by a fatal error. */
  state: 'idle' | 'dispatching' | 'backoff' | 'stopped';
  /** When the state was entered (ms since the epoch). */
  since: number;
  /** When a round of the loop last ended, whatever its outcome (ms since the epoch). */
  lastRoundAt: number;
  brokerConnected: boolean;
  /** The outage behind the current backoff, or the error that stopped the loop. */
  problem?: { target: 'broker' | 'database' | 'configuration'; message: string };
}

/**
 * Events a dispatcher emits for monitoring: `batch` (BatchReport), `settled`
 * (SettledBatch, after the commit), `deadLetter`
 * ({ id, eventType, error }), `unavailable` ({ target, error, retryInMs }) before each
 * backoff, and `fatal` (the error) when the loop stopped because retrying cannot help (a
 * broker refusing its configuration: ConfigError); call `stop()` after it.
 */
export interface Dispatcher extends EventEmitter {
  /** Checks the schema, connects the broker (retrying while it is down) and starts the loop. */
  start(): Promise<void>;
  /** Stops claiming, lets the batches in flight settle, closes the broker. Idempotent. */
  stop(): Promise<void>;
  /**
   * Publishes until no claimable row is left, then resolves with the count published.
   * For scripts and tests on a dispatcher that is not started.
   */
  drain(): Promise<number>;
  /** The partitions this dispatcher claims from now (all of them on an embedded database). */
  ownedPartitions(): number[];
  /** What the loop is doing now. */
  health(): DispatcherHealth;
  readonly stats: Readonly<DispatcherStats>;
}

function toMessage(row: ClaimedRow): OutboxMessage {
  return {
    id: row.id,
    seq: row.seq,
    aggregateType: row.aggregate_type,
    aggregateId: row.aggregate_id,
    eventType: row.event_type,
    payload: row.payload,
    headers: JSON.parse(row.headers) as Record<string, string>,
    partition: Number(row.partition),
    occurredAt: row.occurred_at,
    attempts: Number(row.attempts),
  };
}

const FULL_SCAN = '0';
const nextSeq = (seq: string | undefined) => (seq ? String(BigInt(seq) + 1n) : FULL_SCAN);

class OutboxDispatcher extends EventEmitter implements Dispatcher {
  readonly stats: DispatcherStats = { published: 0, retried: 0, deadLettered: 0, batches: 0 };
  private readonly options: ResolvedDispatcherOptions;
  private readonly sql: ReturnType<typeof statements>;
  private readonly wakeup = new Wakeup();
  // Backoff after an outage waits out its delay: a NOTIFY must not cut it short (new
  // events are no reason to hit a server that is down), only stop() may.
  private readonly stopRequested = new Wakeup();
  private loop: Promise<void> | undefined;
  private stopping = false;
  private unlisten: (() => Promise<void>) | undefined;
  private listening = false;
  private listenFailing = false;
  private brokerConnected = false;
  private readonly ownership: PartitionOwnership;
  /**
   * Where the next claim starts looking (a seq). During a long drain each claim starts
   * after the last, instead of walking the dead index entries its predecessors left at
   * the head of the scan. Rows it steps over (held back, retried, claimed elsewhere,
   * committed late) are found by a full scan, which runs whenever a claim comes back
   * short, the partitions change, and at least every poll interval.
   */
  private cursor = FULL_SCAN;
  private partitions: number | undefined;
  private lastFullScan = 0;
  private state: DispatcherHealth = {
    state: 'stopped',
    since: Date.now(),
    lastRoundAt: 0,
    brokerConnected: false,
  };

  constructor(options: DispatcherOptions) {
    super();
    this.options = resolveDispatcherOptions(options);
    this.sql = statements(this.options.schema);
    const { db, schema, rebalanceIntervalMs, logger } = this.options;
    this.ownership = new PartitionOwnership(
      db,
      this.sql,
      schema,
      rebalanceIntervalMs,
      logger,
      () => {
        // New partitions have rows below the cursor.
        this.cursor = FULL_SCAN;
        this.wakeup.wake();
      },
    );
  }

  /** The partitions this dispatcher claims from now (all of them on an embedded database). */
  ownedPartitions(): number[] {
    return this.ownership.partitions();
  }

  health(): DispatcherHealth {
    return { ...this.state, brokerConnected: this.brokerConnected };
  }

  private enter(state: DispatcherHealth['state'], problem?: DispatcherHealth['problem']): void {
    if (state !== this.state.state || problem) {
      this.state = { ...this.state, state, since: Date.now(), problem };
    }
  }

  private async partitionCount(): Promise<number> {
    this.partitions ??= await readPartitionCount(this.options.db, this.options.schema);
    return this.partitions;
  }

  async start(): Promise<void> {
    if (this.loop) return;
    await assertSchemaCurrent(this.options.db, this.options.schema);
    this.stopping = false;
    this.stopRequested.reset();
    await this.ownership.start(await this.partitionCount());
    await this.listen();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeup.wake();
    this.stopRequested.wake();
    await this.loop;
    this.loop = undefined;
    await this.ownership.stop();
    await this.unlisten?.();
    this.unlisten = undefined;
    this.listening = false;
    if (this.brokerConnected) {
      this.brokerConnected = false;
      await this.options.broker.close();
    }
  }

  async drain(): Promise<number> {
    if (!this.brokerConnected) {
      await this.options.broker.connect();
      this.brokerConnected = true;
    }
    const before = this.stats.published;
    // Failed events wait for their retry time and their aggregates' later events wait
    // behind them, so the claim comes back empty once nothing is claimable right now.
    // A drain claims from every partition: the claim alone keeps aggregates in order.
    const all = Array.from({ length: await this.partitionCount() }, (_, p) => p);
    while ((await this.dispatchBatch(all, FULL_SCAN)).claimed > 0) {}
    return this.stats.published - before;
  }

  private async listen(): Promise<void> {
    if (!this.options.notify || this.listening) return;
    const { db, logger } = this.options;
    try {
      this.unlisten = await db.listen(
        notifyChannel(this.options.schema),
        () => this.wakeup.wake(),
        (error) => {
          this.listening = false;
          this.listenFailing = true;
          this.unlisten = undefined;
          logger.warn(
            { err: errorMessage(error) },
            'notification connection lost; polling until it is back',
          );
        },
      );
      this.listening = true;
      // Notifications sent while we were not listening are gone: look once now.
      this.wakeup.wake();
    } catch (error) {
      // Once per outage, not once per round of the loop while the database is away.
      const level = this.listenFailing ? 'debug' : 'warn';
      this.listenFailing = true;
      logger[level]({ err: errorMessage(error) }, 'cannot listen for notifications; polling');
      return;
    }
    this.listenFailing = false;
  }

  private async run(): Promise<void> {
    const { logger, pollIntervalMs, retryBaseDelayMs, retryMaxDelayMs, batchSize } = this.options;
    let failures = 0;
    // Batches claimed and still publishing or settling, oldest first.
    const inFlight: Promise<unknown>[] = [];
    const settleOldest = async () => {
      await inFlight.shift();
      if (failures > 0) logger.info({ after: failures }, 'dispatching again');
      failures = 0;
    };
    while (!this.stopping) {
      this.state.lastRoundAt = Date.now();
      try {
        this.enter('dispatching');
        if (!this.brokerConnected) await this.connectBroker();
        if (!this.listening) await this.listen();
        if (Date.now() - this.lastFullScan >= pollIntervalMs) this.cursor = FULL_SCAN;
        const from = this.cursor;
        if (from === FULL_SCAN) this.lastFullScan = Date.now();
        const othersInFlight = inFlight.length > 0;
        const batch = this.startBatch(this.ownership.partitions(), from);
        inFlight.push(batch.done);
        const claim = await batch.claimed;
        if (claim.claimed === batchSize) {
          // More is probably waiting beyond this batch: claim it while this one publishes.
          this.cursor = nextSeq(claim.lastSeq);
          while (inFlight.length >= this.options.batchesInFlight) await settleOldest();
        } else {
          this.cursor = FULL_SCAN;
          while (inFlight.length > 0) await settleOldest();
          // A short claim from the cursor, or while another batch held rows back: look
          // once more from the start before sleeping. (Failed events are not claimable
          // again until their retry time, so a full batch of them cannot make this spin.)
          if (from === FULL_SCAN && !othersInFlight) {
            // Nothing to publish: make sure the broker is still there all the same.
            await this.checkBroker();
            this.enter('idle');
            await this.wakeup.sleep(pollIntervalMs);
          }
        }
      } catch (error) {
        // Every batch still in flight ends (commits, or rolls back its rows) before backoff.
        await Promise.allSettled(inFlight.splice(0));
        if (this.stopping) break;
        if (error instanceof ConfigError || error instanceof SchemaVersionError) {
          // Retrying cannot fix a setting the broker or database refuses: stop and say so.
          logger.error({ err: errorMessage(error) }, 'dispatcher stopped: cannot go on');
          this.enter('stopped', { target: 'configuration', message: errorMessage(error) });
          this.stopping = true;
          this.emit('fatal', error);
          break;
        }
        const delay = backoffDelayMs(failures, retryBaseDelayMs, retryMaxDelayMs);
        failures++;
        const target = error instanceof BrokerUnavailableError ? 'broker' : 'database';
        if (target === 'broker' && this.brokerConnected) {
          this.brokerConnected = false;
          await this.options.broker.close().catch(() => {});
        }
        logger.warn(
          { err: errorMessage(error), target, attempt: failures, retryInMs: delay },
          `${target} unavailable; retrying`,
        );
        this.emit('unavailable', { target, error, retryInMs: delay });
        this.enter('backoff', { target, message: errorMessage(error) });
        await this.stopRequested.sleep(delay);
      }
    }
    await Promise.allSettled(inFlight);
    if (this.state.state !== 'stopped') this.enter('stopped');
  }

  /**
   * Starts a batch: `claimed` resolves once its rows are claimed (how many, the last seq),
   * `done` once it is settled and committed. Either rejects if the batch fails before
   * that point; `done` always settles.
   */
  private startBatch(partitions: readonly number[], from: string) {
    let onClaimed: (claim: { claimed: number; lastSeq?: string }) => void = () => {};
    const claimedEarly = new Promise<{ claimed: number; lastSeq?: string }>((resolve) => {
      onClaimed = resolve;
    });
    const done = this.dispatchBatch(partitions, from, onClaimed);
    // Whichever comes first: the claim, or the batch's end (an empty claim, an error).
    const claimed = Promise.race([claimedEarly, done]);
    // Its rejection is handled where `claimed` or `done` is awaited.
    done.catch(() => {});
    return { claimed, done };
  }

  private async checkBroker(): Promise<void> {
    const { broker, publishTimeoutMs } = this.options;
    if (!broker.check) return;
    try {
      await withTimeout(broker.check(), Math.min(publishTimeoutMs, 5000));
    } catch (error) {
      throw error instanceof BrokerUnavailableError
        ? error
        : new BrokerUnavailableError(`${broker.name} does not answer: ${errorMessage(error)}`, {
            cause: error,
          });
    }
  }

  private async connectBroker(): Promise<void> {
    const { broker, logger } = this.options;
    try {
      await broker.connect();
    } catch (error) {
      throw error instanceof BrokerUnavailableError || error instanceof ConfigError
        ? error
        : new BrokerUnavailableError(`cannot connect to ${broker.name}: ${errorMessage(error)}`, {
            cause: error,
          });
    }
    this.brokerConnected = true;
    logger.info({ broker: broker.name }, 'broker connected');
  }

  /** One transaction: claim, publish, settle. A crash or error before COMMIT returns every row. */
  private async dispatchBatch(
    partitions: readonly number[],
    from: string,
    onClaimed: (claim: { claimed: number; lastSeq?: string }) => void = () => {},
  ): Promise<BatchReport & { lastSeq?: string }> {
    const { db, batchSize, logger } = this.options;
    if (partitions.length === 0)
      return { claimed: 0, published: 0, retried: 0, deadLettered: 0, held: 0 };
    const settled = await db.transaction(async (tx) => {
      const count = await this.partitionCount();
      const horizon = await readWriteHorizon(tx, this.sql, this.options.schema, count);
      const claim =
        this.options.onDeadLetter === 'hold'
          ? this.sql.outboxClaimHoldingDeadLetters
          : horizon.retrying
            ? this.sql.outboxClaim
            : this.sql.outboxClaimNoneRetrying;
      const { rows } = await tx.query<ClaimedRow>(claim, [
        batchSize,
        seqArray(partitions),
        from,
        horizon.lastSeq,
        horizon.bounds,
      ]);
      if (rows.length === 0) return undefined;
      onClaimed({ claimed: rows.length, lastSeq: rows.at(-1)?.seq });
      const outcome = await publishInRounds(this.options.broker, rows.map(toMessage), (round) =>
        publishTraced(this.options.broker.name, round, (traced) => this.publishWithTimeout(traced)),
      );
      const acknowledgedAt = Date.now();
      return {
        ...(await this.settle(tx, rows.length, outcome)),
        lastSeq: rows.at(-1)?.seq,
        outcome,
        acknowledgedAt,
      };
    });
    if (!settled) return { claimed: 0, published: 0, retried: 0, deadLettered: 0, held: 0 };
    // Reported only once committed: a rolled-back batch dead-lettered nothing.
    const { dead, lastSeq, outcome, acknowledgedAt, ...report } = settled;
    for (const { message, error } of dead) {
      logger.warn(
        {
          id: message.id,
          eventType: message.eventType,
          aggregateId: message.aggregateId,
          attempts: message.attempts + 1,
          err: error,
        },
        'event dead-lettered',
      );
      this.emit('deadLetter', { id: message.id, eventType: message.eventType, error });
    }
    this.stats.batches++;
    this.stats.published += report.published;
    this.stats.retried += report.retried;
    this.stats.deadLettered += report.deadLettered;
    this.emit('batch', report);
    if (this.listenerCount('settled') > 0) {
      const deadIds = new Set(dead.map(({ message }) => message.id));
      const settledBatch: SettledBatch = {
        published: outcome.published,
        retried: outcome.failed.filter(({ message }) => !deadIds.has(message.id)),
        deadLettered: dead,
        acknowledgedAt,
      };
      this.emit('settled', settledBatch);
    }
    return { ...report, lastSeq };
  }

  private publishWithTimeout(round: readonly OutboxMessage[]) {
    const { broker, publishTimeoutMs } = this.options;
    return withTimeout(
      broker.publish(round),
      publishTimeoutMs,
      () =>
        new BrokerUnavailableError(`${broker.name} did not answer within ${publishTimeoutMs} ms`),
    );
  }

  private async settle(
    tx: { query: (text: string, values?: readonly unknown[]) => Promise<unknown> },
    claimed: number,
    outcome: BatchOutcome,
  ): Promise<BatchReport & { dead: { message: OutboxMessage; error: string }[] }> {
    const { maxAttempts, retryBaseDelayMs, retryMaxDelayMs, logger } = this.options;
    const retry: { seq: string; error: string; delay_ms: number }[] = [];
    const dead: { seq: string; error: string }[] = [];
    const deadMessages: { message: OutboxMessage; error: string }[] = [];
    for (const { message, error, permanent } of outcome.failed) {
      if (message.attempts + 1 >= maxAttempts) {
        dead.push({ seq: message.seq, error });
        deadMessages.push({ message, error });
      } else {
        retry.push({
          seq: message.seq,
          error,
          delay_ms: backoffDelayMs(message.attempts, retryBaseDelayMs, retryMaxDelayMs),
        });
        if (permanent)
          logger.debug({ id: message.id, err: error }, 'broker refused event; will retry');
      }
    }
    if (retry.length > 0) {
      logger.warn(
        { failed: retry.length, err: retry[0]?.error },
        'publish failed; events will be retried',
      );
    }
    await tx.query(this.sql.outboxSettle, [
      seqArray(outcome.published.map((m) => m.seq)),
      JSON.stringify(retry),
      JSON.stringify(dead),
    ]);
    return {
      claimed,
      published: outcome.published.length,
      retried: retry.length,
      deadLettered: dead.length,
      held: outcome.held.length,
      dead: deadMessages,
    };
  }
}

/** The dispatcher: claims outbox rows in batches, publishes them, removes what the broker acknowledged. */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  return new OutboxDispatcher(options);
}
