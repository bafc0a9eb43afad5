import type { EventBroker, OutboxMessage, PublishResult } from '../brokers/broker.js';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { withTimeout } from '../common/timeout.js';

/**
 * The dispatcher's hold on its broker: connected once for all lanes, probed while idle,
 * every publish bounded by a timeout, and closed after an outage so that the next round
 * connects afresh. Whatever the broker throws on connecting or probing becomes a
 * BrokerUnavailableError, unless it refuses its configuration (ConfigError).
 */
export class BrokerLink {
  connected = false;
  private connecting: Promise<void> | undefined;
  /** Connected before: a reconnect is logged at debug (`dispatching again` ends an outage). */
  private everConnected = false;

  constructor(
    private readonly broker: EventBroker,
    private readonly publishTimeoutMs: number,
    private readonly logger: Logger,
  ) {}

  get name(): string {
    return this.broker.name;
  }

  /** Connects unless connected; lanes that find it down at once share one attempt. */
  ensure(): Promise<void> {
    if (this.connected) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** One round trip to an idle broker (when it has `check`), within 5 s at most. */
  async check(): Promise<void> {
    if (!this.broker.check) return;
    try {
      await withTimeout(this.broker.check(), Math.min(this.publishTimeoutMs, 5000));
    } catch (error) {
      throw error instanceof BrokerUnavailableError
        ? error
        : new BrokerUnavailableError(
            `${this.broker.name} does not answer: ${errorMessage(error)}`,
            { cause: error },
          );
    }
  }

  /** The broker's `validate`, if it has one. */
  validate(message: OutboxMessage): string | undefined {
    return this.broker.validate?.(message);
  }

  /** One round, or BrokerUnavailableError when the broker has not answered in time. */
  publish(round: readonly OutboxMessage[]): Promise<PublishResult[]> {
    return withTimeout(
      this.broker.publish(round),
      this.publishTimeoutMs,
      () =>
        new BrokerUnavailableError(
          `${this.broker.name} did not answer within ${this.publishTimeoutMs} ms`,
        ),
    );
  }

  /** After an outage: the next round connects again. */
  async drop(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await this.broker.close().catch(() => {});
  }

  /** Flushes and closes (stop). */
  async close(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await this.broker.close();
  }

  private async connect(): Promise<void> {
    try {
      await this.broker.connect({ logger: this.logger });
    } catch (error) {
      throw error instanceof BrokerUnavailableError || error instanceof ConfigError
        ? error
        : new BrokerUnavailableError(
            `cannot connect to ${this.broker.name}: ${errorMessage(error)}`,
            { cause: error },
          );
    }
    this.connected = true;
    // During an outage that connecting does not end (a topic gone, a stream refused) each
    // backoff step connects again: one line per step is the outage's own.
    if (this.everConnected) this.logger.debug({ broker: this.broker.name }, 'broker connected');
    else this.logger.info({ broker: this.broker.name }, 'broker connected');
    this.everConnected = true;
  }
}
