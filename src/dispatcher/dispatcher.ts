import { EventEmitter } from 'node:events';
import { backoffDelayMs } from '../common/backoff.js';
import {
  BrokerUnavailableError,
  ConfigError,
  errorMessage,
  PrivilegeError,
  SchemaVersionError,
} from '../common/errors.js';
import { emitGuarded } from '../common/listeners.js';
import { RunEnd } from '../common/run-end.js';
import { clip } from '../common/text.js';
import {
  assertSchemaCurrent,
  assertSequencesUncached,
  autovacuumOff,
  readPartitionCount,
  readProducerNotify,
} from '../db/migrate.js';
import { assertPrivileges, type PrivilegedPart, privilegeErrorOf } from '../db/privileges.js';
import { connectionCheck, type Statements, statements } from '../db/sql/index.js';
import {
  type BatchContext,
  type BatchResult,
  type ClaimLook,
  type CommittedBatch,
  dispatchBatch,
} from './batch.js';
import { BrokerLink } from './broker-link.js';
import { databaseProblem, databaseWork, isDatabaseError } from './database-errors.js';
import type { BatchReport, DispatcherEvents, DispatcherStats, UnavailableEvent } from './events.js';
import { combineHealth, type DispatcherHealth } from './health.js';
import { DeadLetterJanitor } from './janitor.js';
import { FULL_SCAN, Lane, nextSeq } from './lane.js';
import {
  type DispatcherOptions,
  type ResolvedDispatcherOptions,
  resolveDispatcherOptions,
} from './options.js';
import { PartitionOwnership } from './ownership.js';
import { Notifications, WriteProbe } from './wakeup.js';

/**
 * How long an idle lane sleeps when no event waits for a retry: the write probe wakes it
 * for new events, the ownership rounds for partitions taken over, so this full look only
 * guards against what nothing announces (a row restored by hand, say).
 */
const IDLE_LOOK_MS = 30_000;

/**
 * How long a dispatcher sharing partitions keeps them while its broker does not answer:
 * past a restart or an election, short of leaving a replica's share stalled for good.
 */
const STEP_ASIDE_MS = 20_000;

/** A dispatcher: see `createDispatcher`. Its events are typed by `DispatcherEvents`. */
export interface Dispatcher extends EventEmitter<DispatcherEvents> {
  /**
   * Checks the schema, connects the broker (its stream, exchange or topics declared) and
   * starts the loop; rejects with the broker's error if it cannot be reached or refuses
   * the setup. With `waitForBroker: false` it starts at once and connects in the
   * background, retrying while the broker is down.
   */
  start(): Promise<void>;
  /**
   * Stops claiming, lets the batches in flight settle, closes the broker. Idempotent;
   * waits for a `start()` under way first.
   */
  stop(): Promise<void>;
  /**
   * Settles once the dispatcher last started has stopped and released the broker and its
   * database sessions: resolves after `stop()` (or the `signal`'s abort); rejects with the
   * error when the loop stopped by itself because retrying cannot help (the `fatal`
   * event's error: a broker refusing its configuration, a schema that changed), or when
   * `start()` failed. A rejection nobody awaits is dropped, never an unhandled rejection.
   */
  readonly closed: Promise<void>;
  /**
   * Publishes until no claimable row is left, then resolves with the count published.
   * For scripts and tests on a dispatcher that is not started (a started one rejects);
   * drains asked for together run one after another, each counting its own.
   */
  drain(): Promise<number>;
  /** The partitions this dispatcher claims from now (all of them on an embedded database). */
  ownedPartitions(): number[];
  /** What the loop is doing now. */
  health(): DispatcherHealth;
  readonly stats: Readonly<DispatcherStats>;
}

class OutboxDispatcher extends EventEmitter<DispatcherEvents> implements Dispatcher {
  override emit<K extends keyof DispatcherEvents>(event: K, ...args: DispatcherEvents[K]): boolean {
    return emitGuarded(this, this.options.logger, event, args);
  }

