import { EventEmitter } from 'node:events';
import { purgeInbox } from '../admin/consumer-dead-letters.js';
import { sourceFromUrl } from '../brokers/index.js';
import type { Delivery, MessageSource, ResumePoints } from '../brokers/source.js';
import { backoffDelayMs } from '../common/backoff.js';
import {
  BrokerUnavailableError,
  ConfigError,
  errorMessage,
  OutboxError,
  PrivilegeError,
  SchemaVersionError,
  UNREADABLE_THROWN,
} from '../common/errors.js';
import { emitGuarded } from '../common/listeners.js';
import { RunEnd } from '../common/run-end.js';
import { withTimeout } from '../common/timeout.js';
import { isDatabaseUnavailable, waitedForPool } from '../db/connection-errors.js';
import { DatabaseClosedError, type DatabaseSession } from '../db/database.js';
import { assertSchemaCurrent } from '../db/migrate.js';
import { hasSqlState } from '../db/missing-table.js';
import {
  assertPrivileges,
  INSUFFICIENT_PRIVILEGE,
  missingPrivileges,
  type PrivilegedPart,
  privilegeErrorOf,
} from '../db/privileges.js';
import { statements } from '../db/sql/index.js';
import type { AnyEventDefinition, ConsumedEvent } from './event.js';
import type { Consumer, ConsumerEvents, ConsumerHealth, ConsumerStats } from './events.js';
import { acceptStale, inboxOutcome, StaleEventError } from './inbox.js';
import {
  type ConsumeOptions,
  type ConsumerSettings,
  type HandlerContext,
  resolveConsumeOptions,
} from './options.js';
import { AggregateQueues } from './order.js';
import {
  keepRetries,
  type ParkedFields,
  parkMessage,
  type RetryDelivery,
  takeRetryDeliveries,
  unstorable,
} from './park.js';
import { startTally } from './tally.js';
import { RejectedMessage, toConsumedEvent } from './typed.js';

type Handler = (event: ConsumedEvent, context: HandlerContext) => unknown;

interface Work {
  delivery: Delivery;
  generation: number;
  /** Taken from the consumer's dead letters by an operator's `dead retry`. */
  retry?: boolean;
  /**
   * That dead letter was parked for being older than its aggregate's last applied event,
   * so the operator who retried it saw that: the inbox applies it after all.
   */
  retryStale?: boolean;
}

/**
 * Receives the events of `options.events` from a broker and hands each to `handler`, one
 * aggregate at a time in `sequence` order, different aggregates at once. Resolves once
 * receiving (or standing by for another process of the same consumer name); rejects with
 * ConfigError on a setting the broker refuses, or BrokerUnavailableError when the broker
 * cannot be reached within `startTimeoutMs`.
 *
 * A handler that throws is retried in this process, with backoff, while its aggregate's
 * later events wait (a redelivery by the broker could overtake them); after
 * `maxAttempts` the message is parked as a consumer dead letter and acked.
 */
export async function consume<const Defs extends readonly AnyEventDefinition[]>(
  options: ConsumeOptions<Defs>,
): Promise<Consumer> {
  const settings = resolveConsumeOptions(options);
  const consumer = new BrokerConsumer(settings, options.handler as Handler);
  startTally(consumer);
  await consumer.start();
  return consumer;
}

/**
 * How often the retries in flight are marked as still taken: well within the 15 minutes
 * after which another start takes a retry as abandoned (consumer-dead-letter.ts).
 */
const RETRY_KEEP_MS = 60_000;

/** Serialization failures and deadlocks in a row a handler's event is run again for, spending no attempt. */
const MAX_CONFLICTS = 50;

/** A serialization failure (40001) or deadlock (40P01): the transaction may run again. */
/** How long the check that the database answers waits, when a handler's error looks like its outage. */
const DATABASE_CHECK_MS = 2_000;

function conflicted(error: unknown): boolean {
  return hasSqlState(error, '40001') || hasSqlState(error, '40P01');
}

/**
 * What a handler threw, as the consumer can read it: the value itself, or, when reading
 * it throws (a getter that throws, an object without a prototype, a revoked proxy), an
 * Error saying so. Unreadable, it failed the consumer's own bookkeeping, and the message
 * stayed in flight for good while its aggregate's later events went past it.
 */
function readable(thrown: unknown): unknown {
  try {
    // The inbox's refusal of a late event, as thrown or rethrown by the handler as the
    // cause of its own error (a framework's wrapper, say): parked as stale at once.
    let cause = thrown;
    for (let depth = 0; depth < 5 && cause instanceof Error; depth++) {
      if (cause instanceof StaleEventError) return cause;
      cause = cause.cause;
    }
    conflicted(thrown);
    hasSqlState(thrown, INSUFFICIENT_PRIVILEGE);
    isDatabaseUnavailable(thrown);
    waitedForPool(thrown);
    String(errorMessage(thrown));
    return thrown;
  } catch {
    // Its message when that much reads (an Error whose `cause` getter throws, say).
    const message = errorMessage(thrown);
    return new Error(
      message === UNREADABLE_THROWN
        ? `${message} (reading it throws)`
        : `${message} (reading the rest of the thrown value throws)`,
    );
  }
}

