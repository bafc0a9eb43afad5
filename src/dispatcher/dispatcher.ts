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
import { clip } from '../text.js';
import { withTimeout } from '../timeout.js';
import { backoffDelayMs, Wakeup } from './backoff.js';
import { type BatchOutcome, publishInRounds } from './batch.js';
import { databaseWork, isDatabaseError, markDatabaseErrors } from './database-errors.js';
import { readWriteHorizon } from './horizon.js';
import { type ClaimedRow, toMessage } from './message.js';
import {
  type DispatcherOptions,
  type ResolvedDispatcherOptions,
  resolveDispatcherOptions,
} from './options.js';
import { PartitionOwnership } from './ownership.js';

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
  /** When the loop's current round (or, while idle, its last one) began (ms since the epoch). */
  lastRoundAt: number;
  brokerConnected: boolean;
  /** The outage behind the current backoff, or the error that stopped the loop. */
  problem?: {
    /** `internal`: an unexpected error of the dispatcher itself (a bug), retried like an outage. */
    target: 'broker' | 'database' | 'configuration' | 'internal';
    message: string;
  };
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

const FULL_SCAN = '0';
/** Longest `last_error` stored. */
const MAX_ERROR_CHARS = 2000;
const nextSeq = (seq: string | undefined) => (seq ? String(BigInt(seq) + 1n) : FULL_SCAN);

/**
 * One of the dispatcher's parallel loops. Lane i of n claims from the owned partitions p
 * with p mod n = i, so lanes never share an aggregate and never wait for each other's
 * rows; while one publishes, another claims, and their claims run side by side in the
 * database.
 */
class Lane {
  /**
   * Where the next claim starts looking (a seq). During a long drain each claim starts
   * after the last, instead of walking the dead index entries its predecessors left at
   * the head of the scan. Rows it steps over (held back, retried, claimed elsewhere,
   * committed late) are found by a full scan, which runs whenever a claim comes back
   * short, the partitions change, and at least every poll interval.
   */
  cursor = FULL_SCAN;
  lastFullScan = 0;
  readonly wakeup = new Wakeup();
  // Backoff after an outage waits out its delay: a NOTIFY must not cut it short (new
  // events are no reason to hit a server that is down), only stop() may.
  readonly stopRequested = new Wakeup();
  health: Omit<DispatcherHealth, 'brokerConnected'> = {
    state: 'stopped',
    since: Date.now(),
    lastRoundAt: 0,
  };

  constructor(
    readonly index: number,
    private readonly count: number,
  ) {}

  share(partitions: readonly number[]): number[] {
    return partitions.filter((p) => p % this.count === this.index);
  }

  enter(state: DispatcherHealth['state'], problem?: DispatcherHealth['problem']): void {
    if (state !== this.health.state || problem) {
      this.health = { ...this.health, state, since: Date.now(), problem };
    }
  }
}

