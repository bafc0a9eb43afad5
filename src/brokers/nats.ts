import {
  JetStreamApiError,
  JetStreamError,
  type JetStreamManager,
  jetstreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import {
  ClosedConnectionError,
  ConnectionError,
  createInbox,
  DrainingConnectionError,
  InvalidArgumentError,
  InvalidSubjectError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type NodeConnectionOptions,
  NoRespondersError,
  nanos,
  connect as natsConnect,
  headers as natsHeaders,
  PermissionViolationError,
  RequestError,
  type Subscription,
  TimeoutError,
} from '@nats-io/transport-node';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../errors.js';
import { binaryModeHeaders, bindingPrefix, type OutboxMessage } from '../events/cloudevents.js';
import { withTimeout } from '../timeout.js';
import { decodePercent, redactUrl } from '../url.js';
import {
  type EventBroker,
  nameRefusal,
  type PublishResult,
  payloadTooLarge,
  published,
} from './broker.js';
import type { BrokerUrlParams } from './names.js';

/** Settings of the NATS JetStream broker, read from the broker URL's query parameters. */
interface NatsSettings {
  /** `host:port` of the server. */
  server: string;
  /** The server URL without query and with credentials masked, for messages. */
  label: string;
  /** The setting the URL came from, named in configuration errors. */
  setting: string;
  user?: string;
  pass?: string;
  token?: string;
  /** `stream`: the JetStream stream the events are stored in. Default `EDUPULSE`. */
  stream: string;
  /** `subject_prefix`: first subject token, `<prefix>.<aggregate_type>.<event_type>`. Default `edupulse`. */
  subjectPrefix: string;
  /** `max_in_flight`: publishes awaiting their PubAck at once. Default 256. */
  maxInFlight: number;
  /** `duplicate_window_s`: the server's dedup window, used only when creating the stream. Default 120. */
  duplicateWindowS: number;
  /** `timeout_ms`: wait for one PubAck, for the connection handshake and for each stream request. Default 5000. */
  timeoutMs: number;
}

// Stream names and subject tokens: a conservative subset of what NATS allows, so a name
// is also a valid file name on the server and a single subject token.
const NAME = /^[A-Za-z0-9_-]{1,255}$/;
const NAME_HINT = 'letters, digits, _ or -';

function readSettings(params: BrokerUrlParams): NatsSettings {
  const url = params.url;
  const username = decodePercent(url.username);
  const password = decodePercent(url.password);
  return {
    server: `${url.hostname || '127.0.0.1'}:${url.port || '4222'}`,
    label: serverLabel(url),
    setting: params.setting,
    // A user without a password is a token, as in the nats CLI's URLs.
    ...(password ? { user: username, pass: password } : username ? { token: username } : {}),
    stream: params.string('stream', 'EDUPULSE', NAME, NAME_HINT),
    subjectPrefix: params.string('subject_prefix', 'edupulse', NAME, NAME_HINT),
    maxInFlight: params.integer('max_in_flight', 256, 1, 65_536),
    duplicateWindowS: params.integer('duplicate_window_s', 120, 1, 7 * 24 * 3600),
    timeoutMs: params.integer('timeout_ms', 5000, 100, 120_000),
  };
}

/** `nats://user:***@host:4222`: no query, no password, no token. */
function serverLabel(url: URL): string {
  const bare = new URL(url.href);
  bare.search = '';
  return redactUrl(bare.href).replace(/\/$/, '');
}

/**
 * A subject token from free text: aggregate types are validated by `enqueue`, but a
 * raw-SQL producer can write anything, and `.`, `*`, `>` or whitespace would change the
 * subject's shape. Non-ASCII is replaced too, since many NATS tools assume ASCII subjects.
 */
function subjectToken(text: string): string {
  return text.replace(/[^\x21-\x7e]|[.*>]/gu, '_') || '_';
}

const needsEscape = /[^\x21-\x7e]|["%]/u;

/**
 * Header value per the CloudEvents NATS binding: space, `"`, `%` and everything outside
 * printable ASCII are percent-encoded as UTF-8 bytes (a raw CR or LF would break the
 * header block; the client refuses them).
 */
export function headerValue(value: string): string {
  // Most values need no escape: testing first spares building a new string for them.
  if (!needsEscape.test(value)) return value;
  return value.replace(/[^\x21-\x7e]|["%]/gu, (char) =>
    Array.from(
      Buffer.from(char, 'utf8'),
      (byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
    ).join(''),
  );
}

/** True when the stream subject filter `filter` matches every subject of `pattern` (no `>`). */
function captures(filter: string, pattern: string): boolean {
  const f = filter.split('.');
  const p = pattern.split('.');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return i < p.length;
    if (i >= p.length || (f[i] !== '*' && f[i] !== p[i])) return false;
  }
  return f.length === p.length;
}

/**
 * Tracks whether the socket is up. The client reconnects on its own for a while; publishes
 * in that window would only wait for their timeout, so they are refused at once instead and
 * the dispatcher backs off.
 */
class Link {
  up = true;
  reason = '';
  private readonly listeners = new Set<(reason: string) => void>();

  constructor(nc: NatsConnection, label: string) {
    void this.watch(nc, label);
  }

  /** Calls `listener` once when the link drops; returns the unsubscribe. */
  onDown(listener: (reason: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async watch(nc: NatsConnection, label: string): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') this.down(`lost the connection to ${label}`);
      else if (status.type === 'reconnect') this.up = true;
    }
    const error = await nc.closed();
    this.down(`connection to ${label} closed${error ? `: ${errorMessage(error)}` : ''}`);
  }

  private down(reason: string): void {
    this.up = false;
    this.reason = reason;
    for (const listener of this.listeners) listener(reason);
    this.listeners.clear();
  }
}

/** A bound on the publishes awaiting their PubAck; waiters are served in order. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/**
 * One `publish` call. Once the server is known to be unreachable the call is given up: the
 * messages not yet sent are not sent, and the caller gets BrokerUnavailableError at once.
 */
class PublishRun {
  unavailable: string | undefined;
  readonly givenUp: Promise<void>;
  private resolveGivenUp: () => void = () => {};
  private probe: Promise<boolean> | undefined;

  constructor(private readonly nc: NatsConnection) {
    this.givenUp = new Promise((resolve) => {
      this.resolveGivenUp = resolve;
    });
  }

  giveUp(reason: string): void {
    if (this.unavailable !== undefined) return;
    this.unavailable = reason;
    this.resolveGivenUp();
  }

  /**
   * After a PubAck timeout: does the server still answer a PING? One probe per call, however
   * many messages timed out. A server that answers has a slow or leaderless stream (a
   * per-message failure); one that does not is unreachable even if the socket looks open.
   */
  serverAnswers(): Promise<boolean> {
    this.probe ??= Promise.race([
      this.nc.flush().then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) => setTimeout(resolve, 1000, false).unref()),
    ]);
    return this.probe;
  }
}

/** A JetStream PubAck: `{ stream, seq, duplicate? }`, or `{ error: { code, err_code, description } }`. */
interface PubAck {
  stream?: string;
  error?: { code: number; err_code: number; description: string };
}

interface AckWaiter {
  subject: string;
  /** `Date.now()` after which the message fails with TimeoutError. */
  deadline: number;
  resolve(): void;
  reject(error: Error): void;
}

const decoder = new TextDecoder();

/**
 * Publishes with a reply subject on one inbox subscription of ours and settles each message
 * by its PubAck. The client's `js.publish` makes every message a request with its own timer
 * and Error objects whose stack traces are captured even on success: two thirds of the
 * adapter's CPU per message (about 45 µs against 15 µs this way, measured on a drain). The
 * outcomes stay those of `js.publish`, as the same error classes: the PubAck's API error
 * (JetStreamApiError), a 503 status (NoRespondersError), no PubAck within `timeoutMs`
 * (TimeoutError), the publish not permitted (PermissionViolationError), the connection
 * closed (RequestError).
 */
class PubAckInbox {
  private readonly waiting = new Map<string, AckWaiter>();
  private prefix = '';
  private subscription: Subscription | undefined;
  private next = 0;
  /** Expires the oldest waiter; all share one timeout, so the oldest is due first. */
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    void this.watch();
  }

  /** Resolves when the stream has stored the message (or already had its Nats-Msg-Id). */
  publish(subject: string, payload: Uint8Array, headers: MsgHdrs): Promise<void> {
    // What a request checks beyond a publish: a draining connection takes no new one.
    if (this.nc.isDraining()) return Promise.reject(new DrainingConnectionError());
    const token = (this.next++).toString(36);
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(token, { subject, deadline: Date.now() + this.timeoutMs, resolve, reject });
      try {
        this.subscribe();
        this.nc.publish(subject, payload, { reply: `${this.prefix}${token}`, headers });
      } catch (error) {
        // Closed, an invalid subject, or over the server's max_payload: nothing was sent.
        this.waiting.delete(token);
        reject(error);
        return;
      }
      this.timer ??= this.arm();
    });
  }

  private subscribe(): void {
    if (this.subscription) return;
    const inbox = createInbox();
    this.prefix = `${inbox}.`;
    this.subscription = this.nc.subscribe(`${inbox}.*`, {
      callback: (error, msg) => this.received(error, msg),
    });
  }

  private received(error: Error | null, msg: Msg): void {
    if (error) {
      // The server refused the subscription (no permission on the inbox): every message
      // waiting fails as its request would, and the next publish subscribes again.
      this.subscription = undefined;
      this.failAll(error);
      return;
    }
    const token = msg.subject.slice(this.prefix.length);
    const waiter = this.waiting.get(token);
    // Not waited for any more: it timed out.
    if (!waiter) return;
    this.waiting.delete(token);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      waiter.reject(new NoRespondersError(waiter.subject));
      return;
    }
    let ack: PubAck;
    try {
      ack = JSON.parse(decoder.decode(msg.data)) as PubAck;
    } catch (parseError) {
      waiter.reject(parseError as Error);
      return;
    }
    if (ack.error) waiter.reject(new JetStreamApiError(ack.error));
    else if (ack.stream === '') waiter.reject(new JetStreamError('invalid ack response'));
    else waiter.resolve();
  }

  private arm(): NodeJS.Timeout | undefined {
    const oldest = this.waiting.values().next().value;
    if (!oldest) return undefined;
    const timer = setTimeout(() => this.expire(), Math.max(0, oldest.deadline - Date.now()));
    // The connection keeps the process alive while messages wait; this timer need not.
    timer.unref();
    return timer;
  }

  private expire(): void {
    const now = Date.now();
    for (const [token, waiter] of this.waiting) {
      if (waiter.deadline > now) break;
      this.waiting.delete(token);
      waiter.reject(new TimeoutError());
    }
    this.timer = this.arm();
  }

  /**
   * A publish the server did not permit fails the first message waiting on that subject,
   * as the client does for its requests.
   */
  private async watch(): Promise<void> {
    for await (const status of this.nc.status()) {
      const error = status.type === 'error' ? status.error : undefined;
      if (!(error instanceof PermissionViolationError) || error.operation !== 'publish') continue;
      for (const [token, waiter] of this.waiting) {
        if (waiter.subject !== error.subject) continue;
        this.waiting.delete(token);
        waiter.reject(error);
        break;
      }
    }
    // The status stream ends with the connection.
    this.failAll(new RequestError('connection closed'));
  }

  private failAll(error: Error): void {
    const waiters = [...this.waiting.values()];
    this.waiting.clear();
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const waiter of waiters) waiter.reject(error);
  }
}

