import type { Writable } from 'node:stream';
import { ConfigError, errorMessage } from '../common/errors.js';
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

  /** Why the output broke (EPIPE: the reader of a pipe is gone), once it has. */
  private broken: Error | undefined;
  private readonly onError = (error: Error) => {
    this.broken ??= error;
  };

  constructor(options: LogBrokerOptions) {
    this.output = options.output ?? process.stdout;
    this.source = options.source;
    // Without a listener a broken pipe (`run --broker log: | head`) is an unhandled
    // 'error' that ends the process with a stack trace.
    this.output.on('error', this.onError);
  }

  async connect(): Promise<void> {}

  async publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    this.assertWritable();
    const text = batch.map((message) => `${structuredCloudEvent(message, this.source)}\n`).join('');
    await new Promise<void>((resolve, reject) => {
      this.output.write(text, (error) => {
        if (!error) return resolve();
        this.broken ??= error;
        reject(this.closedError());
      });
    });
    return batch.map(() => published);
  }

  /**
   * A closed output does not come back, so it is not an outage to wait out: a ConfigError
   * stops the dispatcher, its events left in the outbox.
   */
  private assertWritable(): void {
    if (this.broken || this.output.destroyed || this.output.writableEnded) {
      throw this.closedError();
    }
  }

  private closedError(): Error {
    const why = this.broken ? `: ${errorMessage(this.broken)}` : '';
    return new ConfigError(
      'broker',
      `log: the output is closed${why}; nothing more can be written (the events stay in the outbox)`,
    );
  }

  async close(): Promise<void> {
    // Writes were awaited one by one, so nothing is buffered here.
    this.output.off('error', this.onError);
  }
}
