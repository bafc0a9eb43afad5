import type { ChannelModel, ConfirmChannel, Message } from 'amqplib';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../../common/errors.js';
import { withTimeout } from '../../common/timeout.js';
import { type OutboxMessage, type PublishResult, payloadTooLarge, published } from '../broker.js';
import { connectAmqp, redact } from './connection.js';
import {
  AMQP_DEFAULT_FRAME_MAX,
  amqpPublishOptions,
  headerFrameRefusal,
  routingOf,
} from './messages.js';
import { declareOrFind, replyCode } from './refusal.js';
import type { AmqpSettings } from './settings.js';

/** The settings and the CloudEvents `source` of every message. */
export type AmqpConfig = AmqpSettings & { source: string };

/** A message sent and waiting for its confirm. */
interface Pending {
  message: OutboxMessage;
  /** Set by a basic.return, which RabbitMQ sends before the same message's ack. */
  returned?: string;
  settled: boolean;
  resolve(result: PublishResult): void;
  reject(error: Error): void;
}

/**
 * One connection and its confirm channel. Once it fails (connection or channel lost,
 * confirm timeout), it stays failed: every waiting publish rejects with `failure`, and the
 * broker opens a new session on the next connect().
 *
 * A nack replaces the channel (on the same connection) before the next publish. A channel
 * keeps what it learnt of each queue at its first publish there: on RabbitMQ up to 3.12, a
 * channel that first published to a quorum queue just after the queue's leader was lost,
 * before the cluster recorded the new one, has every later publish to it nacked for as long
 * as it stays open, while a new channel is confirmed (`test/network/amqp-cluster.test.ts`).
 * For any other nack (a queue full with overflow reject-publish) a new channel costs one
 * round trip before a retry that waits its backoff anyway.
 */
export class AmqpSession {
  /** A ConfigError when the server refused what publishing needs (a permission): not an outage. */
  failure: BrokerUnavailableError | ConfigError | undefined;
  /** Sent and not yet confirmed, in the order sent. */
  private readonly pending = new Set<Pending>();
  /** The channel's write buffer is full: hold sends until 'drain'. */
  private mustDrain = false;
  private readonly waiters = new Set<() => void>();
  private watchdog: NodeJS.Timeout | undefined;
  private lastError: Error | undefined;
  private blockedReason: string | undefined;
  private channel: ConfirmChannel | undefined;
  /** A nack came: the channel is replaced once nothing on it waits for a confirm. */
  private renewChannel = false;
  private renewing: Promise<void> | undefined;
  private connectionClosed = false;
  /** The connection reported an error: its channel's close is a symptom, not the cause. */
  private connectionFailed = false;

  private constructor(
    private readonly config: AmqpConfig,
    private readonly model: ChannelModel,
    /** Index in `config.servers` of the server this session is connected to. */
    readonly server: number,
  ) {}

  /** The frame_max the server and amqplib agreed on for this connection. */
  get frameMax(): number {
    const agreed = (this.model as unknown as { connection?: { frameMax?: number } }).connection
      ?.frameMax;
    return agreed ?? this.config.frameMax ?? AMQP_DEFAULT_FRAME_MAX;
  }

