import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../../common/errors.js';
import { formatBytes, sizeOverLimit } from '../../common/text.js';
import { withTimeout } from '../../common/timeout.js';
import {
  type ConnectOptions,
  type EventBroker,
  nameRefusal,
  type OutboxMessage,
  type PublishResult,
  payloadTooLarge,
  published,
} from '../broker.js';
import { attributesTextLength, binaryModeHeaders, bindingPrefix } from '../cloudevents.js';
import { dialNats } from './connection.js';
import { classifyPublishError, type Outcome } from './errors.js';
import { PubAckInbox } from './pub-acks.js';
import type { NatsSettings } from './settings.js';
import { ensureStream, streamShortfalls } from './stream.js';
import { headerValue, subjectLengthRefusal, subjectToken } from './subjects.js';
import { Link, PublishRun, Slots } from './transport.js';

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
/** The largest header block JetStream stores with a message (a 16-bit length). */
const JETSTREAM_HEADERS_MAX = 65535;

/**
 * NATS JetStream: each event is stored in `stream` under
 * `<subject_prefix>.<aggregate_type>.<event_type>` as a binary-mode CloudEvent, with
 * `Nats-Msg-Id` = `<event id>@<source>` so the server drops a re-publish within the
 * duplicate window.
 */
class NatsBroker implements EventBroker {
  readonly name = 'nats';
  private session: Session | undefined;

  constructor(
    private readonly settings: NatsSettings,
    private readonly source: string,
  ) {}

  async connect(options?: ConnectOptions): Promise<void> {
    if (this.session?.link.up) return;
    await this.close();
    const nc = await dialNats(this.settings, 'edupulse-outbox');
    // Watching from the start, so a drop during the stream check is not missed.
    const link = new Link(nc, this.settings.location);
    try {
      const found = await ensureStream(nc, this.settings);
      for (const shortfall of found ? streamShortfalls(found, this.settings) : []) {
        options?.logger?.warn({ broker: this.name, stream: this.settings.stream }, shortfall);
      }
    } catch (error) {
      await nc.close().catch(() => {});
      if (error instanceof ConfigError || error instanceof BrokerUnavailableError) throw error;
      throw new BrokerUnavailableError(
        `NATS at ${this.settings.location}: stream ${this.settings.stream}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    this.session = {
      nc,
      acks: new PubAckInbox(nc, this.settings.timeoutMs, this.settings.stream),
      link,
      slots: new Slots(this.settings.maxInFlight),
      running: new Set(),
    };
  }

  /**
   * Names that would change a subject's shape (`.` splits a token, `*` and `>` are
   * wildcards to subscribers) or be renamed in it (outside printable ASCII: two names
   * would share a subject), subjects longer than the server reads in a control line
   * (maxSubjectBytes), and payloads, with their headers, over the server's max_payload.
   */
  validate(message: OutboxMessage): string | undefined {
    const refusal =
      nameRefusal(
        message,
        /[^\x21-\x7e]|[.*>]/u,
        'a NATS subject token (printable ASCII only: no ".", "*", ">", white space or other characters)',
      ) ?? subjectLengthRefusal(this.subject(message), message);
    if (refusal) return refusal;
    const limit = this.session?.nc.info?.max_payload;
    if (!limit) return undefined;
    const bytes = Buffer.byteLength(message.payload);
    if (bytes > limit) return payloadTooLarge(bytes, limit, "the NATS server's max_payload");
    return this.headersRefusal(message, bytes, limit);
  }

  /**
   * The server counts the headers into max_payload too, and the client refuses the message
   * each time it is sent: refused here, at claim. Measured only when a bound (a character
   * percent-encoded as up to 9 bytes, plus the fixed headers) says it might not fit.
   */
  private headersRefusal(message: OutboxMessage, bytes: number, limit: number): string | undefined {
    const room = Math.min(limit - bytes, JETSTREAM_HEADERS_MAX);
    if (9 * attributesTextLength(message, this.source) + 1024 <= room) return undefined;
    const headerBytes = (this.headers(message) as unknown as { encode(): Uint8Array }).encode()
      .length;
    if (headerBytes > JETSTREAM_HEADERS_MAX) {
      return `headers: the CloudEvents headers (aggregate_id and the event's headers among them) take ${formatBytes(headerBytes)}, over the ${formatBytes(JETSTREAM_HEADERS_MAX)} JetStream stores with a message`;
    }
    if (bytes + headerBytes <= limit) return undefined;
    const [total, max] = sizeOverLimit(bytes + headerBytes, limit);
    return `payload and headers: ${formatBytes(bytes)} of payload and ${formatBytes(headerBytes)} of CloudEvents headers, ${total} together, exceed the NATS server's max_payload (${max})`;
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
      if (run.forbidden !== undefined) {
        // No event is at fault and no retry can help: the dispatcher stops (run exits 2)
        // and every event stays in the outbox, none dead-lettered.
        throw new ConfigError(
          this.settings.setting,
          `NATS at ${this.settings.location}: ${run.forbidden}`,
        );
      }
      if (run.unavailable !== undefined || outcomes === undefined) {
        throw new BrokerUnavailableError(`nats: ${run.unavailable ?? 'unavailable'}`);
      }
      // No outcome is `unavailable` or `forbidden` here: each of those gave the run up.
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
      // The dispatcher's claim-time check (validate) keeps these away; a direct caller too,
      // since the server would drop the connection.
      const tooLong = subjectLengthRefusal(subject, message);
      if (tooLong) return { ok: false, error: tooLong, permanent: true };
      const payload = encoder.encode(message.payload);
      try {
        // A PubAck flagged `duplicate` is a success too: the stream already has the event.
        await session.acks.publish(subject, payload, this.headers(message));
        return published;
      } catch (error) {
        const outcome = await classifyPublishError(error, {
          nc: session.nc,
          link: session.link,
          run,
          settings: this.settings,
          subject,
          bytes: payload.length,
        });
        if ('forbidden' in outcome) run.forbid(outcome.forbidden);
        else if ('unavailable' in outcome) run.giveUp(outcome.unavailable);
        return outcome;
      }
    } finally {
      session.slots.release();
    }
  }

  private subject(message: OutboxMessage): string {
    return `${this.settings.subjectPrefix}.${subjectToken(message.aggregateType)}.${subjectToken(message.eventType)}`;
  }

  /**
   * The CloudEvents headers (datacontenttype also as `content-type`), then `Nats-Msg-Id`
   * for the server's dedup: `<event id>@<source>`. CloudEvents makes only the two
   * together unique, and a stream shared by several services would drop one service's
   * event as a repeat of another's that has the same id (the event id, a UUID, cannot
   * hold an `@`, so no two pairs give one text).
   */
  private headers(message: OutboxMessage): MsgHdrs {
    const result = natsHeaders();
    const attributes = binaryModeHeaders(message, this.source, bindingPrefix.nats);
    // Every name is new to `result`: append, without set's search for one to replace.
    for (const name in attributes) result.append(name, headerValue(attributes[name] as string));
    // The NATS binding maps datacontenttype to a header of the prefix, as every other
    // attribute; content-type stays for readers that take the protocol's own.
    result.append(`${bindingPrefix.nats}datacontenttype`, attributes['content-type'] as string);
    result.append(msgIdHeader, `${message.id}@${this.source}`);
    return result;
  }
}

/** The broker for `nats://[user:pass@|token@]host:4222?stream=…&subject_prefix=…`. */
export function createNatsBroker(settings: NatsSettings, source: string): EventBroker {
  return new NatsBroker(settings, source);
}
