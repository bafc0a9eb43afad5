import amqp, { type ChannelModel, type ConfirmChannel, type Message } from 'amqplib';
import { BrokerUnavailableError, errorMessage } from '../errors.js';
import { binaryModeHeaders, bindingPrefix, type OutboxMessage } from '../events/cloudevents.js';
import { withTimeout } from '../timeout.js';
import { redactUrl } from '../url.js';
import {
  type EventBroker,
  formatBytes,
  nameRefusal,
  type PublishResult,
  payloadTooLarge,
  published,
} from './broker.js';
import type { BrokerUrlParams } from './names.js';

/** The settings of an `amqp://user:pass@host:5672[/vhost]?…` broker URL, resolved. */
interface AmqpConfig {
  /** What amqplib connects to: the URL without our query parameters. */
  serverUrl: string;
  /** The same with the password replaced, for error messages. */
  server: string;
  /** CloudEvents `source` of every message. */
  source: string;
  /** `exchange`: the durable topic exchange events go to. Default `edupulse.events`. */
  exchange: string;
  /** `accept_unroutable`: count a message no queue is bound for as published. Default false. */
  acceptUnroutable: boolean;
  /** `max_in_flight`: publishes sent but not yet confirmed, at most. Default 512. */
  maxInFlight: number;
  /** `timeout_ms`: connect timeout, and how long unconfirmed publishes wait without any confirm. */
  timeoutMs: number;
  /**
   * `max_message_bytes`: larger bodies are refused here. RabbitMQ answers an oversized
   * message by closing the channel without naming the message, which would look like an
   * outage and hold every event back; default 16 MiB, RabbitMQ 4's `max_message_size`.
   */
  maxMessageBytes: number;
}

// RabbitMQ's own rule for names, minus the reserved `amq.` prefix and the nameless
// default exchange (which ignores routing keys).
const exchangeName = /^(?!amq\.)[A-Za-z0-9_.:-]{1,255}$/;

/**
 * RabbitMQ: a confirm channel, persistent `mandatory` messages to a topic exchange, routing
 * key `<aggregate_type>.<event_type>`, CloudEvents in binary mode (AMQP binding). Query
 * parameters: `exchange`, `accept_unroutable`, `max_in_flight`, `timeout_ms`,
 * `max_message_bytes`.
 */
export function createAmqpBroker(params: BrokerUrlParams, source: string): EventBroker {
  const config: AmqpConfig = {
    ...serverUrls(params.url),
    source,
    exchange: params.string(
      'exchange',
      'edupulse.events',
      exchangeName,
      'letters, digits, "_", "-", ".", ":"; not starting with "amq."',
    ),
    acceptUnroutable: params.boolean('accept_unroutable', false),
    maxInFlight: params.integer('max_in_flight', 512, 1, 65_535),
    timeoutMs: params.integer('timeout_ms', 10_000, 100, 3_600_000),
    maxMessageBytes: params.integer('max_message_bytes', 16 * 1024 * 1024, 1, 512 * 1024 * 1024),
  };
  return new AmqpBroker(config);
}

function serverUrls(url: URL): { serverUrl: string; server: string } {
  const server = new URL(url.href);
  // Our parameters are not amqplib's (it would read e.g. `heartbeat` from the query).
  server.search = '';
  server.hash = '';
  return { serverUrl: server.href, server: redactUrl(server.href) };
}

