import {
  AckPolicy,
  type ConsumerInfo,
  type ConsumerMessages,
  DeliverPolicy,
  JetStreamApiError,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { type NatsConnection, nanos, PermissionViolationError } from '@nats-io/transport-node';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../../common/errors.js';
import { withTimeout } from '../../common/timeout.js';
import type { Delivery, MessageSource, MessageSourceOptions, ResumePoints } from '../source.js';
import { dialNats } from './connection.js';
import { permissionDenied } from './errors.js';
import type { NatsSourceSettings } from './settings.js';
import { ensureStream } from './stream.js';

/**
 * Durable consumers this process has made, with when their stream was created: one gone
 * since was deleted by someone, with its stream if that is younger now.
 */
const knownDurables = new Map<string, string>();
/** Durables this process deleted to make again, and the stream sequence to resume after. */
const recreating = new Map<string, number>();

/** Positions kept in this process's memory, for a source given no `resume`. */
function resumeInMemory(location: string, consumer: string): ResumePoints {
  const key = (stream: string) => `${location} ${stream} ${consumer}`;
  return {
    keep: async (stream, afterSeq) => {
      recreating.set(key(stream), afterSeq);
    },
    find: async (stream) => recreating.get(key(stream)),
    drop: async (stream) => {
      recreating.delete(key(stream));
    },
  };
}

/**
 * A durable JetStream pull consumer named after the consumer, over `<subject_prefix>.>`,
 * with explicit acks and `max_ack_pending` = the in-flight bound.
 *
 * JetStream shares a pull consumer's messages out among every process pulling from it,
 * and redelivers an unacked message after `ack_wait` whatever came since: either would
 * let one aggregate's events be applied out of order. So one process receives at a time
 * (`needsLease`: the consumer holds a lease in PostgreSQL while started), and each start
 * re-creates the durable consumer from its ack floor: everything not acked before comes
 * again, in stream order, ahead of anything newer (the inbox drops what was applied).
 */
class NatsSource implements MessageSource {
  readonly binding = 'nats';
  readonly needsLease = true;
  readonly location: string;
  readonly reading: string;
  readonly workingIntervalMs: number;
  private nc: NatsConnection | undefined;
  private messages: ConsumerMessages | undefined;
  private closing = false;
  /**
   * Acks taken during one turn of the event loop, sent together at its end. Handlers
   * finish one by one, each as its own database answers, and the client writes to the
   * socket once per microtask in which something was sent: acked at once, every message
   * cost a write (a system call, and a wake-up of the server) of its own. Sent together,
   * a consumer with the inbox applied 10-16 % more events a second (bench/README.md).
   */
  private unsent: JsMsg[] = [];
  private sending: NodeJS.Immediate | undefined;

  constructor(
    private readonly settings: NatsSourceSettings,
    private readonly options: MessageSourceOptions,
  ) {
    this.location = settings.location;
    this.reading = `stream "${settings.stream}", durable consumer "${options.consumer}"`;
    // Three marks per ack wait: one late timer or a slow round trip still leaves two.
    this.workingIntervalMs = Math.min(5_000, Math.floor((settings.ackWaitS * 1000) / 3));
  }

  async start(
    onMessage: (delivery: Delivery) => void,
    onLost: (error: Error) => void,
  ): Promise<void> {
    const nc = await dialNats(this.settings, `edupulse-outbox consumer ${this.options.consumer}`);
    this.nc = nc;
    try {
      await ensureStream(nc, this.settings);
      await this.resetConsumer(nc);
      const consumer = await jetstream(nc).consumers.get(
        this.settings.stream,
        this.options.consumer,
      );
      // Pulled by bytes: the server sends what a pull asks for as fast as it can, and a
      // client that falls behind by its max_pending (64 MiB by default) is cut off as a slow
      // consumer, the messages on their way lost until ack_wait brings them back, after
      // later ones of their aggregates (256 events of 600 KB asked at once did so). The
      // messages in flight stay bounded by the durable's max_ack_pending (maxInFlight).
      this.messages = await consumer.consume({
        max_bytes: pullBytes(nc.info?.max_payload),
        abort_on_missing_resource: true,
        callback: (message) => onMessage(this.delivery(message)),
      });
    } catch (error) {
      await this.close();
      if (error instanceof ConfigError || error instanceof BrokerUnavailableError) throw error;
      const denied = permissionDenied(error, this.settings.subjectPrefix);
      if (denied) {
        throw new ConfigError(
          this.settings.setting,
          `NATS at ${this.location}: consumer ${this.options.consumer}: ${denied}`,
          { cause: error },
        );
      }
      throw new BrokerUnavailableError(
        `NATS at ${this.location}: consumer ${this.options.consumer}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    const lost = (reason: string) => {
      if (!this.closing) onLost(new BrokerUnavailableError(`NATS at ${this.location}: ${reason}`));
    };
    void this.messages.closed().then(
      (error) => lost(`receiving stopped${error ? `: ${errorMessage(error)}` : ''}`),
      (error) => lost(`receiving stopped: ${errorMessage(error)}`),
    );
    void nc
      .closed()
      .then((error) => lost(`connection closed${error ? `: ${errorMessage(error)}` : ''}`));
    void this.watchStatus(nc, onLost);
  }

  /**
   * The connection's status. A dropped connection loses the source at once, though the
   * client would reconnect by itself: the server counts what it sent into the dropped
   * connection as delivered and sends it again only after ack_wait, by then behind later
   * events of its aggregate if the pull went on over the reconnected client (they would
   * be applied first and it parked as stale). Started again, the durable is re-created
   * from its ack floor and sends everything not acked in stream order. An ack the server
   * does not permit is dropped without a word to the publisher: every message would come
   * again after ack_wait, and again at each start, for ever. The server reports the
   * violation on the status; it is a setting, so the consumer stops (`fatal`) naming it.
   */
  private async watchStatus(nc: NatsConnection, onLost: (error: Error) => void) {
    for await (const status of nc.status()) {
      if (this.closing) return;
      if (status.type === 'disconnect') {
        onLost(new BrokerUnavailableError(`NATS at ${this.location}: connection lost`));
        return;
      }
      const error = status.type === 'error' ? status.error : undefined;
      if (!(error instanceof PermissionViolationError) || this.closing) continue;
      const denied = permissionDenied(error, this.settings.subjectPrefix) ?? errorMessage(error);
      onLost(
        new ConfigError(
          this.settings.setting,
          `NATS at ${this.location}: consumer ${this.options.consumer}: ${denied}`,
          { cause: error },
        ),
      );
      return;
    }
  }

  /**
   * Re-creates the durable consumer from its ack floor, or creates it. A consumer that has
   * acked nothing yet reports a floor of 0, whatever it started from: it is re-created from
   * its own start, else a restart after a run that acked nothing would deliver the whole
   * stream again. So a first start with `deliver=new` starts at the sequence after the
   * stream's last, which the next start can read back, rather than at "new", which it
   * cannot.
   */
  private async resetConsumer(nc: NatsConnection): Promise<void> {
    const { stream, subjectPrefix, ackWaitS, deliver, timeoutMs } = this.settings;
    const name = this.options.consumer;
    const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    let floor: number | undefined;
    let startFromFirst = false;
    const durable = `${this.location} ${stream} ${name}`;
    const resume = this.options.resume ?? resumeInMemory(this.location, name);
    try {
      const info = await jsm.consumers.info(stream, name);
      this.assertSameInbox(info.config.description);
      floor = resumeAfter(info);
      // Kept until it is made again: a start that deletes it and ends before that (killed,
      // or the server refusing the new one) leaves the next start resuming from here, not
      // from `deliver`.
      await resume.keep(stream, floor);
      await jsm.consumers.delete(stream, name);
    } catch (error) {
      // 10014: no such consumer yet.
      if (!(error instanceof JetStreamApiError && error.code === 10014)) throw error;
      const streamInfo = await jsm.streams.info(stream);
      const log = { location: this.location, consumer: name, stream };
      // Made again since this consumer last read it (deleted, then created by a dispatcher):
      // everything in it is newer than what was read, whatever `deliver` says.
      const made = knownDurables.get(durable);
      let remade = made !== undefined && made !== streamInfo.created;
      floor = await resume.find(stream);
      if (floor !== undefined && floor > streamInfo.state.last_seq) {
        // Kept before the stream was made again, whose sequence started over.
        remade = true;
        floor = undefined;
      }
      if (remade) {
        this.options.logger.warn(
          log,
          'the stream was made again since this consumer last read it (its durable consumer went with it): reading the new stream from its start; what the old one held and was not read is gone with it',
        );
        startFromFirst = true;
      } else if (floor !== undefined) {
        this.options.logger.info(
          { ...log, after: floor },
          `the durable JetStream consumer is gone since an earlier start deleted it to make it again: made again from where that start left it (after stream sequence ${floor})`,
        );
      } else if (made !== undefined) {
        // The durable holds the consumer's position: gone, it starts as the first time did.
        this.options.logger.warn(
          { ...log, deliver },
          deliver === 'new'
            ? "the durable JetStream consumer was deleted: created again from the stream's end (deliver=new); what was published since it was deleted is skipped"
            : "the durable JetStream consumer was deleted: created again from the stream's start (deliver=all); the inbox counts what it applied before as duplicates",
        );
      }
      if (floor === undefined && deliver === 'new' && !startFromFirst) {
        floor = streamInfo.state.last_seq;
      }
    }
    const start =
      floor !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 }
        : { deliver_policy: DeliverPolicy.All };
    try {
      await jsm.consumers.add(stream, {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(ackWaitS * 1000),
        max_ack_pending: this.options.maxInFlight,
        max_deliver: -1,
        filter_subject: `${subjectPrefix}.>`,
        description: consumerDescription(this.options.inbox),
        ...start,
      });
      knownDurables.set(durable, (await jsm.streams.info(stream)).created);
      await resume.drop(stream).catch((error: unknown) => {
        // Left: a later start that finds no durable (deleted by hand) resumes from it.
        this.options.logger.warn(
          { location: this.location, consumer: name, stream, err: errorMessage(error) },
          'could not forget the position kept while the durable JetStream consumer was made again',
        );
      });
    } catch (error) {
      if (!(error instanceof JetStreamApiError)) throw error;
      throw new ConfigError(
        this.settings.setting,
        `NATS refused consumer "${name}" on stream "${stream}": ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }

  /**
   * Refuses a durable of this name that another inbox's consumer made: deleting it (to
   * re-create it from its ack floor, as every start does) would leave that consumer
   * starting again and deleting this one's in turn, for ever, the stream's messages
   * split between two services. A durable of an earlier release names no inbox: taken.
   */
  private assertSameInbox(description: string | undefined): void {
    const theirs = description?.match(INBOX_DESCRIPTION)?.[1];
    const ours = this.options.inbox;
    if (theirs === undefined || ours === undefined || theirs === ours) return;
    const { stream, setting } = this.settings;
    const name = this.options.consumer;
    throw new ConfigError(
      setting,
      `NATS consumer "${name}" on stream "${stream}" is the consumer of the inbox ${theirs}, not of ${ours}: two services reading one stream need a consumer name each (consume({ consumer })); if this consumer's inbox moved from there, delete the old one first: nats consumer rm ${stream} ${name}`,
    );
  }

  private delivery(message: JsMsg): Delivery {
    const headers: Record<string, string> = {};
    if (message.headers) {
      // Iterated: get() looks each name up through a fresh list of every name.
      for (const [name, values] of message.headers) headers[name] = values[0] ?? '';
    }
    return {
      headers,
      contentType: headers['content-type'] ?? headers['Content-Type'],
      body: message.data,
      origin: `nats ${this.settings.stream}#${message.seq}`,
      aggregateType: subjectAggregateType(message.subject, this.settings.subjectPrefix),
      ack: async () => {
        // A plain ack: if it is lost, the message comes again and the inbox knows it.
        this.unsent.push(message);
        this.sending ??= setImmediate(() => this.sendAcks());
      },
      working: () => {
        if (this.nc && !this.nc.isClosed()) message.working();
      },
    };
  }

  async check(): Promise<void> {
    const nc = this.nc;
    if (!nc || nc.isClosed())
      throw new BrokerUnavailableError(`NATS at ${this.location}: not connected`);
    try {
      await withTimeout(nc.flush(), this.settings.timeoutMs);
    } catch (error) {
      throw new BrokerUnavailableError(`NATS at ${this.location}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  async backlog(): Promise<number> {
    const nc = this.nc;
    if (!nc || nc.isClosed())
      throw new BrokerUnavailableError(`NATS at ${this.location}: not connected`);
    const { stream, timeoutMs } = this.settings;
    try {
      const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
      const info = await jsm.consumers.info(stream, this.options.consumer);
      return info.num_pending + info.num_ack_pending;
    } catch (error) {
      throw new BrokerUnavailableError(`NATS at ${this.location}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  /** The acks taken so far, onto the connection (whose drain() on close sends what it holds). */
  private sendAcks(): void {
    clearImmediate(this.sending);
    this.sending = undefined;
    const messages = this.unsent;
    this.unsent = [];
    if (!this.nc || this.nc.isClosed()) return;
    for (const message of messages) {
      try {
        message.ack();
      } catch {
        // The connection closed under it: the message comes again.
      }
    }
  }

  async pause(): Promise<void> {
    this.closing = true;
    // Stops pulling; acks still go out on the connection.
    await this.messages?.close().catch(() => {});
  }

  async close(): Promise<void> {
    this.closing = true;
    this.sendAcks();
    const nc = this.nc;
    this.nc = undefined;
    await this.messages?.close().catch(() => {});
    if (nc && !nc.isClosed()) {
      // drain() sends the acks still buffered before the socket closes.
      await withTimeout(nc.drain(), this.settings.timeoutMs).catch(() => {});
      await nc.close().catch(() => {});
    }
  }
}

/** The consumer side of `nats://…?stream=…&subject_prefix=…[&ack_wait_s=30&deliver=all]`. */
export function createNatsSource(
  settings: NatsSourceSettings,
  options: MessageSourceOptions,
): MessageSource {
  return new NatsSource(settings, options);
}

const INBOX_DESCRIPTION = /^EduPulse outbox consumer \(inbox (.+)\)$/;

/** The durable's description: whose inbox it feeds, where that is known. */
function consumerDescription(inbox: string | undefined): string {
  return inbox === undefined
    ? 'EduPulse outbox consumer'
    : `EduPulse outbox consumer (inbox ${inbox})`;
}

/**
 * The stream sequence a re-created consumer resumes after: its ack floor once it has acked
 * something; before that, where it was created to start (JetStream reports a floor of 0
 * then, which would mean the stream's first message).
 */
export function resumeAfter(info: ConsumerInfo): number {
  if (info.ack_floor.consumer_seq > 0) return info.ack_floor.stream_seq;
  const { deliver_policy, opt_start_seq } = info.config;
  if (deliver_policy === DeliverPolicy.StartSequence && opt_start_seq !== undefined) {
    return opt_start_seq - 1;
  }
  // Made by an earlier version with deliver=new, nothing delivered: its start is there.
  if (deliver_policy === DeliverPolicy.New && info.delivered.consumer_seq === 0) {
    return info.delivered.stream_seq;
  }
  return 0;
}

/**
 * The aggregate type of a subject as the dispatcher publishes it,
 * `<subject_prefix>.<aggregate_type>.<event_type>`; undefined for another shape (another
 * producer's subject), which then says nothing about it.
 */
function subjectAggregateType(subject: string, prefix: string): string | undefined {
  const tokens = subject.split('.');
  return tokens.length === 3 && tokens[0] === prefix ? tokens[1] : undefined;
}

/**
 * The bytes one pull asks for: well under a server's default max_pending (64 MiB), and
 * room for two of the largest messages the server takes (a pull must fit a whole one).
 */
export function pullBytes(maxPayload: number | undefined): number {
  return Math.max(PULL_BYTES, 2 * (maxPayload ?? 0) + 64 * 1024);
}

const PULL_BYTES = 16 * 1024 * 1024;