class OutboxDispatcher extends EventEmitter implements Dispatcher {
  readonly stats: DispatcherStats = { published: 0, retried: 0, deadLettered: 0, batches: 0 };
  private readonly options: ResolvedDispatcherOptions;
  private readonly sql: ReturnType<typeof statements>;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private unlisten: (() => Promise<void>) | undefined;
  private listening: Promise<void> | undefined;
  private listenFailing = false;
  private brokerConnected = false;
  private connectingBroker: Promise<void> | undefined;
  private readonly ownership: PartitionOwnership;
  private partitions: number | undefined;
  /** One per batch in flight: each claims from its own share of the owned partitions. */
  private lanes: Lane[] = [];

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
        // New partitions have rows below every lane's cursor.
        for (const lane of this.lanes) {
          lane.cursor = FULL_SCAN;
          lane.wakeup.wake();
        }
      },
    );
  }

  /** The partitions this dispatcher claims from now (all of them on an embedded database). */
  ownedPartitions(): number[] {
    return this.ownership.partitions();
  }

  /**
   * The lanes together: stopped when none runs, else in backoff if any is, dispatching
   * if any is, idle otherwise; `lastRoundAt` of the longest-running round.
   */
  health(): DispatcherHealth {
    const states = this.lanes.map((lane) => lane.health);
    const pick =
      states.find((h) => h.state === 'backoff') ??
      states.find((h) => h.state === 'dispatching') ??
      states.find((h) => h.state === 'idle') ??
      states.find((h) => h.problem) ??
      states[0];
    const dispatching = states.filter((h) => h.state === 'dispatching');
    const lastRoundAt =
      dispatching.length > 0
        ? Math.min(...dispatching.map((h) => h.lastRoundAt))
        : (pick?.lastRoundAt ?? 0);
    return {
      state: pick?.state ?? 'stopped',
      since: pick?.since ?? 0,
      lastRoundAt,
      brokerConnected: this.brokerConnected,
      ...(pick?.problem ? { problem: pick.problem } : {}),
    };
  }

  private async partitionCount(): Promise<number> {
    this.partitions ??= await databaseWork(
      readPartitionCount(this.options.db, this.options.schema),
    );
    return this.partitions;
  }

  async start(): Promise<void> {
    if (this.loop) return;
    await assertSchemaCurrent(this.options.db, this.options.schema);
    this.stopping = false;
    const count = this.options.batchesInFlight;
    this.lanes = Array.from({ length: count }, (_, index) => new Lane(index, count));
    await this.ownership.start(await this.partitionCount());
    await this.listen();
    this.loop = Promise.all(this.lanes.map((lane) => this.run(lane))).then(() => {});
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const lane of this.lanes) {
      lane.wakeup.wake();
      lane.stopRequested.wake();
    }
    await this.loop;
    this.loop = undefined;
    await this.ownership.stop();
    await this.unlisten?.();
    this.unlisten = undefined;
    this.listening = undefined;
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

  /** LISTENs once for all lanes; a lost listening connection is retried by the next round. */
  private listen(): Promise<void> {
    if (!this.options.notify) return Promise.resolve();
    this.listening ??= this.startListening().catch(() => {
      this.listening = undefined;
    });
    return this.listening;
  }

  private async startListening(): Promise<void> {
    const { db, logger } = this.options;
    const wakeAll = () => {
      for (const lane of this.lanes) lane.wakeup.wake();
    };
    try {
      this.unlisten = await db.listen(notifyChannel(this.options.schema), wakeAll, (error) => {
        this.listening = undefined;
        this.listenFailing = true;
        this.unlisten = undefined;
        logger.warn(
          { err: errorMessage(error) },
          'notification connection lost; polling until it is back',
        );
      });
      // Notifications sent while we were not listening are gone: look once now.
      wakeAll();
    } catch (error) {
      // Once per outage, not once per round of the loop while the database is away.
      const level = this.listenFailing ? 'debug' : 'warn';
      this.listenFailing = true;
      logger[level]({ err: errorMessage(error) }, 'cannot listen for notifications; polling');
      throw error;
    }
    this.listenFailing = false;
  }

  /** One lane's loop: claim, publish, settle, one batch at a time, from its partitions. */
  private async run(lane: Lane): Promise<void> {
    const { logger, pollIntervalMs, retryBaseDelayMs, retryMaxDelayMs, batchSize } = this.options;
    let failures = 0;
    while (!this.stopping) {
      lane.health.lastRoundAt = Date.now();
      try {
        lane.enter('dispatching');
        if (!this.brokerConnected) await this.connectBroker();
        if (!this.listening) await this.listen();
        if (Date.now() - lane.lastFullScan >= pollIntervalMs) lane.cursor = FULL_SCAN;
        const from = lane.cursor;
        if (from === FULL_SCAN) lane.lastFullScan = Date.now();
        const report = await this.dispatchBatch(lane.share(this.ownership.partitions()), from);
        if (failures > 0) logger.info({ after: failures }, 'dispatching again');
        failures = 0;
        if (report.claimed === batchSize) {
          // More is probably waiting beyond this batch: go on from there.
          lane.cursor = nextSeq(report.lastSeq);
        } else {
          lane.cursor = FULL_SCAN;
          // A short claim from the cursor: look once more from the start before sleeping.
          // (Failed events are not claimable again until their retry time, so a full
          // batch of them cannot make this spin.)
          if (from === FULL_SCAN) {
            // Nothing to publish: make sure the broker is still there all the same.
            if (lane.index === 0) await this.checkBroker();
            lane.enter('idle');
            await lane.wakeup.sleep(pollIntervalMs);
          }
        }
      } catch (error) {
        if (this.stopping) break;
        if (error instanceof ConfigError || error instanceof SchemaVersionError) {
          // Retrying cannot fix a setting the broker or database refuses: stop and say so.
          logger.error({ err: errorMessage(error) }, 'dispatcher stopped: cannot go on');
          lane.enter('stopped', { target: 'configuration', message: errorMessage(error) });
          this.stopping = true;
          for (const other of this.lanes) {
            other.wakeup.wake();
            other.stopRequested.wake();
          }
          this.emit('fatal', error);
          break;
        }
        const delay = backoffDelayMs(failures, retryBaseDelayMs, retryMaxDelayMs);
        failures++;
        const target =
          error instanceof BrokerUnavailableError
            ? 'broker'
            : isDatabaseError(error)
              ? 'database'
              : 'internal';
        if (target === 'broker' && this.brokerConnected) {
          this.brokerConnected = false;
          await this.options.broker.close().catch(() => {});
        }
        const fields = {
          err: errorMessage(error),
          target,
          attempt: failures,
          retryInMs: delay,
          lane: lane.index,
        };
        if (target === 'internal') {
          logger.error(
            { ...fields, stack: error instanceof Error ? error.stack : undefined },
            'unexpected error in the dispatcher; retrying',
          );
        } else {
          logger.warn(fields, `${target} unavailable; retrying`);
        }
        this.emit('unavailable', { target, error, retryInMs: delay });
        lane.enter('backoff', { target, message: errorMessage(error) });
        await lane.stopRequested.sleep(delay);
      }
    }
    if (lane.health.state !== 'stopped') lane.enter('stopped');
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

  /** Connects the broker once for all lanes that find it disconnected. */
  private connectBroker(): Promise<void> {
    this.connectingBroker ??= this.connectBrokerNow().finally(() => {
      this.connectingBroker = undefined;
    });
    return this.connectingBroker;
  }

  private async connectBrokerNow(): Promise<void> {
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
  ): Promise<BatchReport & { lastSeq?: string }> {
    const { db, batchSize, logger } = this.options;
    if (partitions.length === 0)
      return { claimed: 0, published: 0, retried: 0, deadLettered: 0, held: 0 };
    const settled = await markDatabaseErrors(db, async (tx) => {
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
      const { messages, problems } = this.check(rows);
      const outcome = await publishInRounds(
        this.options.broker,
        messages,
        (round) =>
          publishTraced(this.options.broker.name, round, (traced) =>
            this.publishWithTimeout(traced),
          ),
        problems,
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
    const { dead, retriedMessages, lastSeq, outcome, acknowledgedAt, ...report } = settled;
    for (const { message, error, attempts } of dead) {
      logger.warn(
        {
          id: message.id,
          eventType: clip(message.eventType),
          aggregateId: clip(message.aggregateId),
          attempts,
          err: clip(error, 1000),
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
    const settledBatch: SettledBatch = {
      published: outcome.published,
      retried: retriedMessages,
      deadLettered: dead,
      acknowledgedAt,
    };
    this.emit('settled', settledBatch);
    return { ...report, lastSeq };
  }

  /**
   * The claimed rows as messages, and by seq why a row can never be published: unfit as a
   * CloudEvent (toMessage), or unfit for this broker (its `validate`).
   */
  private check(rows: readonly ClaimedRow[]): {
    messages: OutboxMessage[];
    problems: Map<string, string>;
  } {
    const { broker } = this.options;
    const messages: OutboxMessage[] = [];
    const problems = new Map<string, string>();
    for (const row of rows) {
      const { message, problem } = toMessage(row);
      messages.push(message);
      let refusal = problem;
      try {
        refusal ??= broker.validate?.(message);
      } catch {
        // A check that throws decides nothing: publishing will tell.
      }
      if (refusal) problems.set(message.seq, refusal);
    }
    return { messages, problems };
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
  ): Promise<
    BatchReport & {
      dead: { message: OutboxMessage; error: string; attempts: number }[];
      retriedMessages: { message: OutboxMessage; error: string }[];
    }
  > {
    const { maxAttempts, retryBaseDelayMs, retryMaxDelayMs, logger } = this.options;
    const retry: { seq: string; error: string; delay_ms: number }[] = [];
    const dead: { seq: string; error: string; attempts: number }[] = [];
    const deadMessages: { message: OutboxMessage; error: string; attempts: number }[] = [];
    const retriedMessages: { message: OutboxMessage; error: string }[] = [];
    for (const failure of outcome.failed) {
      const { message, permanent, invalid } = failure;
      // Stored and logged: a reason quoting a whole payload or id would bury the point.
      const error = clip(failure.error, MAX_ERROR_CHARS);
      if (invalid || message.attempts + 1 >= maxAttempts) {
        // A row unfit to publish was never sent: its attempts stay as they were.
        const attempts = invalid ? message.attempts : message.attempts + 1;
        dead.push({ seq: message.seq, error, attempts });
        deadMessages.push({ message, error, attempts });
      } else {
        retriedMessages.push({ message, error });
        retry.push({
          seq: message.seq,
          error,
          delay_ms: backoffDelayMs(message.attempts, retryBaseDelayMs, retryMaxDelayMs),
        });
        if (permanent)
          logger.debug({ id: message.id, err: clip(error) }, 'broker refused event; will retry');
      }
    }
    if (retry.length > 0) {
      logger.warn(
        { failed: retry.length, err: clip(retry[0]?.error ?? '') },
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
      retriedMessages,
    };
  }
}

/** The dispatcher: claims outbox rows in batches, publishes them, removes what the broker acknowledged. */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  return new OutboxDispatcher(options);
}
