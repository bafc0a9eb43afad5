import type { Writable } from 'node:stream';
import { BrokerUnavailableError, errorMessage } from '../common/errors.js';
import type { OutboxMessage } from './broker.js';
import { type EventBroker, type PublishResult, published } from './broker.js';
import { structuredCloudEvent } from './cloudevents.js';

export interface LogBrokerOptions {
  /** Where the NDJSON goes. Default `process.stdout`. */
  output?: Writable;
  /** CloudEvents `source`. */
  source: string;
}

/**
 * Writes each event as one CloudEvents 1.0 JSON line (structured mode). An event counts
 * as published once its line is handed to the stream, after any backpressure has cleared.
 */
export class LogBroker implements EventBroker {
  readonly name = 'log';
  private readonly output: Writable;
  private readonly source: string;

  constructor(options: LogBrokerOptions) {
    this.output = options.output ?? process.stdout;
    this.source = options.source;
  }

  async connect(): Promise<void> {}

  async publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    if (this.output.destroyed || this.output.writableEnded) {
      throw new BrokerUnavailableError('log output is closed');
    }
    const text = batch.map((message) => `${structuredCloudEvent(message, this.source)}\n`).join('');
    await new Promise<void>((resolve, reject) => {
      this.output.write(text, (error) =>
        error
          ? reject(new BrokerUnavailableError(`log output: ${errorMessage(error)}`))
          : resolve(),
      );
    });
    return batch.map(() => published);
  }

  async close(): Promise<void> {
    // Writes were awaited one by one, so nothing is buffered here.
  }
}
