import { purgeDeadLettersAsJanitor } from '../admin/dead-letters.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Database } from '../db/database.js';
import { privilegeErrorOf } from '../db/privileges.js';

export interface JanitorOptions {
  db: Database;
  schema: string;
  retentionMs: number;
  intervalMs: number;
  logger: Logger;
  /** Hears each round that deleted something: how many, and the time they were due before. */
  onPurged: (deadLetters: number, before: Date) => void;
}

/**
 * The dead-letter janitor of a running dispatcher (`deadLetterRetentionMs`): a round when
 * started, then one every `intervalMs`, each deleting the dead letters older than the
 * retention in batches (admin/dead-letters.ts). The consumer's inbox janitor has the same
 * shape. A round that fails (the database is down) is logged and tried again next time.
 */
export class DeadLetterJanitor {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private stopping = false;

  constructor(private readonly options: JanitorOptions) {}

  start(): void {
    this.stopping = false;
    this.timer = setInterval(() => void this.purge(), this.options.intervalMs);
    this.timer.unref();
    void this.purge();
  }

  /** No new round; waits for the one under way, which stops after its current batch. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.round;
  }

  private purge(): Promise<void> {
    if (this.round || this.stopping) return this.round ?? Promise.resolve();
    this.round = this.purgeOnce().finally(() => {
      this.round = undefined;
    });
    return this.round;
  }

  private async purgeOnce(): Promise<void> {
    const { db, schema, retentionMs, logger } = this.options;
    const before = new Date(Date.now() - retentionMs);
    try {
      const deleted = await purgeDeadLettersAsJanitor(db, schema, before, () => this.stopping);
      if (deleted === 0) return;
      logger.info({ deleted, before: before.toISOString() }, 'dead letters purged');
      this.options.onPurged(deleted, before);
    } catch (error) {
      // A grant revoked while running: said with what to grant, at each round. Publishing
      // goes on; only the expired dead letters stay until the grant is back.
      const refused = await privilegeErrorOf(error, db, schema, ['dispatch-retention']);
      if (refused) {
        logger.error(
          { err: refused.message },
          'cannot purge the dead letters for want of a grant; publishing goes on, trying again at the next round',
        );
        return;
      }
      logger.warn(
        { err: errorMessage(error) },
        'cannot purge the dead letters; trying again later',
      );
    }
  }
}
