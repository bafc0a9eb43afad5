import { JetStreamApiError, jetstreamManager, type StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { errorMessage } from '../../common/errors.js';

/**
 * Tracks whether the socket is up. The client reconnects on its own for a while; publishes
 * in that window would only wait for their timeout, so they are refused at once instead and
 * the dispatcher backs off.
 */
export class Link {
  up = true;
  reason = '';
  private readonly listeners = new Set<(reason: string) => void>();

  constructor(nc: NatsConnection, location: string) {
    void this.watch(nc, location);
  }

  /** Calls `listener` once when the link drops; returns the unsubscribe. */
  onDown(listener: (reason: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async watch(nc: NatsConnection, location: string): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') this.down(`lost the connection to ${location}`);
      else if (status.type === 'reconnect') this.up = true;
    }
    const error = await nc.closed();
    this.down(`connection to ${location} closed${error ? `: ${errorMessage(error)}` : ''}`);
  }

  private down(reason: string): void {
    this.up = false;
    this.reason = reason;
    for (const listener of this.listeners) listener(reason);
    this.listeners.clear();
  }
}

/** A bound on the publishes awaiting their PubAck; waiters are served in order. */
export class Slots {
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
export class PublishRun {
  unavailable: string | undefined;
  /** Set when the server refused a publish for want of a permission: a setting to fix. */
  forbidden: string | undefined;
  readonly givenUp: Promise<void>;
  private resolveGivenUp: () => void = () => {};
  private probe: Promise<boolean> | undefined;
  private streamProbe: Promise<StreamInfo | null | undefined> | undefined;

  constructor(private readonly nc: NatsConnection) {
    this.givenUp = new Promise((resolve) => {
      this.resolveGivenUp = resolve;
    });
  }

  /** Gives up for want of a permission: the batch stops as for an outage, then `forbidden` says why. */
  forbid(reason: string): void {
    this.forbidden ??= reason;
    this.giveUp(reason);
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

  /**
   * After a PubAck timeout from a server that answers: the subjects of `stream` as the
   * server has it now, `null` when it has no such stream, undefined when it did not say
   * within `timeoutMs` (a stream without a leader answers nothing). A deleted stream
   * usually shows as "no responders", but not while anything else (a plain `nats sub`)
   * listens on the subject: then only this tells it from a slow stream.
   */
  async streamSubjects(stream: string, timeoutMs: number): Promise<string[] | null | undefined> {
    const info = await this.streamInfo(stream, timeoutMs);
    return info ? (info.config.subjects ?? []) : info;
  }

  /**
   * After a refusal for the stream's bytes: its `max_bytes` and the bytes it holds, or
   * undefined when it did not say within `timeoutMs`.
   */
  async streamRoom(
    stream: string,
    timeoutMs: number,
  ): Promise<{ maxBytes: number; bytes: number } | undefined> {
    const info = await this.streamInfo(stream, timeoutMs);
    return info ? { maxBytes: info.config.max_bytes, bytes: info.state.bytes } : undefined;
  }

  /** The stream as the server has it now (see streamSubjects). One probe per call. */
  private streamInfo(stream: string, timeoutMs: number): Promise<StreamInfo | null | undefined> {
    this.streamProbe ??= (async () => {
      try {
        const jsm = await jetstreamManager(this.nc, { timeout: timeoutMs, checkAPI: false });
        return await jsm.streams.info(stream);
      } catch (error) {
        return error instanceof JetStreamApiError && error.code === 10059 ? null : undefined;
      }
    })();
    return this.streamProbe;
  }
}