  readonly stats: DispatcherStats = {
    published: 0,
    retried: 0,
    deadLettered: 0,
    batches: 0,
    deadLettersPurged: 0,
  };
  private readonly options: ResolvedDispatcherOptions;
  private readonly sql: Statements;
  private readonly link: BrokerLink;
  private readonly notifications: Notifications;
  private readonly probe: WriteProbe;
  /** LISTEN only where the schema's insert trigger sends NOTIFY (read at start). */
  private listen = false;
  private lastBrokerCheck = 0;
  private readonly ownership: PartitionOwnership;
  /** With `deadLetterRetentionMs`: deletes the dead letters past it while running. */
  private readonly janitor: DeadLetterJanitor | undefined;
  private readonly batch: BatchContext;
  private loop: Promise<void> | undefined;
  private stopping = false;
  /** When stop() began on a running loop, until it has stopped. */
  private stoppingSince: number | undefined;
  /** The start under way, which a stop waits for. */
  private starting: Promise<void> | undefined;
  /** The last drain() asked for; a start() waits for it. */
  private draining: Promise<number> | undefined;
  /** The stop under way or done, shared by stop(), the signal and a fatal error. */
  private stopped: Promise<void> | undefined;
  /** What ended the loop by itself, for `closed` to reject with. */
  private fatalError: Error | undefined;
  private end = new RunEnd();
  private readonly onAbort = () => {
    // A failure to release shows in `closed`.
    this.stop().catch(() => {});
  };
  private partitions: number | undefined;
  /** One per batch in flight: each claims from its own share of the owned partitions. */
  private lanes: Lane[] = [];
  /**
   * Between backlogs, lane 0 alone claims, from every owned partition; the others join
   * (each over its share) when a claim comes back full, and leave when all are idle again.
   * Steady traffic gives each claim a few events: one lane claiming where n would send
   * n claims to the database for the same events, most of them finding nothing.
   */
  private solo = true;
  /**
   * The outage under way: the highest step logged for each thing that failed (the
   * database, the broker, or an unexpected error by its message). Lanes fail together and
   * back off side by side, so a step one lane logged is not logged again by the others,
   * nor is an earlier step by a lane that started failing later. Cleared by the first lane
   * that dispatches again.
   */
  private readonly outage = new Map<string, number>();
  /** Since when connecting to the broker, or a round trip to it, has failed, if it does. */
  private unreachableSince: number | undefined;