/**
 * The server refused this login for good (a wrong password, a role or database that does
 * not exist): retrying cannot help, so consume() rejects with the driver's error at once.
 */
function refusesLogin(error: unknown): boolean {
  return ['28P01', '28000', '3D000'].some((state) => hasSqlState(error, state));
}

class BrokerConsumer extends EventEmitter<ConsumerEvents> implements Consumer {
  override emit<K extends keyof ConsumerEvents>(event: K, ...args: ConsumerEvents[K]): boolean {
    return emitGuarded(this, this.settings.logger, event, args);
  }

  readonly stats: ConsumerStats = {
    received: 0,
    processed: 0,
    duplicates: 0,
    stale: 0,
    failed: 0,
    parked: 0,
    skipped: 0,
    inboxPurged: 0,
  };
  private state: ConsumerHealth['state'] = 'starting';
  /** Why the database could not be used, while that is what keeps the consumer from starting. */
  private databaseError: unknown;
  private reason: string | undefined;
  private readonly queues: AggregateQueues;
  private readonly inFlight = new Set<Delivery>();
  /** The reasons a message was skipped for, each logged once (sayFirstSkip). */
  private readonly skipReasons = new Set<string>();
  private readonly otherAggregateReasons = new Set<string>();
  private readonly definitions: Map<string, AnyEventDefinition>;
  private source: MessageSource | undefined;
  private lease: DatabaseSession | undefined;
  /** Bumped whenever the source is replaced: work delivered by an older one is not started. */
  private generation = 0;
  /** `<database>/<schema>` of the inbox, known once the schema was checked. */
  private inbox: string | undefined;
  private stopping = false;
  private readonly stopped: Promise<void>;
  private signalStopped: () => void = () => {};
  private loop: Promise<void> | undefined;
  /** Settled by stop(): rejected with `fatalError` when that ended the loop by itself. */
  private readonly end = new RunEnd();
  private fatalError: Error | undefined;
  private takingRetries = false;
  /** Retries taken from the dead letters and not yet settled: kept taken, given back at stop. */
  private readonly retriesInFlight = new Map<Delivery, RetryDelivery>();
  private purging = false;
  /** Aborted when stop() gives up waiting for the handlers in flight; each handler's context. */
  private readonly abandoned = new AbortController();
  private readonly context: HandlerContext = { signal: this.abandoned.signal };
  /** Settles when the handlers in flight at stop() finished, or stop() stopped waiting. */
  private finishing: Promise<void> | undefined;
  /** Ends the source's run with an error retrying cannot mend (a privilege refused mid-run). */
  private stopWith: (error: ConfigError | PrivilegeError) => void = () => {};

  /**
   * True, after stopping the consumer, for the error of its database closed under it: no
   * retry can mend that, so it stops with it instead of retrying for good, as the
   * dispatcher does.
   */
  private stoppedByClosedDatabase(error: unknown): boolean {
    if (!(error instanceof DatabaseClosedError)) return false;
    this.stopWith(error);
    return true;
  }

  constructor(
    private readonly settings: ConsumerSettings,
    private readonly handler: Handler,
  ) {
    super();
    this.stopped = new Promise((resolve) => {
      this.signalStopped = resolve;
    });
    this.queues = new AggregateQueues(settings.concurrency);
    this.definitions = new Map(settings.events.map((definition) => [definition.type, definition]));
  }

  health(): ConsumerHealth {
    return { state: this.state, reason: this.reason, inFlight: this.inFlight.size };
  }

  async backlog(): Promise<number | undefined> {
    const source = this.source;
    if (!source || this.state !== 'receiving') return undefined;
    return source.backlog();
  }

  get closed(): Promise<void> {
    return this.end.promise;
  }

