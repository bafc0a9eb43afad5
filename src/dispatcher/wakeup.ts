import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Database } from '../db/database.js';
import { notifyChannel } from '../db/identifier.js';

/** Wakes a sleeping loop early: a NOTIFY, a stop request. A wake with no sleeper is kept for the next sleep. */
export class Wakeup {
  private pending = false;
  private release: (() => void) | undefined;

  wake(): void {
    if (this.release) this.release();
    else this.pending = true;
  }

  /** Resolves after `ms`, or at once if woken since the last sleep. */
  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.release = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.release = done;
    });
  }
}

/**
 * The dispatcher's LISTEN on the outbox trigger's channel, once for all lanes. A lost
 * listening connection is said once and retried by the next round of any lane (`ensure`);
 * the lanes poll meanwhile.
 */
export class Notifications {
  private listening: Promise<void> | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private failing = false;

  constructor(
    private readonly db: Database,
    private readonly schema: string,
    private readonly logger: Logger,
    /** Called for every notification, and once after (re)listening. */
    private readonly onNotify: () => void,
  ) {}

  /** Listens unless it already does (or is starting to); never rejects. */
  ensure(): Promise<void> {
    this.listening ??= this.listen().catch(() => {
      this.listening = undefined;
    });
    return this.listening;
  }

  get active(): boolean {
    return this.listening !== undefined;
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    this.unlisten = undefined;
    this.listening = undefined;
  }

  private async listen(): Promise<void> {
    try {
      this.unlisten = await this.db.listen(notifyChannel(this.schema), this.onNotify, (error) => {
        this.listening = undefined;
        this.failing = true;
        this.unlisten = undefined;
        this.logger.warn(
          { err: errorMessage(error) },
          'notification connection lost; polling until it is back',
        );
      });
      // Notifications sent while we were not listening are gone: look once now.
      this.onNotify();
    } catch (error) {
      // Once per outage, not once per round of the loop while the database is away.
      const level = this.failing ? 'debug' : 'warn';
      this.failing = true;
      this.logger[level]({ err: errorMessage(error) }, 'cannot listen for notifications; polling');
      throw error;
    }
    this.failing = false;
  }
}