  constructor(options: DispatcherOptions) {
    super();
    this.options = resolveDispatcherOptions(options);
    const { db, schema, rebalanceIntervalMs, logger, broker, publishTimeoutMs } = this.options;
    this.sql = statements(schema);
    this.link = new BrokerLink(broker, publishTimeoutMs, logger);
    const wakeAll = () => this.wakeForWrites();
    this.notifications = new Notifications(db, schema, logger, wakeAll);
    this.probe = new WriteProbe({
      db,
      sql: this.sql,
      logger,
      minMs: this.options.wakeProbeMinMs,
      maxMs: this.options.wakeProbeMaxMs,
      retryMs: this.options.pollIntervalMs,
      onWrite: wakeAll,
      busy: () => this.lanes.some((lane) => lane.health.state === 'dispatching'),
    });
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
          lane.forget();
          lane.wakeup.wake();
        }
      },
    );
    const retentionMs = this.options.deadLetterRetentionMs;
    this.janitor =
      retentionMs === undefined
        ? undefined
        : new DeadLetterJanitor({
            db,
            schema,
            retentionMs,
            intervalMs: this.options.deadLetterPurgeIntervalMs,
            logger,
            onPurged: (deadLetters, before) => {
              this.stats.deadLettersPurged += deadLetters;
              this.emit('purged', { deadLetters, before });
            },
          });
    this.batch = {
      ...this.options,
      sql: this.sql,
      link: this.link,
    };
  }

  ownedPartitions(): number[] {
    return this.ownership.partitions();
  }

  health(): DispatcherHealth {
    const health = combineHealth(
      this.lanes.map((lane) => lane.health),
      this.link.connected,
    );
    // Asked to stop and not yet stopped; a fatal error's stop shows as stopped, with it.
    if (this.stoppingSince !== undefined && !this.fatalError) {
      return { ...health, state: 'stopping', since: this.stoppingSince };
    }
    return health;
  }

  get closed(): Promise<void> {
    return this.end.promise;
  }

  start(): Promise<void> {
    this.starting ??= this.begin().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async begin(): Promise<void> {
    // A stop under way finishes first; then this is a new run, with a `closed` of its own.
    await this.stopped?.catch(() => {});
    await this.draining?.catch(() => {});
    if (this.loop) return;
    const { db, schema, signal, logger } = this.options;
    this.stopped = undefined;
    this.fatalError = undefined;
    if (this.end.settled) this.end = new RunEnd();
    if (signal?.aborted) {
      // Stopped before it started: a clean stop, but start() says why nothing runs.
      this.end.resolve();
      throw signal.reason;
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
    try {
      // First: a role that may not use the schema would otherwise be told it is not migrated.
      await assertPrivileges(db, schema, this.privilegedParts(), logger);
      await assertSchemaCurrent(db, schema);
      await assertSequencesUncached(db, schema);
      // Before anything else starts, so a refusal leaves nothing to stop (a broker whose
      // connect fails releases what it opened, as on every reconnect).
      if (this.options.waitForBroker) await this.link.ensure();
      this.stopping = false;
      const count = this.options.batchesInFlight;
      this.lanes = Array.from({ length: count }, (_, index) => new Lane(index, count));
      this.solo = true;
      this.outage.clear();
      await this.ownership.start(await this.partitionCount());
      this.listen = this.options.notify && (await databaseWork(readProducerNotify(db, schema)));
      if (this.listen) await this.notifications.ensure();
      await this.probe.start();
      // Last: a start refused for a setting (a pooler, the broker) says that alone.
      await this.warnWithoutVacuum();
    } catch (error) {
      signal?.removeEventListener('abort', this.onAbort);
      this.end.reject(error);
      throw error;
    }
    this.loop = Promise.all(this.lanes.map((lane) => this.run(lane))).then(() => {});
    this.janitor?.start();
    logger.info(
      {
        schema,
        broker: this.link.name,
        batchSize: this.options.batchSize,
        batchesInFlight: this.options.batchesInFlight,
        // Whether it LISTENs for the producers' NOTIFY (migrate --producer-notify on).
        listening: this.listen,
        ...(this.janitor && { deadLetterRetentionMs: this.options.deadLetterRetentionMs }),
      },
      'dispatcher started',
    );
  }

  /**
   * Says at start when nothing reclaims the outbox's dead rows. Not on an embedded
   * database (one process, which vacuums as its host decides); a failed look says nothing.
   */
  private async warnWithoutVacuum(): Promise<void> {
    const { db, schema, logger } = this.options;
    if (!db.session) return;
    const off = await autovacuumOff(db, schema).catch(() => undefined);
    if (off === undefined) return;
    logger.warn(
      { schema },
      `${off}: the outbox's published rows stay as dead rows, the table and its indexes grow for good, and each claim reads further past them; turn autovacuum on, or VACUUM the outbox often (docs/operations.md, Autovacuum)`,
    );
  }

  /** What this dispatcher does that needs privileges (see db/privileges.ts). */
  private privilegedParts(): PrivilegedPart[] {
    return this.janitor ? ['dispatch', 'dispatch-retention'] : ['dispatch'];
  }

  /**
   * Stops the loop and releases what the run holds, each part even when another fails;
   * then settles `closed`: rejected with the fatal error if one ended the loop, or with
   * the first failure to release, else resolved.
   */
  private async shutdown(): Promise<void> {
    if (this.loop !== undefined || this.starting) this.stoppingSince ??= Date.now();
    await this.starting?.catch(() => {});
    const running = this.loop !== undefined;
    this.stopping = true;
    for (const lane of this.lanes) lane.interrupt();
    let failure: { error: unknown } | undefined;
    for (const release of [
      () => this.loop,
      () => this.janitor?.stop(),
      () => this.probe.stop(),
      () => this.ownership.stop(),
      () => this.notifications.stop(),
      () => this.link.close(),
    ]) {
      try {
        await release();
      } catch (error) {
        failure ??= { error };
      }
    }
    this.loop = undefined;
    this.stoppingSince = undefined;
    this.options.signal?.removeEventListener('abort', this.onAbort);
    if (this.fatalError) {
      this.end.reject(this.fatalError);
    } else if (failure) {
      this.end.reject(failure.error);
    } else {
      if (running) this.options.logger.info({ ...this.stats }, 'dispatcher stopped');
      this.end.resolve();
    }
    if (failure) throw failure.error;
  }

  drain(): Promise<number> {
    if (this.loop || this.starting) {
      return Promise.reject(
        new Error(
          "drain() is for a dispatcher that is not started: this one publishes on its own (its 'settled' event reports each batch); stop() it before draining",
        ),
      );
    }
    // One at a time: each counts what it published, and none resolves before its own
    // pass has found nothing claimable.
    const previous = this.draining ?? Promise.resolve(0);
    const drained = previous.catch(() => 0).then(() => this.drainOnce());
    this.draining = drained;
    return drained;
  }

  private async drainOnce(): Promise<number> {
    // The schema first: a missing or older one is named as start() names it.
    await assertSchemaCurrent(this.options.db, this.options.schema);
    await this.link.ensure();
    const before = this.stats.published;
    // Failed events wait for their retry time and their aggregates' later events wait
    // behind them, so the claim comes back empty once nothing is claimable right now.
    // A drain claims from every partition: the claim alone keeps aggregates in order.
    const all = Array.from({ length: await this.partitionCount() }, (_, p) => p);
    for (const lane of this.lanes) lane.forget();
    const { batchSize } = this.options;
    // Passes over the whole outbox, each going on after a full batch (though all of it
    // was held back behind other claims), until one claims nothing.
    for (let claimed = 1; claimed > 0; ) {
      claimed = 0;
      for (let from = FULL_SCAN; ; ) {
        const report = await this.dispatch(all, from);
        claimed += report.claimed;
        if (report.returned < batchSize) break;
        from = nextSeq(report.lastReturnedSeq);
      }
    }
    return this.stats.published - before;
  }

  private async partitionCount(): Promise<number> {
    this.partitions ??= await databaseWork(
      readPartitionCount(this.options.db, this.options.schema),
    );
    return this.partitions;
  }

  /** One lane's loop: claim, publish, settle, one batch at a time, from its partitions. */
  private async run(lane: Lane): Promise<void> {
    const { logger, pollIntervalMs, batchSize } = this.options;
    let failures = 0;
    while (!this.stopping) {
      lane.health.lastRoundAt = Date.now();
      try {
        lane.enter('dispatching');
        // Back among the dispatchers sharing the partitions once the broker answers a round
        // trip, not merely a connection.
        await this.reachBroker(this.ownership.isAside);
        this.ownership.rejoin();
        if (this.listen && !this.notifications.active) await this.notifications.ensure();
        if (Date.now() - lane.lastFullScan >= pollIntervalMs) lane.cursor = FULL_SCAN;
        const from = lane.cursor;
        if (from === FULL_SCAN) lane.lastFullScan = Date.now();
        const partitions = this.claimFrom(lane);
        // A claim from no partition asks the database nothing. During an outage, or with
        // the partitions gone with the ownership's session, ask it directly: otherwise the
        // round succeeds with the database away, ends the outage and stops reporting it.
        if (partitions.length === 0 && (failures > 0 || this.ownership.lost)) {
          await databaseWork(this.options.db.query(connectionCheck));
        }
        const report = await this.dispatch(partitions, from, lane.look(partitions, from));
        lane.learn(partitions, from, report);
        if (failures > 0 && this.outage.size > 0) {
          logger.info({ after: failures }, 'dispatching again');
          this.outage.clear();
        }
        if (failures > 0) {
          // The outage is over for this lane: the others, still sleeping out their backoff
          // (up to retryMaxDelayMs), try again now instead of leaving their partitions
          // waiting and readiness saying the outage goes on.
          for (const other of this.lanes) {
            if (other !== lane && other.health.state === 'backoff') {
              other.stopRequested.interruptSleep();
            }
          }
        }
        failures = 0;
        // Events came: what is held back next starts a fresh series of quick looks.
        if (report.claimed > 0) lane.clearRecheck();
        const pass = lane.passed(from, report);
        if (report.returned === batchSize) {
          // More is probably waiting beyond this batch: go on from there, with every lane
          // when it was all claimable. A batch held back behind other claims goes on too
          // (events of other aggregates may wait beyond it; the next look from the start
          // comes back for these), but alone: that is no backlog to spread.
          lane.cursor = nextSeq(report.lastReturnedSeq);
          if (this.solo && report.claimed === batchSize) this.spread();
        } else {
          lane.cursor = FULL_SCAN;
          // A short claim from the cursor: look once more from the start before sleeping,
          // unless this pass from the start published nothing and other claims held its
          // events back (their end moves no sequence: look again soon, not at once). A
          // batch that held events back behind one that failed or was dead-lettered looks
          // again at once too: those may be claimable now. (A failed event is not
          // claimable again until its retry time, so neither can make this spin.)
          if ((from === FULL_SCAN && report.held === 0) || pass.heldInVain) {
            lane.enter('idle');
            if (!this.solo && this.lanes.every((other) => other.health.state !== 'dispatching')) {
              this.gather();
            }
            await this.idle(lane, {
              ...report,
              claimedElsewhere: report.claimedElsewhere || pass.heldInVain,
            });
          }
        }
      } catch (error) {
        lane.forget();
        if (this.stopping) break;
        // A privilege revoked while running: retrying would publish the batch again and
        // again (its settle refused), so stop and say what to grant.
        const refused = await privilegeErrorOf(
          error,
          this.options.db,
          this.options.schema,
          this.privilegedParts(),
        );
        if (this.stopping) break;
        if (
          refused ||
          error instanceof ConfigError ||
          error instanceof SchemaVersionError ||
          error instanceof PrivilegeError
        ) {
          this.fail(lane, refused ?? (error as Error));
          break;
        }
        await this.backOff(lane, error, failures++);
      }
    }
    if (lane.health.state !== 'stopped') lane.enter('stopped');
  }

  /** The partitions `lane` claims from now: all owned ones for lane 0 alone, else its share. */
  private claimFrom(lane: Lane): number[] {
    const owned = this.ownership.partitions();
    if (!this.solo) return lane.share(owned);
    return lane.index === 0 ? owned : [];
  }

  /** New events were written: lane 0 looks when alone, else every lane. */
  private wakeForWrites(): void {
    for (const lane of this.solo ? this.lanes.slice(0, 1) : this.lanes) lane.wakeup.wake();
  }

  /** A backlog: every lane claims, each from its share. */
  private spread(): void {
    this.solo = false;
    for (const lane of this.lanes) lane.wakeup.wake();
  }

  /**
   * Every lane is idle: lane 0 takes every partition again. It looks at once, from the
   * start, for what open writers held back in the others' shares.
   */
  private gather(): void {
    this.solo = true;
    // Lane 0 claims from the others' shares now.
    for (const lane of this.lanes) lane.forget();
    const first = this.lanes[0];
    if (!first) return;
    first.cursor = FULL_SCAN;
    first.wakeup.wake();
  }

  /**
   * Between claims with nothing to claim. Open writers, or another claim of an earlier
   * event, held events back: look again soon (their end moves nothing the probe sees).
   * Else sleep until the wake-up says events were written, or until a retry may have come
   * due (poll interval) when one waits, or the safety net's full look; lane 0 asks the
   * broker for a round trip every poll interval meanwhile, so an outage shows in
   * readiness while idle too.
   */
  private async idle(
    lane: Lane,
    found: { writersOpen: boolean; claimedElsewhere: boolean; retrying: boolean },
  ): Promise<void> {
    const { pollIntervalMs, wakeProbeMinMs } = this.options;
    // The probe skipped its looks while this lane's batch was under way.
    this.probe.lookNow();
    if (found.writersOpen || found.claimedElsewhere) {
      await lane.wakeup.sleep(lane.recheckMs(wakeProbeMinMs, pollIntervalMs));
      return;
    }
    lane.clearRecheck();
    const until =
      Date.now() + (found.retrying ? pollIntervalMs : Math.max(pollIntervalMs, IDLE_LOOK_MS));
    while (!this.stopping) {
      if (lane.index === 0 && Date.now() - this.lastBrokerCheck >= pollIntervalMs) {
        this.lastBrokerCheck = Date.now();
        await this.reachBroker(true);
      }
      const left = until - Date.now();
      if (left <= 0) return;
      if (await lane.wakeup.sleep(Math.min(left, pollIntervalMs))) return;
    }
  }

  /**
   * Retrying cannot fix a setting the broker or database refuses: say so, stop, and
   * release the broker and the database sessions; `closed` then rejects with the error.
   */
  private fail(lane: Lane, error: Error): void {
    this.options.logger.error({ err: errorMessage(error) }, 'dispatcher stopped: cannot go on');
    lane.enter('stopped', { target: 'configuration', message: errorMessage(error) });
    this.fatalError = error;
    this.stopping = true;
    for (const other of this.lanes) other.interrupt();
    // Started before the event, so a listener's own stop() joins this one.
    this.stop().catch(() => {});
    this.emit('fatal', error);
  }

  /**
   * After a failed round: says what failed (only a database error is a database outage),
   * drops the broker after a broker outage, and waits the backoff out (stop() cuts it short).
   */
  private async backOff(lane: Lane, error: unknown, failures: number): Promise<void> {
    const { logger, retryBaseDelayMs, retryMaxDelayMs } = this.options;
    const delay = backoffDelayMs(failures, retryBaseDelayMs, retryMaxDelayMs);
    const target: UnavailableEvent['target'] =
      error instanceof BrokerUnavailableError
        ? 'broker'
        : isDatabaseError(error)
          ? 'database'
          : 'internal';
    if (target === 'broker') {
      await this.link.drop();
      this.stepAsideFromBroker();
    }
    const fields = {
      err: target === 'database' ? databaseProblem(error) : errorMessage(error),
      target,
      attempt: failures + 1,
      retryInMs: delay,
      lane: lane.index,
    };
    // One outage of the database or the broker, whatever each lane's error says of it (a
    // cut connection, then a refused one); an unexpected error is told by its message.
    const key = target === 'internal' ? `internal: ${fields.err}` : target;
    // Another lane may have logged this step of the same outage, or a later one, already.
    if ((this.outage.get(key) ?? 0) < fields.attempt) {
      this.outage.set(key, fields.attempt);
      if (target === 'internal') {
        logger.error(
          { ...fields, stack: error instanceof Error ? error.stack : undefined },
          'unexpected error in the dispatcher; retrying',
        );
      } else {
        logger.warn(fields, `${target} unavailable; retrying`);
      }
    }
    this.emit('unavailable', { target, error, retryInMs: delay, lane: lane.index });
    lane.enter('backoff', { target, message: fields.err });
    await lane.stopRequested.sleep(delay);
  }

  /**
   * Connects to the broker unless connected and, with `roundTrip`, asks it for a round
   * trip; notes since when that has failed (a publish refused or timed out, by a broker
   * that answers, is not this: it fails for the other dispatchers too).
   */
  private async reachBroker(roundTrip: boolean): Promise<void> {
    try {
      await this.link.ensure();
      if (roundTrip) await this.link.check();
    } catch (error) {
      this.unreachableSince ??= Date.now();
      throw error;
    }
    this.unreachableSince = undefined;
  }

  /**
   * A broker out of reach for STEP_ASIDE_MS (no connection, or no answer to a round trip):
   * the partitions this dispatcher owns would wait for it while other dispatchers may
   * reach theirs (a bad host or credentials in one replica's settings, a network cut
   * between it and the broker), so it gives them back until it reaches the broker again.
   * When the broker is down for all, each steps aside in turn but the last, and they
   * share the partitions out again as they reconnect.
   */
  private stepAsideFromBroker(): void {
    if (this.unreachableSince === undefined) return;
    const downMs = Date.now() - this.unreachableSince;
    if (downMs < STEP_ASIDE_MS || !this.ownership.stepAside()) return;
    this.options.logger.warn(
      { target: 'broker', downMs, partitions: this.ownership.partitions() },
      `the broker could not be reached for ${Math.round(downMs / 1000)} s: this dispatcher gives its partitions to the others until it reaches the broker again`,
    );
  }

  /** One batch, and once it is committed (a rolled-back batch did nothing), its events. */
  private async dispatch(
    partitions: readonly number[],
    from: string,
    look?: ClaimLook,
  ): Promise<BatchReport & Omit<BatchResult, 'committed'>> {
    const { committed, ...found } = await dispatchBatch(this.batch, partitions, from, look);
    if (!committed) {
      return { claimed: 0, published: 0, retried: 0, deadLettered: 0, held: 0, ...found };
    }
    this.report(committed);
    return { ...committed.report, ...found };
  }

  private report({ report, events }: CommittedBatch): void {
    for (const { message, error, attempts } of events.deadLettered) {
      this.options.logger.warn(
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
    this.emit('settled', events);
  }
}

/**
 * The dispatcher: claims outbox rows in batches, publishes them, removes what the broker
 * acknowledged. Subscribe to its typed events (`DispatcherEvents`) for monitoring.
 */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  return new OutboxDispatcher(options);
}
