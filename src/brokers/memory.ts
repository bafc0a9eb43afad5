import { BrokerUnavailableError } from '../common/errors.js';
import type { OutboxMessage } from './broker.js';
import { type EventBroker, type PublishResult, published } from './broker.js';

export interface MemoryBrokerOptions {
  /**
   * Decides the fate of each message: return a PublishResult to override success, or
   * throw BrokerUnavailableError to fail the whole batch. For tests of the dispatcher.
   */
  onPublish?: (message: OutboxMessage) => PublishResult | undefined;
  /** Delay before each batch settles, to hold work in flight. Default 0. */
  latencyMs?: number;
  /** Called by `check()`: throw BrokerUnavailableError to play a broker that is down. */
  onCheck?: () => void;
}

/** Keeps every accepted message in `messages`, in the order accepted. For tests. */
export class MemoryBroker implements EventBroker {
  readonly name = 'memory';
  readonly messages: OutboxMessage[] = [];
  connected = false;
  /** Number of `publish` calls. */
  calls = 0;
  private readonly options: MemoryBrokerOptions;

  constructor(options: MemoryBrokerOptions = {}) {
    this.options = options;
  }

  async connect(): Promise<void> {
    this.connected = true;
  }

  async publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    this.calls++;
    if (!this.connected) throw new BrokerUnavailableError('memory broker is not connected');
    if (this.options.latencyMs) await new Promise((r) => setTimeout(r, this.options.latencyMs));
    return batch.map((message) => {
      const result = this.options.onPublish?.(message) ?? published;
      if (result.ok) this.messages.push(message);
      return result;
    });
  }

  async check(): Promise<void> {
    if (!this.connected) throw new BrokerUnavailableError('memory broker is not connected');
    this.options.onCheck?.();
  }

  async close(): Promise<void> {
    this.connected = false;
  }
}
