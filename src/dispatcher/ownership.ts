import { randomInt } from 'node:crypto';
import { hostname } from 'node:os';
import { ConfigError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Database, DatabaseSession } from '../db/database.js';
import type { Statements } from '../db/sql/index.js';

interface Holder {
  namespace: string;
  key: string;
  pid: number;
}

/**
 * Which partitions this dispatcher may claim from. Dispatchers share the partitions with
 * no coordinator beyond PostgreSQL: each holds a session advisory lock per partition it
 * owns, plus one lock that says it is a member, on a connection of its own. Every
 * `intervalMs` each one counts the members and moves towards its fair share,
 * ceil(partitions / members): it releases what it holds beyond that and try-locks free
 * partitions up to it. A dispatcher that crashes loses its connection and so its locks;
 * the others take its partitions on their next round. Handing a partition over while a
 * batch of it is in flight is safe: the claim holds back an aggregate whose earlier
 * event another dispatcher still holds.
 *
 * Without sessions (an embedded single-session database) one dispatcher owns everything.
 */
export class PartitionOwnership {
  readonly memberId = randomInt(1, 2 ** 31 - 1);
  readonly name = `edupulse-outbox dispatcher ${hostname()}:${process.pid}`.slice(0, 63);
  private session: DatabaseSession | undefined;
  private keys: { members: number; partitions: number } | undefined;
  private readonly owned = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> = Promise.resolve();
  private stopped = true;
  /** Partitions of the schema (fixed when it was created); known from start(). */
  private count = 0;
  /** Out of the sharing while its broker is out of reach (`stepAside`), until `rejoin`. */
  private aside = false;
  /** Members counted at the last round, this one included. */
  private members = 1;

  constructor(
    private readonly db: Database,
    private readonly sql: Statements,
    private readonly schema: string,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    private readonly onChange: () => void,
  ) {}

  /** Whether partitions are shared at all (false: this dispatcher owns every one). */
  get shared(): boolean {
    return this.db.session !== undefined;
  }

  /**
   * Shared, running, and without the session that holds the locks (the database away, or
   * not joined yet): owning nothing then says nothing about whether the database answers.
   */
  get lost(): boolean {
    return this.shared && !this.stopped && this.session === undefined;
  }

  /** The partitions to claim from, ascending; every one when not shared. */
  partitions(): number[] {
    if (!this.shared) return Array.from({ length: this.count }, (_, p) => p);
    return [...this.owned].sort((a, b) => a - b);
  }

  async start(partitionCount: number): Promise<void> {
    this.count = partitionCount;
    this.stopped = false;
    this.aside = false;
    if (!this.shared) return;
    // A session that cannot hold locks (through a pooler in transaction mode) is a setting
    // to fix, refused here rather than retried every round; a database that is away is
    // waited for by the rounds.
    try {
      await this.join();
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      this.lose(error);
    }
    await this.rebalance();
    this.timer = setInterval(() => {
      this.round = this.round.then(() => this.rebalance());
    }, this.intervalMs);
    this.timer.unref();
  }

  /**
   * Gives every partition and the membership back, so that the other dispatchers take
   * this one's share on their next round, and stays out until `rejoin`: for a dispatcher
   * that cannot reach its broker while they may. False, doing nothing, when it shares no
   * partitions, is out already, or was alone at the last count.
   */
  stepAside(): boolean {
    if (!this.shared || this.stopped || this.aside || this.members < 2) return false;
    this.aside = true;
    // After the round under way, which may still be taking partitions on the session.
    this.round = this.round.then(() => {
      const had = this.owned.size;
      const session = this.session;
      this.session = undefined;
      this.owned.clear();
      session?.close().catch(() => {});
      if (had > 0) this.onChange();
    });
    return true;
  }

  /** Whether it stepped aside and has not rejoined. */
  get isAside(): boolean {
    return this.aside;
  }

  /** Back in the sharing after `stepAside`: joins and takes a share now. */
  rejoin(): void {
    if (!this.aside) return;
    this.aside = false;
    this.round = this.round.then(() => this.rebalance());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.round;
    this.owned.clear();
    await this.session?.close();
    this.session = undefined;
  }

  /** One round: (re)join if needed, count members, release or take partitions. */
  private async rebalance(): Promise<void> {
    if (this.stopped || this.aside) return;
    try {
      const session = this.session ?? (await this.join());
      const keys = this.keys as { members: number; partitions: number };
      const { rows } = await session.query<Holder>(this.sql.ownershipLocks, [
        keys.members,
        keys.partitions,
      ]);
      const members = Math.max(
        1,
        rows.filter((row) => Number(row.namespace) === keys.members).length,
      );
      const taken = new Set(
        rows
          .filter((row) => Number(row.namespace) === keys.partitions)
          .map((row) => Number(row.key)),
      );
      this.members = members;
      const fairShare = Math.ceil(this.count / members);
      const before = this.owned.size;
      await this.release(session, this.owned.size - fairShare);
      await this.take(session, fairShare - this.owned.size, taken);
      if (this.owned.size !== before) {
        this.logger.info(
          { owned: this.owned.size, members, partitions: this.partitions() },
          'partitions rebalanced',
        );
        this.onChange();
      }
    } catch (error) {
      this.lose(error);
    }
  }

  private async join(): Promise<DatabaseSession> {
    const session = await (this.db.session as NonNullable<Database['session']>)(this.name);
    try {
      const { rows } = await session.query<{ members: number; partitions: number }>(
        this.sql.ownershipKeys,
        [this.schema],
      );
      const keys = rows[0] as { members: number; partitions: number };
      this.keys = { members: Number(keys.members), partitions: Number(keys.partitions) };
      await session.query(this.sql.ownershipLock, [this.keys.members, this.memberId]);
    } catch (error) {
      await session.close();
      throw error;
    }
    session.onLost((error) => this.lose(error));
    this.session = session;
    this.logger.info({ member: this.memberId }, 'joined the dispatchers sharing partitions');
    return session;
  }

  private async release(session: DatabaseSession, count: number): Promise<void> {
    const keys = this.keys as { partitions: number };
    // Give back the highest first, so a newcomer's low-numbered search finds them.
    for (const partition of this.partitions().reverse().slice(0, Math.max(0, count))) {
      await session.query(this.sql.ownershipUnlock, [keys.partitions, partition]);
      this.owned.delete(partition);
    }
  }

  private async take(session: DatabaseSession, count: number, taken: Set<number>): Promise<void> {
    const keys = this.keys as { partitions: number };
    // Start the search at a place of our own, so members joining together do not all
    // race for the same partitions.
    const start = this.memberId % this.count;
    for (let i = 0; i < this.count && count > 0; i++) {
      const partition = (start + i) % this.count;
      if (this.owned.has(partition) || taken.has(partition)) continue;
      const { rows } = await session.query<{ locked: boolean }>(this.sql.ownershipTryLock, [
        keys.partitions,
        partition,
      ]);
      if (rows[0]?.locked) {
        this.owned.add(partition);
        count--;
      }
    }
  }

  /** The session is gone, and every lock with it: own nothing until it is back. */
  private lose(error: unknown): void {
    const had = this.owned.size;
    const session = this.session;
    this.session = undefined;
    this.owned.clear();
    session?.close().catch(() => {});
    if (this.stopped) return;
    // Said once per loss, not once per round while the database stays away.
    const level = session || had > 0 ? 'warn' : 'debug';
    this.logger[level](
      { err: errorMessage(error), released: had },
      'partition ownership lost; rejoining on the next round',
    );
    if (had > 0) this.onChange();
  }
}
