import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import {
  BrokerUnavailableError,
  ConfigError,
  errorMessage,
  OutboxError,
} from '../../common/errors.js';
import { withTimeout } from '../../common/timeout.js';
import type { Delivery, MessageSource, MessageSourceOptions } from '../source.js';
import { connectAmqp, redact } from './connection.js';
import { amqpRoutingKey, routingKeyRefusal } from './messages.js';
import { declareOrFind } from './refusal.js';
import type { AmqpSourceSettings } from './settings.js';

/**
 * RabbitMQ as a message source: a durable single-active-consumer queue bound to the
 * exchange with the routing key of each handled event type, consumed with manual acks
 * (the queue and its type: settings.ts). A start binds the keys of its event types;
 * AMQP cannot list a queue's bindings, so the binding of a type no longer handled goes
 * when its first message arrives: that one meets the consumer's unknown-type policy, the
 * next never reach the queue.
 */
export function createAmqpSource(
  config: AmqpSourceSettings,
  options: MessageSourceOptions,
): MessageSource {
  return new AmqpSource(config, options);
}

class AmqpSource implements MessageSource {
  readonly binding = 'amqp';
  // The queue keeps one consumer process active at a time (x-single-active-consumer).
  readonly needsLease = false;
  readonly location: string;
  readonly reading: string;
  private readonly origin: string;
  private model: ChannelModel | undefined;
  private channel: Channel | undefined;
  /** Messages delivered on this channel and not acked (handed on or held while paused). */
  private unacked = 0;
  private started = false;
  private paused = false;
  private lostReported = false;
  private connectionClosed = false;
  private closing: Promise<void> | undefined;
  private lastError: Error | undefined;
  private onLost: ((error: Error) => void) | undefined;
  /** The routing keys of the event types handled, bound at start. */
  private readonly keys: Set<string>;
  /** Routing keys of other types that arrived, logged once each. */
  private readonly foreignKeys = new Set<string>();

  constructor(
    private readonly config: AmqpSourceSettings,
    private readonly options: MessageSourceOptions,
  ) {
    this.location = config.location;
    this.reading = `queue "${config.queue}"`;
    this.origin = `amqp ${config.queue}`;
    this.keys = this.routingKeys();
  }

  async start(onMessage: (delivery: Delivery) => void, onLost: (error: Error) => void) {
    if (this.model || this.closing) throw new Error('an AMQP source starts once');
    const { exchange, queue, queueType, timeoutMs } = this.config;
    const model = await this.connect();
    if (this.closing) {
      await model.close().catch(() => {});
      throw new BrokerUnavailableError(`${this.location}: closed while starting`);
    }
    this.model = model;
    this.watch(model);
    let step = 'open a channel';
    const rpc = <T>(next: string, call: () => Promise<T>) => {
      step = next;
      return withTimeout(call(), timeoutMs);
    };
    try {
      // Each declare on a channel of its own: a refusal closes the channel it came on.
      step = `declare exchange "${exchange}" (durable topic)`;
      await this.declare(
        `exchange "${exchange}"`,
        'a durable topic exchange',
        (channel) => channel.assertExchange(exchange, 'topic', { durable: true }),
        (channel) => channel.checkExchange(exchange),
      );
      const args = { 'x-single-active-consumer': true, 'x-queue-type': queueType };
      step = `declare queue "${queue}" (durable, ${JSON.stringify(args)})`;
      await this.declare(
        `queue "${queue}"`,
        `a durable queue with ${JSON.stringify(args)}`,
        (channel) => channel.assertQueue(queue, { durable: true, arguments: args }),
        (channel) => channel.checkQueue(queue),
      );
      const channel = await rpc('open a channel', () => model.createChannel());
      this.channel = channel;
      this.watch(channel);
      for (const key of this.keys) {
        await rpc(`bind queue "${queue}" to "${exchange}" with "${key}"`, () =>
          channel.bindQueue(queue, exchange, key),
        );
      }
      // Per consumer (not global): the bound on deliveries not yet acked.
      await rpc('set prefetch', () => channel.prefetch(this.options.maxInFlight));
      // Deliveries may come before consume() resolves: the handler is in place first.
      const handler = (message: ConsumeMessage | null) => this.deliver(channel, message, onMessage);
      await rpc(`consume from queue "${queue}"`, () => channel.consume(queue, handler));
    } catch (error) {
      await this.close();
      throw this.startError(error, step);
    }
    if (this.closing) throw new BrokerUnavailableError(`${this.location}: closed while starting`);
    this.onLost = onLost;
    this.started = true;
  }