  async start(): Promise<void> {
    let running = false;
    const started = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const reason = this.reason ?? 'no answer';
        const database = this.databaseError;
        void this.stop();
        const text = `consumer ${this.settings.consumer}: not started within ${this.settings.startTimeoutMs} ms`;
        reject(
          database === undefined
            ? new BrokerUnavailableError(`${text}: ${reason}`)
            : new OutboxError(
                'DATABASE_UNAVAILABLE',
                `${text}: the database cannot be reached: ${errorMessage(database)}`,
                { cause: database },
              ),
        );
      }, this.settings.startTimeoutMs);
      const onState = (state: ConsumerHealth['state']) => {
        if (state !== 'receiving' && state !== 'standby') return;
        clearTimeout(timer);
        this.off('state', onState);
        resolve();
      };
      this.on('state', onState);
      this.loop = this.run().catch((error) => {
        clearTimeout(timer);
        this.off('state', onState);
        reject(error);
        // After start resolved, nobody hears that rejection: say it, and stop.
        if (running) this.fail(error);
      });
    });
    await started;
    running = true;
  }

  /** The loop stopped by itself, since retrying cannot help: `fatal`, then stop() settles `closed`. */
  private fail(error: unknown): void {
    this.fatalError = error instanceof Error ? error : new Error(String(error));
    this.settings.logger.error(
      { consumer: this.settings.consumer, err: errorMessage(error) },
      'consumer stopped: cannot go on',
    );
    this.emit('fatal', this.fatalError);
    void this.stop();
  }

  async stop(): Promise<void> {
    if (this.stopping) {
      await this.loop?.catch(() => {});
      return;
    }
    this.stopping = true;
    // Not ready from here on: the handlers in flight may take their time (or hang).
    this.setState('stopping', 'stop() was called: finishing the handlers in flight');
    this.signalStopped();
    await this.source?.pause().catch(() => {});
    await this.finishHandlers();
    // Retries taken and not finished (queued behind their aggregate, or left running past
    // stopTimeoutMs) go back, for the next start to take.
    await Promise.all([...this.retriesInFlight.keys()].map((delivery) => this.giveBack(delivery)));
    await this.loop?.catch(() => {});
    if (this.fatalError) this.end.reject(this.fatalError);
    else this.end.resolve();
  }

  /**
   * Waits for the handlers in flight (what waits behind them is not started), at most
   * stopTimeoutMs from the first call. Past it, their messages stay unacked, for the
   * broker to deliver again once the source is closed, and their signal aborts.
   */
  private finishHandlers(): Promise<void> {
    this.finishing ??= (async () => {
      const { stopTimeoutMs, consumer, logger } = this.settings;
      // idle() never rejects: a rejection is the timeout.
      const finished = await withTimeout(this.queues.idle(), stopTimeoutMs).then(
        () => true,
        () => false,
      );
      if (finished) return;
      const unacked = this.inFlight.size;
      const reason = `stop() waited ${stopTimeoutMs} ms (stopTimeoutMs) for the handlers in flight`;
      this.abandoned.abort(new OutboxError('STOP_TIMEOUT', reason));
      logger.warn(
        { consumer, unacked, origins: [...this.inFlight].slice(0, 10).map((d) => d.origin) },
        `${reason}; stopping without them: their ${unacked === 1 ? 'message is' : `${unacked} messages are`} not acked and will be delivered again`,
      );
    })();
    return this.finishing;
  }

  private setState(state: ConsumerHealth['state'], reason?: string): void {
    // Once stopping, only `stopped` follows; stopped is the end (its reason kept).
    if (this.state === 'stopped' || (this.state === 'stopping' && state !== 'stopped')) return;
    this.reason = reason;
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  /** Lease (where needed) → start the source → wait until it is lost or stopped → again. */
  private async run(): Promise<void> {
    let failures = 0;
    let schemaChecked = false;
    while (!this.stopping) {
      const lost = this.stopped.then(() => undefined);
      let leaseCheck: NodeJS.Timeout | undefined;
      // Which side a failure is on, until the source starts: the database's first.
      let onDatabase = true;
      try {
        // A schema without the consumer's tables (not migrated, or a wrong name) fails
        // every message; say so at once. A database that cannot be reached is retried.
        if (!schemaChecked) {
          // First: a role that may not use the schema would be told it is not migrated.
          await assertPrivileges(
            this.settings.database,
            this.settings.schema,
            this.privileged(),
            this.settings.logger,
          );
          await assertSchemaCurrent(this.settings.database, this.settings.schema);
          await this.warnWithoutInboxGrants();
          const { rows } = await this.settings.database.query<{ database: string }>(
            statements(this.settings.schema).consumerDatabase,
          );
          this.inbox = `${rows[0]?.database ?? ''}/${this.settings.schema}`;
          schemaChecked = true;
        }
        const source = sourceFromUrl(this.settings.broker, {
          consumer: this.settings.consumer,
          maxInFlight: this.settings.maxInFlight,
          events: this.settings.events,
          logger: this.settings.logger,
          setting: 'broker',
          ...(this.inbox === undefined ? {} : { inbox: this.inbox }),
          resume: this.resumePoints(),
        });
        if (source.needsLease && !(await this.takeLease(lost, source))) break;
        onDatabase = false;
        this.databaseError = undefined;
        const generation = ++this.generation;
        this.source = source;
        let onLost: (reason: string | ConfigError | PrivilegeError) => void = () => {};
        const dropped = new Promise<string | ConfigError | PrivilegeError>((resolve) => {
          onLost = resolve;
        });
        this.stopWith = onLost;
        this.lease?.onLost((error) =>
          onLost(`lost the database session holding the lease: ${errorMessage(error)}`),
        );
        leaseCheck = this.checkLease(onLost);
        const starting = source.start(
          (delivery) => this.receive({ delivery, generation }),
          // A ConfigError (a Kafka member fenced out by another of the same name) is not
          // mended by starting again: it stops the consumer.
          (error) => onLost(error instanceof ConfigError ? error : errorMessage(error)),
        );
        if ((await Promise.race([starting.then(() => false), lost.then(() => true)])) === true) {
          // Stopped while the broker was still being reached (a start that timed out, a
          // shutdown): the lease goes at once; what the start still opens is closed when
          // it ends.
          void starting.then(
            () => source.close(),
            () => {},
          );
          clearInterval(leaseCheck);
          break;
        }
        failures = 0;
        this.setState('receiving');
        this.settings.logger.info(
          { consumer: this.settings.consumer, broker: source.location, reading: source.reading },
          'consumer receiving',
        );
        const retries = setInterval(
          () => void this.takeRetries(generation),
          this.settings.deadLetterRetryPollMs,
        );
        const keepTaken = setInterval(() => this.keepRetries(), RETRY_KEEP_MS);
        void this.takeRetries(generation);
        const janitor =
          this.settings.inboxRetentionMs === undefined
            ? undefined
            : setInterval(() => void this.purgeInbox(), this.settings.inboxPurgeIntervalMs);
        if (janitor) void this.purgeInbox();
        // A broker with an ack deadline hears, at its source's pace, that the messages
        // in flight (running, or queued behind their aggregate's earlier ones) are alive.
        const keepAlive =
          source.workingIntervalMs === undefined
            ? undefined
            : setInterval(() => {
                for (const delivery of this.inFlight) delivery.working?.();
              }, source.workingIntervalMs);
        const reason = await Promise.race([lost, dropped]).finally(() => {
          clearInterval(retries);
          clearInterval(keepTaken);
          clearInterval(janitor);
          clearInterval(keepAlive);
        });
        if (reason instanceof ConfigError || reason instanceof PrivilegeError) throw reason;
        if (reason !== undefined) {
          this.emit('lost', { reason });
          this.settings.logger.warn(
            { consumer: this.settings.consumer, reason },
            'consumer lost its source; reconnecting',
          );
          this.setState('reconnecting', reason);
        }
      } catch (error) {
        const refused = await privilegeErrorOf(
          error,
          this.settings.database,
          this.settings.schema,
          this.privileged(),
        ).catch(() => undefined);
        this.databaseError = onDatabase ? error : undefined;
        if (
          refused ||
          error instanceof ConfigError ||
          error instanceof SchemaVersionError ||
          error instanceof PrivilegeError ||
          (onDatabase && refusesLogin(error))
        ) {
          const fatal = refused ?? error;
          this.setState('stopped', errorMessage(fatal));
          clearInterval(leaseCheck);
          await this.release();
          throw fatal;
        }
        this.setState('reconnecting', errorMessage(error));
        this.settings.logger.warn(
          { consumer: this.settings.consumer, err: errorMessage(error) },
          'consumer cannot receive; retrying',
        );
      }
      clearInterval(leaseCheck);
      // Stopping: the handlers already running finish and ack through this source, under
      // this lease, before either is let go; what waits behind them is not started.
      if (this.stopping) await this.finishHandlers();
      // Work the old source delivered is not started any more; the broker redelivers it.
      this.generation++;
      await this.release();
      if (!this.stopping) await this.sleep(backoffDelayMs(failures++, 500, 15_000), lost);
    }
    await this.release();
    this.setState('stopped');
  }

  /**
   * Whether the handler uses the inbox is its own business, so a role without the
   * inbox's grants is not refused at start (unless `inboxRetentionMs` needs them); it is
   * told, since the first event through `inbox.process` would stop the consumer.
   */
  private async warnWithoutInboxGrants(): Promise<void> {
    if (this.privileged().includes('inbox')) return;
    const { database, schema, logger, consumer } = this.settings;
    const missing = await missingPrivileges(database, schema, ['inbox']).catch(() => undefined);
    if (missing) {
      logger.warn(
        { consumer, err: missing.message },
        'this role lacks what inbox.process needs: a handler that uses the inbox will stop the consumer at its first event',
      );
    }
  }

  /** What this consumer does that needs privileges (see db/privileges.ts). */
  private privileged(): PrivilegedPart[] {
    const parts: PrivilegedPart[] = ['consume'];
    if (this.settings.binding === 'nats') parts.push('consume-nats');
    if (this.settings.inboxRetentionMs !== undefined) parts.push('inbox', 'inbox-retention');
    return parts;
  }

  /** Where the source keeps its position across processes: the schema's `consumer_resume`. */
  private resumePoints(): ResumePoints {
    const { database, schema, consumer } = this.settings;
    const sql = statements(schema);
    return {
      keep: async (stream, afterSeq) => {
        await database.query(sql.consumerResumeKeep, [consumer, stream, String(afterSeq)]);
      },
      find: async (stream) => {
        const { rows } = await database.query<{ after_seq: string }>(sql.consumerResumeFind, [
          consumer,
          stream,
        ]);
        const kept = rows[0]?.after_seq;
        return kept === undefined ? undefined : Number(kept);
      },
      drop: async (stream) => {
        await database.query(sql.consumerResumeDrop, [consumer, stream]);
      },
    };
  }

  /**
   * A statement refused for want of a privilege on the library's own tables, in the
   * handler (the inbox, an enqueue) or parking: every message would fail the same way and
   * be parked or retried for ever, so the consumer stops, leaving the message
   * unacknowledged for the broker to deliver again once the role has its grants. A
   * refusal the library's grants do not explain (the handler's own tables, a row-level
   * security check on one row) is a handler failure like any other, unless `parking`.
   */
  private async refusedPrivilege(work: Work, error: unknown, parking = false): Promise<boolean> {
    if (!(error instanceof PrivilegeError) && !hasSqlState(error, INSUFFICIENT_PRIVILEGE)) {
      return false;
    }
    const { database, schema } = this.settings;
    const parts = [...new Set<PrivilegedPart>([...this.privileged(), 'inbox'])];
    // A PrivilegeError comes from the library (an enqueue, the inbox) and says what to grant.
    const stated =
      error instanceof PrivilegeError
        ? error
        : parking
          ? await privilegeErrorOf(error, database, schema, parts).catch(() => undefined)
          : await missingPrivileges(database, schema, parts, error).catch(() => undefined);
    if (!stated && !parking) return false;
    this.forget(work);
    this.stopWith(stated ?? new PrivilegeError(errorMessage(error), {}, { cause: error }));
    return true;
  }

  /** Waits for the lease, standing by meanwhile; false when stopped first. */
  private async takeLease(stopped: Promise<unknown>, source: MessageSource): Promise<boolean> {
    const { database, consumer, schema, logger } = this.settings;
    // An embedded database has one session and so one process: no one to share with.
    if (!database.session) return true;
    const sql = statements(schema);
    const session = await database.session(`edupulse-outbox consumer ${consumer}`);
    this.lease = session;
    for (let tries = 0; ; tries++) {
      const { rows } = await session.query<{ leased: boolean }>(sql.consumerLeaseTry, [consumer]);
      if (rows[0]?.leased) return true;
      if (tries === 0) {
        // Said once per wait: a standby looks like a running consumer otherwise.
        logger.info(
          { consumer, broker: source.location, reading: source.reading, schema },
          `consumer standing by: another process of consumer "${consumer}" (inbox schema "${schema}") holds the lease and receives; this one takes over when that one stops. One process per consumer name receives at a time, whatever stream it reads: a consume() of another stream needs a name of its own`,
        );
      }
      this.setState('standby', 'another process of this consumer holds the lease');
      if (await this.sleep(this.settings.leaseRetryMs, stopped)) return false;
    }
  }

  /**
   * While the lease is held, asks its session every leaseRetryMs whether it still answers:
   * a connection gone silent holds nothing once the server ends it, and another process
   * may then take the lease. Undefined without a lease.
   */
  private checkLease(onLost: (reason: string) => void): NodeJS.Timeout | undefined {
    const lease = this.lease;
    if (!lease) return undefined;
    let asking = false;
    return setInterval(() => {
      if (asking) return;
      asking = true;
      lease
        .query('SELECT 1')
        .catch((error: unknown) =>
          onLost(`the database session holding the lease failed: ${errorMessage(error)}`),
        )
        .finally(() => {
          asking = false;
        });
    }, this.settings.leaseRetryMs);
  }

  private async release(): Promise<void> {
    const source = this.source;
    this.source = undefined;
    await source?.close().catch(() => {});
    const lease = this.lease;
    this.lease = undefined;
    await lease?.close().catch(() => {});
  }

  /** Sleeps `ms`; true when `stopped` settled first. */
  private async sleep(ms: number, stopped: Promise<unknown>): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const slept = new Promise<false>((resolve) => {
      timer = setTimeout(resolve, ms, false);
    });
    const result = await Promise.race([slept, stopped.then(() => true)]);
    clearTimeout(timer);
    return result || this.stopping;
  }

  /** The janitor's round: this consumer's inbox records older than the retention, in batches. */
  private async purgeInbox(): Promise<void> {
    const retention = this.settings.inboxRetentionMs;
    if (this.purging || this.stopping || retention === undefined) return;
    this.purging = true;
    const before = new Date(Date.now() - retention);
    try {
      const { database, schema, consumer } = this.settings;
      const deleted = await purgeInbox(database, schema, before, consumer);
      this.stats.inboxPurged += deleted;
      if (deleted > 0) {
        this.settings.logger.info(
          { consumer, deleted, before: before.toISOString() },
          'inbox records purged',
        );
      }
    } catch (error) {
      if (this.stoppedByClosedDatabase(error)) return;
      const { database, schema, consumer } = this.settings;
      // A grant revoked while running: said with what to grant, at each round; handling
      // goes on, only the expired records stay until the grant is back.
      const refused = await privilegeErrorOf(error, database, schema, ['inbox-retention']);
      if (refused) {
        this.settings.logger.error(
          { consumer, err: refused.message },
          'cannot purge the inbox for want of a grant; handling goes on, trying again at the next round',
        );
      } else {
        this.settings.logger.warn(
          { consumer, err: errorMessage(error) },
          'cannot purge the inbox; trying again later',
        );
      }
    } finally {
      this.purging = false;
    }
  }

  /**
   * Hands the dead letters an operator asked to retry to the handler again, in their
   * aggregates' queues: handled, the dead letter is deleted; failing again, parked anew.
   */
  private async takeRetries(generation: number): Promise<void> {
    if (this.takingRetries || this.stopping || generation !== this.generation) return;
    this.takingRetries = true;
    try {
      const inFlight = new Set([...this.retriesInFlight.values()].map((retry) => retry.id));
      for (const retry of await takeRetryDeliveries(this.settings)) {
        // Taken again while this process still handles it (asked for again after a keep
        // that failed): the one in flight settles it.
        if (inFlight.has(retry.id)) continue;
        this.retriesInFlight.set(retry.delivery, retry);
        this.receive({
          delivery: retry.delivery,
          generation,
          retry: true,
          retryStale: retry.stale,
        });
      }
    } catch (error) {
      // Without its grants on the dead letters the consumer could not park either: it
      // stops, as when parking is refused.
      const { database, schema } = this.settings;
      const refused = await privilegeErrorOf(error, database, schema, ['consume']);
      if (refused) {
        this.stopWith(refused);
        return;
      }
      if (this.stoppedByClosedDatabase(error)) return;
      this.settings.logger.warn(
        { consumer: this.settings.consumer, err: errorMessage(error) },
        'cannot read the dead letters to retry; trying again later',
      );
    } finally {
      this.takingRetries = false;
    }
  }

  private receive(work: Work): void {
    this.stats.received++;
    this.inFlight.add(work.delivery);
    let event: ConsumedEvent;
    try {
      event = toConsumedEvent(this.settings.binding, this.definitions, work.delivery);
    } catch (error) {
      const rejected =
        error instanceof RejectedMessage
          ? error
          : new RejectedMessage('invalid', errorMessage(error), undefined);
      // A dead letter an operator retried is parked again whatever the policy: skipped, it
      // would be deleted from the dead letters and gone.
      const policy = work.retry
        ? 'park'
        : rejected.kind === 'unknown'
          ? this.settings.onUnknownType
          : this.settings.onInvalid;
      // An event that was read keeps its aggregate's order; an unreadable one waits for nobody.
      const key = rejected.fields?.aggregateId ?? `\u0000${work.delivery.origin}`;
      this.queues.push(key, () =>
        this.guarded(work, () =>
          policy === 'skip'
            ? this.skip(work, rejected)
            : this.park(work, rejected.fields, rejected.message, 0),
        ),
      );
      return;
    }
    this.queues.push(event.aggregateId, () => this.guarded(work, () => this.handle(work, event)));
  }

  /**
   * Runs a message's task; should the consumer's own handling of it fail, says so and
   * leaves the message unacked for the broker to deliver again, instead of holding it in
   * flight, unmentioned, for good.
   */
  private async guarded(work: Work, task: () => Promise<void>): Promise<void> {
    try {
      await task();
    } catch (error) {
      this.settings.logger.error(
        {
          consumer: this.settings.consumer,
          message: work.delivery.origin,
          err: errorMessage(error),
        },
        'could not handle a message; leaving it unacked, so the broker delivers it again',
      );
      this.forget(work);
    }
  }

  /** Not stopping, its source still the current one, and not given to another process. */
  private current(work: Work): boolean {
    return !this.stopping && work.generation === this.generation && !work.delivery.withdrawn?.();
  }

  /** Whether the consumer's database answers a query now (within 2 s). */
  private async databaseAnswers(): Promise<boolean> {
    try {
      await withTimeout(this.settings.database.query('SELECT 1'), DATABASE_CHECK_MS);
      return true;
    } catch {
      return false;
    }
  }

  private async handle(work: Work, received: ConsumedEvent): Promise<void> {
    const { maxAttempts } = this.settings;
    let event = received;
    let outages = 0;
    let conflicts = 0;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      // Stopping, reconnected or withdrawn: leave it unacked, the broker redelivers it.
      if (!this.current(work)) return this.forget(work);
      // Each attempt gets the event as received: a failed attempt that changed its data
      // would otherwise hand the next one what it left.
      if (attempt > 1)
        event = toConsumedEvent(this.settings.binding, this.definitions, work.delivery);
      event.attempt = attempt;
      // Only a retry of what was parked as stale skips the stale check: one parked for its
      // payload or a failing handler may meanwhile have been overtaken by its aggregate's
      // later events, and applying it now would overwrite what they wrote.
      if (work.retryStale) acceptStale(event);
      const started = performance.now();
      try {
        await this.handler(event, this.context);
      } catch (thrown) {
        const error = readable(thrown);
        if (error instanceof StaleEventError) {
          this.stats.stale++;
          return this.park(work, event, error.message, attempt, true);
        }
        if (await this.refusedPrivilege(work, error)) return;
        if (conflicted(error) && conflicts < MAX_CONFLICTS) {
          // A serialization failure or deadlock (SERIALIZABLE or REPEATABLE READ, the
          // inbox's own rows among those contended): the transaction is to be run again,
          // which spends no attempt; only a conflict that keeps coming counts as a failure.
          this.settings.logger.debug(
            { consumer: this.settings.consumer, id: event.id, err: errorMessage(error) },
            "the handler's transaction conflicted with another; running it again",
          );
          await this.sleep(backoffDelayMs(conflicts++, 10, 1_000), this.stopped);
          attempt--;
          continue;
        }
        if (isDatabaseUnavailable(error)) {
          // The event is fine, a connection is not: wait for it without spending
          // attempts. A refused or lost connection looks the same whoever it was to, the
          // database or a service the handler calls (an HTTP request's): the log says
          // which, by whether the consumer's database answers.
          const reason = waitedForPool(error)
            ? 'no database connection came free in the handler within the connect timeout (a pool smaller than concurrency, or slow transactions); retrying'
            : (await this.databaseAnswers())
              ? 'a connection the handler needs was refused or lost, and the database answers: a service it calls is unreachable; retrying without spending attempts'
              : 'database unavailable in the handler; retrying';
          this.settings.logger.warn(
            { consumer: this.settings.consumer, id: event.id, err: errorMessage(error) },
            reason,
          );
          await this.sleep(backoffDelayMs(outages++, 200, 5_000), this.stopped);
          attempt--;
          continue;
        }
        this.stats.failed++;
        const willRetry = attempt < maxAttempts;
        this.emit('failed', { event, error, willRetry });
        this.settings.logger.warn(
          {
            consumer: this.settings.consumer,
            id: event.id,
            type: event.type,
            attempt,
            err: errorMessage(error),
          },
          willRetry ? 'handler failed; retrying' : 'handler failed; parking the event',
        );
        if (!willRetry) {
          return this.park(
            work,
            event,
            `handler failed ${attempt} time${attempt === 1 ? '' : 's'}; last error: ${errorMessage(error)}`,
            attempt,
          );
        }
        await this.sleep(
          backoffDelayMs(attempt - 1, this.settings.retryDelayMs, this.settings.retryMaxDelayMs),
          this.stopped,
        );
        continue;
      }
      // Left behind by stop() (stopTimeoutMs): as its warning said, the message is not
      // acked and comes again, so it is not counted or told of as processed.
      if (this.abandoned.signal.aborted) return this.forget(work);
      const outcome = inboxOutcome(event) ?? 'applied';
      this.stats.processed++;
      if (outcome === 'duplicate') this.stats.duplicates++;
      if (outcome === 'stale') this.stats.stale++;
      await this.settle(work);
      this.emit('processed', { event, outcome, durationMs: performance.now() - started });
      return;
    }
  }

  /** Parks the message (retrying while the database is away: the aggregate waits), then acks it. */
  private async park(
    work: Work,
    fields: ParkedFields | undefined,
    reason: string,
    attempts: number,
    stale = false,
  ): Promise<void> {
    for (let failures = 0; ; failures++) {
      if (!this.current(work)) return this.forget(work);
      try {
        const parked = await parkMessage(
          this.settings,
          work.delivery,
          fields,
          reason,
          attempts,
          stale,
          work.retry === true,
        );
        this.stats.parked++;
        await this.settle(work);
        this.emit('parked', parked);
        this.settings.logger.warn(
          { consumer: this.settings.consumer, ...parked },
          'message parked as a consumer dead letter',
        );
        return;
      } catch (error) {
        if (await this.refusedPrivilege(work, error, true)) return;
        if (this.stoppedByClosedDatabase(error)) return this.forget(work);
        if (fields && unstorable(error)) {
          // Something of the event the table cannot hold (the decoder's checks should
          // leave nothing): parked as an undecodable message, headers and body kept.
          reason = `${reason}; its id, type or aggregate id could not be stored (${errorMessage(error)})`;
          fields = undefined;
          continue;
        }
        this.settings.logger.error(
          {
            consumer: this.settings.consumer,
            origin: work.delivery.origin,
            id: fields?.id,
            aggregateId: fields?.aggregateId,
            err: errorMessage(error),
          },
          'cannot park a message; retrying',
        );
        await this.sleep(backoffDelayMs(failures, 500, 15_000), this.stopped);
      }
    }
  }

  private async skip(work: Work, rejected: RejectedMessage): Promise<void> {
    if (!this.current(work)) return this.forget(work);
    this.stats.skipped++;
    this.sayFirstSkip(rejected);
    await this.settle(work);
    this.emit('skipped', {
      origin: work.delivery.origin,
      type: rejected.fields?.type,
      reason: rejected.message,
    });
  }

  /**
   * One log line for the first message skipped for each reason: a type routed under
   * another aggregate type than its definition's (most likely a definition that misnames
   * it: every such event is skipped) as a warning, a type not handled as information, an
   * invalid message (`onInvalid: 'skip'`) once, whatever its reason. At most 100 reasons
   * of each of the first two.
   */
  private sayFirstSkip(rejected: RejectedMessage): void {
    const key = rejected.kind === 'invalid' ? '\u0000invalid' : rejected.message;
    // Types not handled cannot crowd out the warnings: each kind has its own 100.
    const reasons = rejected.otherAggregate ? this.otherAggregateReasons : this.skipReasons;
    if (reasons.has(key) || reasons.size >= 100) return;
    reasons.add(key);
    const { logger, consumer } = this.settings;
    const line = { consumer, reason: rejected.message };
    if (rejected.otherAggregate) {
      logger.warn(
        line,
        "skipping its events (onUnknownType: 'skip'): check the definition's aggregateType against the producer's; counted in stats.skipped",
      );
    } else if (rejected.kind === 'invalid') {
      logger.warn(
        line,
        "skipping an invalid message (onInvalid: 'skip'); further ones are counted in stats.skipped",
      );
    } else {
      logger.info(line, "skipping events of a type not handled (onUnknownType: 'skip')");
    }
  }

  private async settle(work: Work): Promise<void> {
    this.inFlight.delete(work.delivery);
    if (!this.retriesInFlight.has(work.delivery)) {
      await work.delivery.ack().catch(() => {});
      return;
    }
    // A retry's ack removes its dead letter. Lost, the dead letter would stay taken and be
    // handed over again once that lapses: so it is tried again while the database is
    // away, the retry kept taken meanwhile. A stop leaves it to be taken again later.
    for (let failures = 0; ; failures++) {
      try {
        await work.delivery.ack();
        break;
      } catch (error) {
        if (this.stopping) break;
        const log = {
          consumer: this.settings.consumer,
          origin: work.delivery.origin,
          err: errorMessage(error),
        };
        if (!isDatabaseUnavailable(error)) {
          // Refused, not away: a revoked privilege stops the consumer as everywhere else;
          // anything else would be refused again, so the dead letter waits to be taken again.
          if (await this.refusedPrivilege(work, error, true)) break;
          this.settings.logger.error(
            log,
            'could not remove a retried dead letter; it is handed to the handler again in 15 minutes',
          );
          break;
        }
        this.settings.logger.warn(log, 'could not remove a retried dead letter; retrying');
        if (await this.sleep(backoffDelayMs(failures, 500, 15_000), this.stopped)) break;
      }
    }
    this.retriesInFlight.delete(work.delivery);
  }

  private forget(work: Work): void {
    this.inFlight.delete(work.delivery);
    // A retry not finished goes back to the dead letters, to be taken again.
    void this.giveBack(work.delivery);
  }

  /** Gives back a retry this process took and will not finish. */
  private async giveBack(delivery: Delivery): Promise<void> {
    const retry = this.retriesInFlight.get(delivery);
    if (!retry) return;
    this.retriesInFlight.delete(delivery);
    await retry
      .release()
      .catch((error: unknown) =>
        this.settings.logger.warn(
          { consumer: this.settings.consumer, deadLetter: retry.id, err: errorMessage(error) },
          'could not give back an unfinished retry; it is taken again after 15 minutes',
        ),
      );
  }

  /** Keeps the retries in flight taken, so that no other process takes them as abandoned. */
  private keepRetries(): void {
    if (this.retriesInFlight.size === 0) return;
    const ids = [...this.retriesInFlight.values()].map((retry) => retry.id);
    void keepRetries(this.settings, ids).catch(() => {});
  }
}