/** A routing-key word: `.` separates words and `*`, `#` are wildcards in topic bindings. */
function routingWord(token: string): string {
  return token.replace(/[.*#\s]/g, '_');
}

function amqpRoutingKey(message: OutboxMessage): string {
  return `${routingWord(message.aggregateType)}.${routingWord(message.eventType)}`;
}

/** Message properties: CloudEvents attributes as `cloudEvents:*` headers, the content type as the AMQP property. */
function amqpPublishOptions(message: OutboxMessage, source: string): amqp.Options.Publish {
  const { 'content-type': contentType, ...headers } = binaryModeHeaders(
    message,
    source,
    bindingPrefix.amqp,
  );
  const occurredMs = Date.parse(message.occurredAt);
  return {
    persistent: true,
    mandatory: true,
    messageId: message.id,
    contentType: contentType ?? 'application/json',
    // AMQP timestamps are whole seconds.
    timestamp: Math.floor((Number.isNaN(occurredMs) ? Date.now() : occurredMs) / 1000),
    headers,
  };
}

class AmqpBroker implements EventBroker {
  readonly name = 'amqp';
  private session: AmqpSession | undefined;
  /** publish() calls not yet settled: close() waits for them. */
  private readonly active = new Set<Promise<PublishResult[]>>();
  private closing: Promise<void> | undefined;
  private connecting: Promise<void> | undefined;

  constructor(private readonly config: AmqpConfig) {}

  connect(): Promise<void> {
    this.connecting ??= this.reconnect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    const run = this.publishAll(batch);
    this.active.add(run);
    const forget = () => this.active.delete(run);
    run.then(forget, forget);
    return run;
  }

  /**
   * Names that would change the routing key's words (`.` splits a word, `*` and `#` are
   * wildcards to bindings), routing keys over AMQP's 255 bytes, bodies over
   * max_message_bytes.
   */
  validate(message: OutboxMessage): string | undefined {
    const refusal = nameRefusal(
      message,
      /[.*#\s]/u,
      'an AMQP routing key word (no ".", "*", "#" or white space)',
    );
    if (refusal) return refusal;
    const keyBytes = Buffer.byteLength(amqpRoutingKey(message));
    if (keyBytes > 255) {
      return `aggregate_type and event_type: the routing key "<aggregate_type>.<event_type>" is ${formatBytes(keyBytes)}, over AMQP's 255`;
    }
    const bytes = Buffer.byteLength(message.payload);
    return bytes > this.config.maxMessageBytes
      ? payloadTooLarge(bytes, this.config.maxMessageBytes, 'max_message_bytes')
      : undefined;
  }

  /** A round trip on the channel: RabbitMQ confirms the exchange is still there. */
  async check(): Promise<void> {
    await this.usableSession().roundTrip();
  }

  close(): Promise<void> {
    this.closing ??= this.flushAndClose().finally(() => {
      this.closing = undefined;
    });
    return this.closing;
  }

  private async reconnect(): Promise<void> {
    await this.closing;
    if (this.session && !this.session.failure) return;
    const stale = this.session;
    this.session = undefined;
    await stale?.shutdown();
    this.session = await AmqpSession.open(this.config);
  }

  private async publishAll(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    const session = this.usableSession();
    const confirms: Promise<PublishResult>[] = [];
    for (const message of batch) {
      // Waits only when the window is full: no promise and microtask per message otherwise.
      if (!session.canSend()) await session.ready();
      const confirm = session.send(message);
      // Promise.all below reports the first failure; this keeps a later one (or one after
      // the loop stopped early) from being an unhandled rejection.
      confirm.catch(() => {});
      confirms.push(confirm);
    }
    return Promise.all(confirms);
  }

  private usableSession(): AmqpSession {
    if (this.closing) throw new BrokerUnavailableError(`${this.config.server}: broker is closing`);
    if (!this.session) throw new BrokerUnavailableError(`${this.config.server}: not connected`);
    if (this.session.failure) throw this.session.failure;
    return this.session;
  }

  private async flushAndClose(): Promise<void> {
    // A connect() under way would otherwise leave a session open after close().
    await this.connecting?.catch(() => {});
    // Every accepted message is confirmed, refused, or failed with the session (which
    // the confirm timeout bounds) before the connection goes.
    await Promise.allSettled(this.active);
    const session = this.session;
    this.session = undefined;
    await session?.shutdown();
  }
}

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
 */
class AmqpSession {
  failure: BrokerUnavailableError | undefined;
  /** By message id; an array because a caller may publish the same id twice at once. */
  private readonly pending = new Map<string, Pending[]>();
  private inFlight = 0;
  /** The channel's write buffer is full: hold sends until 'drain'. */
  private mustDrain = false;
  private readonly waiters = new Set<() => void>();
  private watchdog: NodeJS.Timeout | undefined;
  private lastError: Error | undefined;
  private blockedReason: string | undefined;
  private channel: ConfirmChannel | undefined;
  private connectionClosed = false;
  /** The connection reported an error: its channel's close is a symptom, not the cause. */
  private connectionFailed = false;

  private constructor(
    private readonly config: AmqpConfig,
    private readonly model: ChannelModel,
  ) {}

  static async open(config: AmqpConfig): Promise<AmqpSession> {
    const model = await connectModel(config);
    const session = new AmqpSession(config, model);
    session.watchConnection();
    try {
      const channel = await withTimeout(model.createConfirmChannel(), config.timeoutMs);
      session.watchChannel(channel);
      await withTimeout(
        channel.assertExchange(config.exchange, 'topic', { durable: true }),
        config.timeoutMs,
      );
      session.channel = channel;
      return session;
    } catch (error) {
      await session.shutdown();
      throw new BrokerUnavailableError(
        `${config.server}: cannot open a confirm channel and declare exchange "${config.exchange}": ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }

  /** One RPC on the channel (a passive declare of our exchange). */
  async roundTrip(): Promise<void> {
    const channel = this.channel;
    if (this.failure || !channel) throw this.failure ?? this.fail('no channel');
    await withTimeout(channel.checkExchange(this.config.exchange), this.config.timeoutMs);
  }

  /** True when a message may go out now (else `ready()` waits, or throws the failure). */
  canSend(): boolean {
    return !this.failure && this.inFlight < this.config.maxInFlight && !this.mustDrain;
  }

  /** Resolves when a message may go out: a window slot is free and the channel is not full. */
  async ready(): Promise<void> {
    while (!this.failure && (this.inFlight >= this.config.maxInFlight || this.mustDrain)) {
      await new Promise<void>((resolve) => this.waiters.add(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /** Publishes one message; the promise settles with its confirm (or rejects with the session). */
  send(message: OutboxMessage): Promise<PublishResult> {
    const channel = this.channel;
    if (this.failure || !channel) return Promise.reject(this.failure ?? this.fail('no channel'));
    const body = Buffer.from(message.payload);
    if (body.length > this.config.maxMessageBytes) {
      // The dispatcher's claim-time check (validate) keeps these away; a direct caller too.
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
          amqpRoutingKey(message),
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

  private watchChannel(channel: ConfirmChannel): void {
    channel.on('error', (error: Error) => {
      this.lastError = error;
    });
    // Prepended: amqplib's own 'close' listener fails every unconfirmed publish, and
    // confirmed() must see the session failed by then to tell a loss from a nack.
    channel.prependListener('close', () =>
      this.fail(this.connectionFailed ? 'connection lost' : 'channel closed'),
    );
    channel.on('return', (returned: Message) => this.returned(returned));
    channel.on('drain', () => {
      this.mustDrain = false;
      this.wake();
    });
  }

  private track(pending: Pending): void {
    const id = pending.message.id;
    const same = this.pending.get(id);
    if (same) same.push(pending);
    else this.pending.set(id, [pending]);
    this.inFlight++;
    // Started by the first unconfirmed message; sends do not restart it, confirms do.
    if (this.inFlight === 1) this.armWatchdog();
  }

  private untrack(pending: Pending): void {
    const id = pending.message.id;
    const same = this.pending.get(id);
    const at = same?.indexOf(pending) ?? -1;
    // Nearly always the only one with its id: no new array per confirm.
    if (same && at >= 0 && same.length > 1) same.splice(at, 1);
    else if (at >= 0) this.pending.delete(id);
    this.inFlight--;
    this.armWatchdog();
    this.wake();
  }

  /** basic.return: no queue took the message. The ack that follows settles it. */
  private returned(message: Message): void {
    const fields = message.fields as Message['fields'] & { replyCode?: number; replyText?: string };
    const id = String(message.properties.messageId);
    const pending = this.pending.get(id)?.find((p) => p.returned === undefined);
    if (!pending) return;
    pending.returned = `unroutable: ${fields.replyCode} ${fields.replyText} (exchange ${fields.exchange}, routing key ${fields.routingKey})`;
  }

  private confirmed(pending: Pending, error: unknown): void {
    if (pending.settled) return;
    pending.settled = true;
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
          'nacked by the server: it could not take the message (e.g. a queue full with overflow reject-publish)',
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
    if (this.inFlight === 0 || this.failure) {
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
  private fail(reason: string): BrokerUnavailableError {
    if (!this.failure) {
      const cause = this.lastError
        ? `: ${redactText(errorMessage(this.lastError), this.config)}`
        : '';
      this.failure = new BrokerUnavailableError(`${this.config.server}: ${reason}${cause}`, {
        cause: this.lastError,
      });
      clearTimeout(this.watchdog);
      for (const pending of [...this.pending.values()].flat()) {
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

async function connectModel(config: AmqpConfig): Promise<ChannelModel> {
  try {
    return await amqp.connect(config.serverUrl, {
      // Bounds the TCP connect and the AMQP handshake; amqplib lifts it once open.
      timeout: config.timeoutMs,
      clientProperties: { connection_name: `edupulse-outbox ${config.source}` },
    });
  } catch (error) {
    throw new BrokerUnavailableError(
      `cannot connect to ${config.server}: ${redactText(errorMessage(error), config)}`,
      { cause: error },
    );
  }
}

/** Server and library texts do not carry the password today; this keeps it that way. */
function redactText(text: string, config: AmqpConfig): string {
  const { password } = new URL(config.serverUrl);
  let plain = password;
  try {
    plain = decodeURIComponent(password);
  } catch {
    // A malformed escape is used as written.
  }
  return plain ? text.split(plain).join('***').split(password).join('***') : text;
}
