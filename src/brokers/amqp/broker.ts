import { BrokerUnavailableError } from '../../common/errors.js';
import {
  type EventBroker,
  nameRefusal,
  type OutboxMessage,
  type PublishResult,
  payloadTooLarge,
} from '../broker.js';
import { AMQP_DEFAULT_FRAME_MAX, headerFrameRefusal, routingOf } from './messages.js';
import { type AmqpConfig, AmqpSession } from './session.js';
import type { AmqpSettings } from './settings.js';

/**
 * RabbitMQ: a confirm channel, persistent `mandatory` messages to a topic exchange, routing
 * key `<aggregate_type>.<event_type>`, CloudEvents in binary mode (AMQP binding).
 */
export function createAmqpBroker(settings: AmqpSettings, source: string): EventBroker {
  return new AmqpBroker({ ...settings, source });
}

class AmqpBroker implements EventBroker {
  readonly name = 'amqp';
  private session: AmqpSession | undefined;
  /** publish() calls not yet settled: close() waits for them. */
  private readonly active = new Set<Promise<PublishResult[]>>();
  private closing: Promise<void> | undefined;
  private connecting: Promise<void> | undefined;
  /** Where the next connect starts among the URL's servers: after the one that failed. */
  private nextServer = 0;

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
   * wildcards to bindings), routing keys over AMQP's 255 bytes, properties over one frame
   * of the connection's frame_max, bodies over max_message_bytes.
   */
  validate(message: OutboxMessage): string | undefined {
    const refusal = nameRefusal(
      message,
      /[.*#\s]/u,
      'an AMQP routing key word (no ".", "*", "#" or white space)',
    );
    if (refusal) return refusal;
    const keyRefusal = routingOf(message).refusal;
    if (keyRefusal) return keyRefusal;
    const frameMax = this.session?.frameMax ?? this.config.frameMax ?? AMQP_DEFAULT_FRAME_MAX;
    const headerRefusal = headerFrameRefusal(message, this.config.source, frameMax);
    if (headerRefusal) return headerRefusal;
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
    await this.retire();
    this.session = await AmqpSession.open(this.config, this.nextServer);
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
    if (this.closing)
      throw new BrokerUnavailableError(`${this.config.location}: broker is closing`);
    if (!this.session) throw new BrokerUnavailableError(`${this.config.location}: not connected`);
    if (this.session.failure) throw this.session.failure;
    return this.session;
  }

  private async flushAndClose(): Promise<void> {
    // A connect() under way would otherwise leave a session open after close().
    await this.connecting?.catch(() => {});
    // Every accepted message is confirmed, refused, or failed with the session (which
    // the confirm timeout bounds) before the connection goes.
    await Promise.allSettled(this.active);
    await this.retire();
  }

  /**
   * Closes the session. One that failed (its connection dropped, or its server went
   * silent) sends the next connect to the server after its own: with several servers,
   * a dispatcher fails over instead of waiting for the one that went away.
   */
  private async retire(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (!session) return;
    if (session.failure) this.nextServer = (session.server + 1) % this.config.servers.length;
    await session.shutdown();
  }
}
