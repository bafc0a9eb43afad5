import { BrokerUnavailableError } from '../common/errors.js';
import { assertPeerInstalled, loadWithPeer, type OptionalPeer } from '../common/peers.js';
import type { ConnectOptions, EventBroker, OutboxMessage, PublishResult } from './broker.js';
import type { Delivery, MessageSource } from './source.js';

/** How to build the real broker or source, and the client packages it imports. */
interface Loader<T> {
  peer: OptionalPeer;
  /** The URL's setting, named in the ConfigError when the client is not installed. */
  setting: string;
  load(): Promise<T>;
}

/**
 * A NATS, RabbitMQ or Kafka broker whose implementation, with its client library, is
 * imported on the first `connect()`: importing the package loads no broker client, and a
 * service that only enqueues need not install one. The URL's settings are read before
 * (brokerFromUrl), so a bad parameter still fails at once.
 */
export class LazyBroker implements EventBroker {
  private broker: EventBroker | undefined;
  private loading: Promise<EventBroker> | undefined;

  constructor(
    readonly name: string,
    private readonly loader: Loader<EventBroker>,
  ) {}

  /** ConfigError naming what to install, unless the client resolves. */
  assertInstalled(): void {
    assertPeerInstalled(this.loader.setting, this.loader.peer);
  }

  async connect(options?: ConnectOptions): Promise<void> {
    const { peer, setting, load } = this.loader;
    this.loading ??= loadWithPeer(setting, peer, load);
    // A failed import is not retried: the packages will not appear while we run.
    this.broker ??= await this.loading;
    await this.broker.connect(options);
  }

  publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    return this.broker ? this.broker.publish(batch) : this.notConnected();
  }

  check(): Promise<void> {
    if (!this.broker) return this.notConnected();
    return this.broker.check ? this.broker.check() : Promise.resolve();
  }

  validate(message: OutboxMessage): string | undefined {
    return this.broker?.validate?.(message);
  }

  async close(): Promise<void> {
    await this.broker?.close();
  }

  private notConnected(): Promise<never> {
    return Promise.reject(new BrokerUnavailableError(`${this.name}: not connected`));
  }
}

/** The receiving half likewise: the implementation is imported on `start()`. */
export class LazySource implements MessageSource {
  private source: MessageSource | undefined;

  constructor(
    readonly binding: MessageSource['binding'],
    readonly location: string,
    readonly needsLease: boolean,
    private readonly loader: Loader<MessageSource>,
  ) {}

  /** ConfigError naming what to install, unless the client resolves. */
  assertInstalled(): void {
    assertPeerInstalled(this.loader.setting, this.loader.peer);
  }

  /** Known once started (the implementation is loaded then). */
  get workingIntervalMs(): number | undefined {
    return this.source?.workingIntervalMs;
  }

  /** Known once started, like workingIntervalMs; until then the server alone. */
  get reading(): string {
    return this.source?.reading ?? this.location;
  }

  async start(onMessage: (delivery: Delivery) => void, onLost: (error: Error) => void) {
    const { peer, setting, load } = this.loader;
    this.source ??= await loadWithPeer(setting, peer, load);
    await this.source.start(onMessage, onLost);
  }

  check(): Promise<void> {
    if (!this.source) {
      return Promise.reject(new BrokerUnavailableError(`${this.location}: not started`));
    }
    return this.source.check();
  }

  backlog(): Promise<number> {
    if (!this.source) {
      return Promise.reject(new BrokerUnavailableError(`${this.location}: not started`));
    }
    return this.source.backlog();
  }

  async pause(): Promise<void> {
    await this.source?.pause();
  }

  async close(): Promise<void> {
    await this.source?.close();
  }
}