  /** Connects to the first server that answers, trying them in order from `first`. */
  static async open(config: AmqpConfig, first = 0): Promise<AmqpSession> {
    const { model, server } = await connectAmqp(config, `edupulse-outbox ${config.source}`, first);
    const session = new AmqpSession(config, model, server);
    session.watchConnection();
    try {
      // On a channel of its own: a refusal closes the channel it came on.
      await session.declareExchange();
      const channel = await withTimeout(model.createConfirmChannel(), config.timeoutMs);
      session.watchChannel(channel);
      session.channel = channel;
      return session;
    } catch (error) {
      await session.shutdown();
      if (error instanceof ConfigError) throw error;
      throw new BrokerUnavailableError(
        `${config.location}: cannot open a confirm channel and declare exchange "${config.exchange}": ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }

  /**
   * Declares the durable topic exchange. A user without the configure permission (the
   * exchange made by an administrator) may still publish to it: a passive declare then
   * checks that it exists. The server refusing it (another type or durability, or missing
   * and not ours to declare) is a setting to fix, not an outage: ConfigError.
   */
  private async declareExchange(): Promise<void> {
    const { exchange, setting, location, timeoutMs } = this.config;
    const outcome = await declareOrFind(
      this.model,
      timeoutMs,
      (channel) => channel.assertExchange(exchange, 'topic', { durable: true }),
      (channel) => channel.checkExchange(exchange),
    );
    if (outcome === undefined) return;
    const { refused, missing } = outcome;
    const why = redact(errorMessage(refused), this.config);
    if (missing) {
      throw new ConfigError(
        setting,
        `${location}: exchange "${exchange}" does not exist, and this user may not declare it (${why}); have it declared beforehand as a durable topic exchange, or grant the user configure permission on it`,
        { cause: refused },
      );
    }
    if (replyCode(refused) === 406) {
      throw new ConfigError(
        setting,
        `${location}: exchange "${exchange}" exists with settings other than ours (a durable topic exchange): ${why}; declare it so, or name another with exchange=`,
        { cause: refused },
      );
    }
    throw refused;
  }

  /** One RPC on the channel (a passive declare of our exchange). */
  async roundTrip(): Promise<void> {
    const channel = this.channel;
    if (this.failure || !channel) throw this.failure ?? this.fail('no channel');
    try {
      await withTimeout(channel.checkExchange(this.config.exchange), this.config.timeoutMs);
    } catch (error) {
      // The server answered: the exchange is gone (the channel closes with it).
      if (replyCode(error) !== 404) throw error;
      this.lastError ??= error instanceof Error ? error : undefined;
      throw this.fail('exchange check');
    }
  }

  /** True when a message may go out now (else `ready()` waits, or throws the failure). */
  canSend(): boolean {
    return (
      !this.failure &&
      !this.renewChannel &&
      this.pending.size < this.config.maxInFlight &&
      !this.mustDrain
    );
  }

  /**
   * Resolves when a message may go out: a window slot is free, the channel is not full, and
   * one that had a nack has been replaced.
   */
  async ready(): Promise<void> {
    while (!this.failure && !this.canSend()) {
      if (this.renewChannel && this.pending.size === 0) {
        this.renewing ??= this.replaceChannel().finally(() => {
          this.renewing = undefined;
        });
        await this.renewing;
      } else {
        await new Promise<void>((resolve) => this.waiters.add(resolve));
      }
    }
    if (this.failure) throw this.failure;
  }

  /** Opens a new confirm channel, then closes the one it replaces; failing, fails the session. */
  private async replaceChannel(): Promise<void> {
    const old = this.channel;
    let channel: ConfirmChannel;
    try {
      channel = await withTimeout(this.model.createConfirmChannel(), this.config.timeoutMs);
    } catch (error) {
      this.lastError ??= error instanceof Error ? error : new Error(errorMessage(error));
      this.fail('cannot open a new channel after a nack');
      return;
    }
    if (this.failure) {
      channel.close().catch(() => {});
      return;
    }
    this.watchChannel(channel);
    this.channel = channel;
    this.renewChannel = false;
    this.mustDrain = false;
    // Nothing on it waits for a confirm; its close is no longer the session's concern.
    old?.close().catch(() => {});
  }

  /** Publishes one message; the promise settles with its confirm (or rejects with the session). */
  send(message: OutboxMessage): Promise<PublishResult> {
    const channel = this.channel;
    if (this.failure || !channel) return Promise.reject(this.failure ?? this.fail('no channel'));
    // The dispatcher's claim-time check (validate) keeps these away; a direct caller too.
    const { key: routingKey, refusal } = routingOf(message);
    const keyRefusal = refusal ?? headerFrameRefusal(message, this.config.source, this.frameMax);
    if (keyRefusal) return Promise.resolve({ ok: false, permanent: true, error: keyRefusal });
    const body = Buffer.from(message.payload);
    if (body.length > this.config.maxMessageBytes) {
      return Promise.resolve({
        ok: false,
        permanent: true,
        error: payloadTooLarge(body.length, this.config.maxMessageBytes, 'max_message_bytes'),
      });
    }
    return new Promise<PublishResult>((resolve, reject) => {
      const pending: Pending = { message, settled: false, resolve, reject };
      let accepted: boolean;
      try {
        accepted = channel.publish(
          this.config.exchange,
          routingKey,
          body,
          amqpPublishOptions(message, this.config.source),
          (error: unknown) => this.confirmed(pending, error),
        );
      } catch (error) {
        // amqplib refuses a message it cannot encode (e.g. headers over 64 KiB) before
        // sending anything; on a closed channel `failure` is already set.
        if (this.failure) reject(this.failure);
        else resolve({ ok: false, permanent: true, error: `not sent: ${errorMessage(error)}` });
        return;
      }
      this.track(pending);
      if (!accepted) this.mustDrain = true;
    });
  }

  /** Closes the channel and the connection; forcibly when the server does not answer. */
  async shutdown(): Promise<void> {
    const channelOpen = !this.failure;
    this.fail('closed by the client');
    if (this.connectionClosed) return;
    const { timeoutMs } = this.config;
    try {
      if (channelOpen && this.channel) await withTimeout(this.channel.close(), timeoutMs);
      await withTimeout(this.model.close(), timeoutMs);
    } catch {
      this.destroySocket();
    }
  }

  private watchConnection(): void {
    // An 'error' without a listener would crash the process; the 'close' that follows
    // every error is what marks the session failed.
    this.model.on('error', (error: Error) => {
      this.lastError = error;
      this.connectionFailed = true;
    });
    this.model.on('close', (error?: Error) => {
      // A server-side close (e.g. the broker shutting down) comes without an 'error'.
      this.lastError ??= error;
      this.connectionClosed = true;
      this.fail('connection closed');
    });
    this.model.on('blocked', (reason: string) => {
      this.blockedReason = reason;
    });
    this.model.on('unblocked', () => {
      this.blockedReason = undefined;
    });
  }

  /** Listens to `channel` for as long as it is the session's (a nack replaces it). */
  private watchChannel(channel: ConfirmChannel): void {
    const current = () => channel === this.channel;
    channel.on('error', (error: Error) => {
      if (current()) this.lastError = error;
    });
    // Prepended: amqplib's own 'close' listener fails every unconfirmed publish, and
    // confirmed() must see the session failed by then to tell a loss from a nack.
    channel.prependListener('close', () => {
      if (current()) this.fail(this.connectionFailed ? 'connection lost' : 'channel closed');
    });
    channel.on('return', (returned: Message) => {
      if (current()) this.returned(returned);
    });
    channel.on('drain', () => {
      if (!current()) return;
      this.mustDrain = false;
      this.wake();
    });
  }

  private track(pending: Pending): void {
    this.pending.add(pending);
    // Started by the first unconfirmed message; sends do not restart it, confirms do.
    if (this.pending.size === 1) this.armWatchdog();
  }

  private untrack(pending: Pending): void {
    this.pending.delete(pending);
    this.armWatchdog();
    this.wake();
  }

  /**
   * basic.return: no queue took the message. The ack that follows settles it. Returns are
   * rare (a missing binding): the earliest unconfirmed message with the id is found by a
   * scan rather than every send being indexed by id.
   */
  private returned(message: Message): void {
    const fields = message.fields as Message['fields'] & { replyCode?: number; replyText?: string };
    const id = String(message.properties.messageId);
    let pending: Pending | undefined;
    for (const p of this.pending) {
      if (p.message.id === id && p.returned === undefined) {
        pending = p;
        break;
      }
    }
    if (!pending) return;
    pending.returned = `unroutable: ${fields.replyCode} ${fields.replyText} (exchange ${fields.exchange}, routing key ${fields.routingKey})`;
  }

  private confirmed(pending: Pending, error: unknown): void {
    if (pending.settled) return;
    pending.settled = true;
    // Before untrack() wakes the publishers waiting for a slot.
    if (error && !this.failure) this.renewChannel = true;
    this.untrack(pending);
    if (this.failure) {
      // The connection or channel went before the confirm: whether the server kept the
      // message is unknown, so the whole batch is retried (at-least-once).
      pending.reject(this.failure);
    } else if (error) {
      pending.resolve({
        ok: false,
        permanent: false,
        error:
          'nacked by the server: it could not take the message (e.g. a queue full with overflow reject-publish, or a quorum queue that lost its leader); retried on a new channel',
      });
    } else if (pending.returned !== undefined && !this.config.acceptUnroutable) {
      pending.resolve({ ok: false, permanent: true, error: pending.returned });
    } else {
      pending.resolve(published);
    }
  }

  /**
   * Runs while anything is unconfirmed and restarts on every confirm, so it fires only when
   * the server has gone quiet: a silent network, or a connection blocked by a resource alarm.
   */
  private armWatchdog(): void {
    if (this.pending.size === 0 || this.failure) {
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
    } else if (this.watchdog) {
      this.watchdog.refresh();
    } else {
      this.watchdog = setTimeout(() => this.confirmsTimedOut(), this.config.timeoutMs);
      this.watchdog.unref();
    }
  }

  private confirmsTimedOut(): void {
    const blocked = this.blockedReason ? ` (connection blocked: ${this.blockedReason})` : '';
    this.fail(`no publisher confirm within ${this.config.timeoutMs} ms${blocked}`);
    // A server that does not confirm will not answer a close either.
    this.destroySocket();
  }

  /** Marks the session failed (the first reason wins) and releases everything waiting on it. */
  private fail(reason: string): BrokerUnavailableError | ConfigError {
    if (!this.failure) {
      const cause = this.lastError ? `: ${redact(errorMessage(this.lastError), this.config)}` : '';
      const { exchange, location, setting } = this.config;
      // ACCESS_REFUSED closing the channel: the user may not write to the exchange. Every
      // event would be refused so, and reconnecting cannot change it: a setting to fix.
      const code = this.connectionFailed ? undefined : replyCode(this.lastError);
      this.failure =
        code === 403
          ? new ConfigError(
              setting,
              `${location}: the server does not let this user publish to exchange "${exchange}"${cause}; grant it write permission on the exchange`,
              { cause: this.lastError },
            )
          : new BrokerUnavailableError(
              code === 404
                ? // Declared again when the dispatcher reconnects, but RabbitMQ removed the
                  // queues' bindings with it: until they are bound again, events are
                  // returned unroutable, retried, then dead-lettered.
                  `${location}: exchange "${exchange}" no longer exists${cause}; it is declared again on reconnecting, but the queues bound to it lost their bindings: bind them again (a consume() consumer binds its queue when it starts), then \`dead retry\` what was dead-lettered as unroutable meanwhile`
                : `${location}: ${reason}${cause}`,
              { cause: this.lastError },
            );
      clearTimeout(this.watchdog);
      for (const pending of [...this.pending]) {
        this.confirmed(pending, this.failure);
      }
      this.wake();
    }
    return this.failure;
  }

  private wake(): void {
    if (this.waiters.size === 0) return;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiters) wake();
  }

  /** Last resort when the server does not answer a close: drop the socket. */
  private destroySocket(): void {
    // amqplib does not type its connection's socket; `stream` is where it keeps it.
    const connection = this.model.connection as unknown as {
      stream?: { destroy(error?: Error): void };
    };
    connection.stream?.destroy(new Error('close timed out'));
  }
}