  /**
   * `declare`s the exchange or the queue; a user without the configure permission (an
   * administrator made them) checks passively with `find` that it exists instead. Throws
   * the refusal that stands: the thing missing and not ours to declare, or declared with
   * other settings.
   */
  private async declare(
    what: string,
    shape: string,
    declare: (channel: Channel) => Promise<unknown>,
    find: (channel: Channel) => Promise<unknown>,
  ): Promise<void> {
    const model = this.model as ChannelModel;
    const outcome = await declareOrFind(model, this.config.timeoutMs, declare, find);
    if (outcome === undefined) return;
    const { refused, missing } = outcome;
    if (!missing) throw refused;
    throw new ConfigError(
      this.config.setting,
      `${this.location}: ${what} does not exist, and this user may not declare it (${this.redact(errorMessage(refused))}); have it declared beforehand as ${shape}, or grant the user configure permission on it`,
      { cause: refused },
    );
  }

  /** The queue's status: a round trip that also says whether the queue is still there. */
  async check(): Promise<void> {
    await this.backlog();
  }

  async backlog(): Promise<number> {
    const channel = this.channel;
    if (!channel || !this.started || this.closing || this.lostReported) {
      throw new BrokerUnavailableError(`${this.location}: not consuming`);
    }
    try {
      const { messageCount } = await withTimeout(
        channel.checkQueue(this.config.queue),
        this.config.timeoutMs,
      );
      return messageCount + this.unacked;
    } catch (error) {
      const text = `queue "${this.config.queue}" does not answer: ${errorMessage(error)}`;
      throw new BrokerUnavailableError(`${this.location}: ${this.redact(text)}`, { cause: error });
    }
  }

  /**
   * Stops handing deliveries on; the ones that still arrive (prefetch bounds them) stay
   * unacked and go back to the queue, in place, when the channel closes. Not basic.cancel:
   * on it a quorum queue makes a standby consumer active at once, which would receive
   * later messages of an aggregate while this process still works on earlier ones (seen
   * on RabbitMQ 3.10); keeping the consumer, the handover waits for close().
   */
  async pause(): Promise<void> {
    this.paused = true;
  }

  /** Closing the connection closes its channel; the server requeues what is unacked. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const model = this.model;
    if (!model || this.connectionClosed) return;
    // One timeout for both steps.
    const deadline = Date.now() + this.config.timeoutMs;
    try {
      // The channel first: the server reads its acks before the close that follows them
      // on the channel. Closing the connection at once, amqplib may write the
      // connection's close before acks still buffered for the channel, and the server
      // would requeue what was just acked.
      await withTimeout(this.channel?.close() ?? Promise.resolve(), this.config.timeoutMs).catch(
        () => {},
      );
      await withTimeout(model.close(), Math.max(1, deadline - Date.now()));
    } catch {
      // A server that does not answer the close: drop the socket (amqplib keeps it as `stream`).
      const connection = model.connection as unknown as { stream?: { destroy(): void } };
      connection.stream?.destroy();
    }
  }

  private async connect(): Promise<ChannelModel> {
    const name = `edupulse-outbox consumer ${this.options.consumer}`;
    return (await connectAmqp(this.config, name)).model;
  }

  private watch(emitter: ChannelModel | Channel): void {
    // An 'error' without a listener would crash the process; the 'close' after it reports.
    emitter.on('error', (error: Error) => {
      this.lastError = error;
    });
    emitter.on('close', (error?: Error) => {
      if (emitter === this.model) this.connectionClosed = true;
      this.lost(error ?? this.lastError, emitter === this.model ? 'connection' : 'channel');
    });
  }

  /**
   * Routing keys as the publisher makes them (it reads only these two fields). One over
   * AMQP's 255 bytes could never be bound (nor published): a ConfigError naming the
   * type, rather than a bind refused at every start as if the broker were away.
   */
  private routingKeys(): Set<string> {
    return new Set(
      this.options.events.map(({ aggregateType, type }) => {
        const key = amqpRoutingKey({ aggregateType, eventType: type });
        const refusal = routingKeyRefusal(key);
        if (refusal) throw new ConfigError('events', `${type}: ${refusal}`);
        return key;
      }),
    );
  }

  private deliver(
    channel: Channel,
    message: ConsumeMessage | null,
    onMessage: (delivery: Delivery) => void,
  ): void {
    // null: the server cancelled the consumer (the queue was deleted).
    if (!message) {
      this.lost(undefined, 'consumer', 'cancelled by the server');
      return;
    }
    this.unacked++;
    if (!this.keys.has(message.fields.routingKey)) this.foreign(message.fields.routingKey);
    if (this.paused || this.closing) return;
    let acked = false;
    const delivery: Delivery = {
      headers: deliveryHeaders(message),
      contentType: message.properties.contentType ?? undefined,
      body: message.content,
      // The delivery tag tells one message from another in logs (per channel, from 1).
      origin: `${this.origin}#${message.fields.deliveryTag}`,
      // `<aggregate_type>.<event_type>`: an aggregate type holds no dot.
      aggregateType: message.fields.routingKey.split('.', 1)[0] || undefined,
      ack: async () => {
        if (acked) return;
        acked = true;
        this.unacked--;
        try {
          channel.ack(message);
        } catch (error) {
          // The channel is gone: the server redelivers the message, the inbox knows it.
          this.options.logger.debug(
            { err: errorMessage(error), origin: this.origin },
            'ack not sent',
          );
        }
      },
    };
    try {
      onMessage(delivery);
    } catch (error) {
      this.options.logger.error(
        { err: errorMessage(error), origin: this.origin },
        'onMessage threw',
      );
    }
  }