/** How one message ended: a result for the dispatcher, or "the server is unreachable". */
type Outcome = PublishResult | { unavailable: string };

/** A connected client: its PubAck inbox, link state and in-flight bound. */
interface Session {
  nc: NatsConnection;
  acks: PubAckInbox;
  link: Link;
  slots: Slots;
  /** `publish` calls not finished yet, for `close` to wait on. */
  running: Set<Promise<unknown>>;
}

const encoder = new TextEncoder();
/** JetStream's dedup header (PubHeaders.MsgIdHdr). */
const msgIdHeader = 'Nats-Msg-Id';

/**
 * NATS JetStream: each event is stored in `stream` under
 * `<subject_prefix>.<aggregate_type>.<event_type>` as a binary-mode CloudEvent, with
 * `Nats-Msg-Id` = event id so the server drops a re-publish within the duplicate window.
 */
class NatsBroker implements EventBroker {
  readonly name = 'nats';
  private session: Session | undefined;

  constructor(
    private readonly settings: NatsSettings,
    private readonly source: string,
  ) {}

  async connect(): Promise<void> {
    if (this.session?.link.up) return;
    await this.close();
    const nc = await this.dial();
    // Watching from the start, so a drop during the stream check is not missed.
    const link = new Link(nc, this.settings.label);
    try {
      await this.ensureStream(nc);
    } catch (error) {
      await nc.close().catch(() => {});
      if (error instanceof ConfigError || error instanceof BrokerUnavailableError) throw error;
      throw new BrokerUnavailableError(
        `NATS at ${this.settings.label}: stream ${this.settings.stream}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    this.session = {
      nc,
      acks: new PubAckInbox(nc, this.settings.timeoutMs),
      link,
      slots: new Slots(this.settings.maxInFlight),
      running: new Set(),
    };
  }

  /**
   * Names that would change a subject's shape (`.` splits a token, `*` and `>` are
   * wildcards to subscribers) and payloads over the server's max_payload.
   */
  validate(message: OutboxMessage): string | undefined {
    const refusal = nameRefusal(
      message,
      /[.*>\s]/u,
      'a NATS subject token (no ".", "*", ">" or white space)',
    );
    if (refusal) return refusal;
    const limit = this.session?.nc.info?.max_payload;
    const bytes = Buffer.byteLength(message.payload);
    return limit && bytes > limit
      ? payloadTooLarge(bytes, limit, "the NATS server's max_payload")
      : undefined;
  }

  /** A PING/PONG round trip on the connection. */
  async check(): Promise<void> {
    await this.liveSession().nc.flush();
  }

  async publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    const session = this.liveSession();
    const run = new PublishRun(session.nc);
    const unsubscribe = session.link.onDown((reason) => run.giveUp(reason));
    const all = Promise.all(batch.map((message) => this.publishOne(session, run, message)));
    session.running.add(all);
    const forget = () => session.running.delete(all);
    all.then(forget, forget);
    try {
      const outcomes = await Promise.race([all, run.givenUp.then(() => undefined)]);
      if (run.unavailable !== undefined || outcomes === undefined) {
        throw new BrokerUnavailableError(`nats: ${run.unavailable ?? 'unavailable'}`);
      }
      // No outcome is `unavailable` here: each of those gave the run up.
      return outcomes as PublishResult[];
    } finally {
      unsubscribe();
    }
  }

  async close(): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.session = undefined;
    const { nc, link, running } = session;
    if (link.up && running.size > 0) {
      // Publishes already accepted finish first: a drain would stop listening for their PubAcks.
      await new Promise<void>((resolve) => {
        const unsubscribe = link.onDown(() => resolve());
        void Promise.allSettled(running).then(() => {
          unsubscribe();
          resolve();
        });
      });
    }
    if (link.up && !nc.isClosed()) {
      // drain() flushes what the client still buffers. It fails if the link drops meanwhile,
      // and waits for a PONG, so a silent server is given timeout_ms, then the socket is closed.
      await withTimeout(nc.drain(), this.settings.timeoutMs).catch(() => {});
    }
    await nc.close().catch(() => {});
  }

  private async dial(): Promise<NatsConnection> {
    const { server, label, user, pass, token, timeoutMs } = this.settings;
    const options: NodeConnectionOptions = {
      servers: server,
      name: 'edupulse-outbox',
      timeout: timeoutMs,
      // Brief reconnects only (~10 s): a longer outage is the dispatcher's to handle, by
      // backing off and calling connect() again, so it is logged rather than hidden here.
      reconnect: true,
      maxReconnectAttempts: 20,
      reconnectTimeWait: 500,
      // A half-open TCP connection is noticed within ~30 s instead of the default 4 minutes.
      pingInterval: 10_000,
      maxPingOut: 3,
      ...(user !== undefined ? { user, pass } : {}),
      ...(token !== undefined ? { token } : {}),
    };
    try {
      return await natsConnect(options);
    } catch (error) {
      throw new BrokerUnavailableError(
        `cannot connect to NATS at ${label}: ${errorMessage(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  /** Creates the stream over `<subject_prefix>.>` if missing; else checks that it captures those subjects. */
  private async ensureStream(nc: NatsConnection): Promise<void> {
    const { stream, subjectPrefix, duplicateWindowS, timeoutMs, label } = this.settings;
    const subject = `${subjectPrefix}.>`;
    // What publish sends to; an existing stream over exactly these is fine too.
    const publishedTo = `${subjectPrefix}.*.*`;
    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    } catch (error) {
      throw new BrokerUnavailableError(
        `NATS at ${label} has no JetStream (${errorMessage(error)}); start nats-server with -js`,
        { cause: error },
      );
    }
    let info = await streamInfo(jsm, stream);
    if (!info) {
      try {
        info = await jsm.streams.add({
          name: stream,
          subjects: [subject],
          duplicate_window: nanos(duplicateWindowS * 1000),
          description: 'EduPulse outbox events (CloudEvents, binary mode)',
        });
      } catch (error) {
        // The server refused the stream (subjects overlap another stream, limits, …); not a
        // network problem. Unless another dispatcher created it first (10058: name in use).
        if (!(error instanceof JetStreamApiError)) throw error;
        info = error.code === 10058 ? await streamInfo(jsm, stream) : undefined;
        if (!info) {
          throw new ConfigError(
            this.settings.setting,
            `cannot create NATS stream "${stream}" over "${subject}": ${errorMessage(error)}`,
            { cause: error },
          );
        }
      }
    }
    const subjects = info.config.subjects ?? [];
    if (!subjects.some((filter) => captures(filter, publishedTo))) {
      throw new ConfigError(
        this.settings.setting,
        `NATS stream "${stream}" exists but does not capture "${publishedTo}" (its subjects: ${
          subjects.join(', ') || 'none'
        }); choose another stream= or subject_prefix=, or add "${subject}" to the stream`,
      );
    }
  }

  private liveSession(): Session {
    const session = this.session;
    if (!session) throw new BrokerUnavailableError('nats: not connected');
    if (!session.link.up) throw new BrokerUnavailableError(`nats: ${session.link.reason}`);
    return session;
  }

  private async publishOne(
    session: Session,
    run: PublishRun,
    message: OutboxMessage,
  ): Promise<Outcome> {
    await session.slots.acquire();
    try {
      if (run.unavailable !== undefined) return { unavailable: run.unavailable };
      const subject = this.subject(message);
      const payload = encoder.encode(message.payload);
      try {
        // A PubAck flagged `duplicate` is a success too: the stream already has the event.
        await session.acks.publish(subject, payload, this.headers(message));
        return published;
      } catch (error) {
        const outcome = await this.classify(error, session, run, subject, payload.length);
        if ('unavailable' in outcome) run.giveUp(outcome.unavailable);
        return outcome;
      }
    } finally {
      session.slots.release();
    }
  }

  private subject(message: OutboxMessage): string {
    return `${this.settings.subjectPrefix}.${subjectToken(message.aggregateType)}.${subjectToken(message.eventType)}`;
  }

  /** The CloudEvents headers, then `Nats-Msg-Id` = event id for the server's dedup. */
  private headers(message: OutboxMessage): MsgHdrs {
    const result = natsHeaders();
    const attributes = binaryModeHeaders(message, this.source, bindingPrefix.nats);
    // Every name is new to `result`: append, without set's search for one to replace.
    for (const name in attributes) result.append(name, headerValue(attributes[name] as string));
    result.append(msgIdHeader, message.id);
    return result;
  }

  /**
   * Decides by error class (and the JetStream error code), not by message text: the message
   * refused (permanent), the server unreachable (the whole batch), or else retry this message.
   */
  private async classify(
    error: unknown,
    session: Session,
    run: PublishRun,
    subject: string,
    bytes: number,
  ): Promise<Outcome> {
    const { stream, timeoutMs, label } = this.settings;
    const reason = errorMessage(error);
    if (causedBy(error, InvalidArgumentError)) {
      // The client checks the server's max_payload before sending (the server would drop the connection).
      const limit = session.nc.info?.max_payload;
      return refused(
        `${reason} (${bytes} bytes + headers${limit ? `; max_payload ${limit}` : ''})`,
      );
    }
    if (causedBy(error, InvalidSubjectError) || causedBy(error, PermissionViolationError)) {
      return refused(`${reason} (subject ${subject})`);
    }
    const api = causedBy(error, JetStreamApiError);
    if (causedBy(error, NoRespondersError) || api?.code === 10059) {
      // The stream is gone (deleted while we run) or has no leader: not the event's fault.
      // The dispatcher reconnects, and connecting creates the stream again if it is missing.
      return {
        unavailable: `no stream captures subject ${subject} (stream ${stream} deleted or without a leader)`,
      };
    }
    if (api) {
      // 10054: larger than the stream's max_msg_size.
      const permanent = api.code === 10054;
      return { ok: false, error: `stream ${stream}: ${api.message} (code ${api.code})`, permanent };
    }
    if (!session.link.up) return { unavailable: session.link.reason };
    if (error instanceof TimeoutError) {
      if (!(await run.serverAnswers())) {
        return { unavailable: `no PubAck within ${timeoutMs} ms and no PONG from ${label}` };
      }
      return {
        ok: false,
        error: `no PubAck from stream ${stream} within ${timeoutMs} ms`,
        permanent: false,
      };
    }
    // Closed, draining, or a request cancelled because the connection went away.
    if (
      error instanceof ClosedConnectionError ||
      error instanceof DrainingConnectionError ||
      error instanceof ConnectionError ||
      error instanceof RequestError
    ) {
      return { unavailable: `${label}: ${reason}` };
    }
    return { ok: false, error: reason, permanent: false };
  }
}

function refused(error: string): PublishResult {
  return { ok: false, error, permanent: true };
}

/** `error` or the first of its causes that is a `type`. The client wraps errors in RequestError. */
function causedBy<T extends Error>(
  error: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: any constructor signature will do for instanceof
  type: abstract new (...args: any[]) => T,
): T | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof type) return e;
  }
  return undefined;
}

async function streamInfo(jsm: JetStreamManager, stream: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(stream);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === 10059) return undefined;
    throw error;
  }
}

/** The broker for `nats://[user:pass@|token@]host:4222?stream=…&subject_prefix=…`. */
export function createNatsBroker(params: BrokerUrlParams, source: string): EventBroker {
  return new NatsBroker(readSettings(params), source);
}
