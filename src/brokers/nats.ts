import {
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  InvalidArgumentError,
  InvalidSubjectError,
  type MsgHdrs,
  type NatsConnection,
  type NodeConnectionOptions,
  NoRespondersError,
  nanos,
  connect as natsConnect,
  headers as natsHeaders,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../errors.js';
import { binaryModeHeaders, bindingPrefix, type OutboxMessage } from '../events/cloudevents.js';
import { redactUrl } from '../observability/logger.js';
import { withTimeout } from '../timeout.js';
import { type EventBroker, type PublishResult, published } from './broker.js';
import type { BrokerUrlParams } from './names.js';

/** Settings of the NATS JetStream broker, read from the broker URL's query parameters. */
interface NatsSettings {
  /** `host:port` of the server. */
  server: string;
  /** The server URL without query and with credentials masked, for messages. */
  label: string;
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
  const username = decodeCredential(url.username);
  const password = decodeCredential(url.password);
  return {
    server: `${url.hostname || '127.0.0.1'}:${url.port || '4222'}`,
    label: serverLabel(url),
    // A user without a password is a token, as in the nats CLI's URLs.
    ...(password ? { user: username, pass: password } : username ? { token: username } : {}),
    stream: params.string('stream', 'EDUPULSE', NAME, NAME_HINT),
    subjectPrefix: params.string('subject_prefix', 'edupulse', NAME, NAME_HINT),
    maxInFlight: params.integer('max_in_flight', 256, 1, 65_536),
    duplicateWindowS: params.integer('duplicate_window_s', 120, 1, 7 * 24 * 3600),
    timeoutMs: params.integer('timeout_ms', 5000, 100, 120_000),
  };
}

/** URL user info is percent-encoded; a stray `%` is taken literally rather than refused. */
function decodeCredential(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** `nats://user:***@host:4222`: no query, no password, no token. */
function serverLabel(url: URL): string {
  const bare = new URL(url.href);
  bare.search = '';
  bare.hash = '';
  if (bare.username && !bare.password) bare.username = '***';
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

/**
 * Header value per the CloudEvents NATS binding: space, `"`, `%` and everything outside
 * printable ASCII are percent-encoded as UTF-8 bytes (a raw CR or LF would break the
 * header block; the client refuses them).
 */
export function headerValue(value: string): string {
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

/** How one message ended: a result for the dispatcher, or "the server is unreachable". */
type Outcome = PublishResult | { unavailable: string };

/** A connected client: its JetStream context, link state and in-flight bound. */
interface Session {
  nc: NatsConnection;
  js: JetStreamClient;
  link: Link;
  slots: Slots;
  /** `publish` calls not finished yet, for `close` to wait on. */
  running: Set<Promise<unknown>>;
}

const encoder = new TextEncoder();

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
    const js = jetstream(nc, { timeout: this.settings.timeoutMs });
    this.session = {
      nc,
      js,
      link,
      slots: new Slots(this.settings.maxInFlight),
      running: new Set(),
    };
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
            'broker',
            `cannot create NATS stream "${stream}" over "${subject}": ${errorMessage(error)}`,
            { cause: error },
          );
        }
      }
    }
    const subjects = info.config.subjects ?? [];
    if (!subjects.some((filter) => captures(filter, publishedTo))) {
      throw new ConfigError(
        'broker',
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
        await session.js.publish(subject, payload, {
          msgID: message.id,
          headers: this.headers(message),
          timeout: this.settings.timeoutMs,
        });
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

  private headers(message: OutboxMessage): MsgHdrs {
    const result = natsHeaders();
    for (const [name, value] of Object.entries(
      binaryModeHeaders(message, this.source, bindingPrefix.nats),
    )) {
      result.set(name, headerValue(value));
    }
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
    if (causedBy(error, NoRespondersError)) {
      return refused(`no stream captures subject ${subject} (no responders)`);
    }
    const api = causedBy(error, JetStreamApiError);
    if (api) {
      // 10054: larger than the stream's max_msg_size; 10059: the stream was deleted.
      const permanent = api.code === 10054 || api.code === 10059;
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