  /**
   * A message of a routing key none of this consumer's types has: a type taken out of
   * `events` since the binding was made, or one that another process of this consumer (a
   * newer release, in a rolling deploy) bound to the shared queue. The binding is left:
   * removed here, it would stay removed for the newer process, whose events of that type
   * would then go elsewhere or nowhere once it takes over. Said once per key.
   */
  private foreign(key: string): void {
    if (this.foreignKeys.has(key)) return;
    this.foreignKeys.add(key);
    const { exchange, queue } = this.config;
    this.options.logger.info(
      { origin: this.origin, routingKey: key },
      `queue "${queue}" receives routing key "${key}", which no event type of this consumer has (its events meet onUnknownType); if no release of this consumer handles it any more, remove that binding from exchange "${exchange}" to the queue (management UI, or rabbitmqadmin)`,
    );
  }

  private lost(cause: Error | undefined, what: string, how = 'closed'): void {
    if (!this.started || this.closing || this.lostReported) return;
    this.lostReported = true;
    const reason = cause ? `: ${this.redact(errorMessage(cause))}` : '';
    const error = new BrokerUnavailableError(
      `${this.location}: ${what} of queue "${this.config.queue}" ${how}${reason}`,
      { cause },
    );
    this.options.logger.warn({ err: error.message }, 'AMQP source lost');
    try {
      this.onLost?.(error);
    } catch (thrown) {
      this.options.logger.error({ err: errorMessage(thrown) }, 'onLost threw');
    }
  }

  /**
   * What to grant for a step refused ACCESS_REFUSED, by the permissions RabbitMQ checks for
   * it (a topic permission refusing a bind is named by the server's reply, quoted before).
   */
  private permissionHint(step: string): string {
    const { exchange, queue } = this.config;
    const grant = step.startsWith('bind queue')
      ? `write permission on queue "${queue}" and read permission on exchange "${exchange}"`
      : step.startsWith('consume from queue')
        ? `read permission on queue "${queue}"`
        : undefined;
    return grant === undefined
      ? ''
      : `; grant the user ${grant} (docs/operations.md, "Least-privilege broker users")`;
  }

  /** A refused declaration (403-406 close its channel) is a ConfigError; the rest, an outage. */
  private startError(error: unknown, step: string): Error {
    if (error instanceof OutboxError) return error;
    const text = this.redact(errorMessage(error));
    const code = (error as { code?: unknown } | undefined)?.code;
    if (typeof code === 'number' && code >= 403 && code <= 406) {
      const hint =
        code === 403
          ? this.permissionHint(step)
          : step.startsWith('declare queue')
            ? '; delete it, or set ?queue='
            : '';
      return new ConfigError(
        this.config.setting,
        `${this.location}: RabbitMQ refused to ${step}: ${text}${hint}`,
        { cause: error },
      );
    }
    const cause = { cause: error };
    return new BrokerUnavailableError(`${this.location}: cannot ${step}: ${text}`, cause);
  }

  private redact(text: string): string {
    return redact(text, this.config);
  }
}

/**
 * `properties.headers` as text, plus `cloudEvents:id` from the message id when absent from
 * a message in binary mode (other `cloudEvents:` headers). Not otherwise: a message id on a
 * structured or plain message would make it look like a binary one without `specversion`.
 */
function deliveryHeaders(message: ConsumeMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  let binary = false;
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) {
    const text = headerText(value);
    if (text === undefined) continue;
    headers[name] = text;
    if (/^cloudevents[:_]/i.test(name)) binary = true;
  }
  const { messageId } = message.properties;
  if (binary && headers['cloudEvents:id'] === undefined && messageId != null) {
    headers['cloudEvents:id'] = String(messageId);
  }
  return headers;
}

/**
 * A header as the CloudEvents AMQP binding's canonical string: a producer may send an
 * attribute as the AMQP type of its CloudEvents type (a Timestamp as an AMQP timestamp,
 * Binary as a byte array), which must read as RFC 3339 and base64.
 */
function headerText(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value !== 'object') return String(value);
  // amqplib decodes AMQP timestamps and decimals as { '!': type, value }; an AMQP 0-9-1
  // timestamp is seconds since the epoch.
  const typed = value as { '!'?: string; value?: unknown };
  if (typed['!'] === 'timestamp') {
    const at = new Date(Number(typed.value) * 1000);
    return Number.isNaN(at.getTime()) ? String(typed.value) : at.toISOString();
  }
  if (typed['!'] === 'decimal') {
    const { places, digits } = typed.value as { places: number; digits: number };
    return String(digits / 10 ** places);
  }
  return JSON.stringify(value);
}
