import type { Consumer } from '@platformatic/kafka';
import { partitionKey } from './records.js';

/**
 * What a Kafka consumer may commit, per partition. Messages of one partition are acked
 * out of order (different aggregates are processed concurrently), but a committed offset
 * says "everything before this is done": so the commit point only moves past a message
 * once every message delivered before it is done too.
 */
export class PartitionOffsets {
  /** Delivered offsets, ascending, from the first one not done (from `head`). */
  private pending: bigint[] = [];
  private head = 0;
  private readonly done = new Set<bigint>();
  /** The highest offset delivered; a fetch from an older position sends it again. */
  private highest = -1n;
  /** The offset to commit: after the last of the done prefix. */
  private committable: bigint | undefined;
  /** The highest offset committed, or being committed, from here. */
  private committed: bigint | undefined;
  /**
   * The group gave the partition to another member: what was delivered from here and is
   * not done is that member's now, and nothing more is committed from here.
   */
  withdrawn = false;

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}

  /**
   * Takes a fetched offset; false if it was delivered before. After a rebalance the
   * stream fetches again from the committed offset: those messages are still with the
   * caller (or done), so they are not delivered twice.
   */
  deliver(offset: bigint): boolean {
    if (offset <= this.highest) return false;
    this.highest = offset;
    this.pending.push(offset);
    return true;
  }

  /** Whether an offset of this partition was committed from here. */
  get hasCommitted(): boolean {
    return this.committed !== undefined;
  }

  /** The first delivered offset not done, if any. */
  get firstOpen(): bigint | undefined {
    return this.pending[this.head];
  }

  /** Delivered offsets not yet done. */
  get open(): number {
    return this.pending.length - this.head - this.done.size;
  }

  /** Marks a delivered offset done and moves the commit point over the done prefix. */
  ack(offset: bigint): void {
    this.done.add(offset);
    let moved = false;
    while (this.head < this.pending.length) {
      const first = this.pending[this.head] as bigint;
      if (!this.done.delete(first)) break;
      this.committable = first + 1n;
      this.head++;
      moved = true;
    }
    // Drops the passed prefix now and then, not on every ack.
    if (moved && this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
  }

  /** The offset to commit now, or undefined when the server has it already. */
  toCommit(): bigint | undefined {
    const next = this.committable;
    if (next === undefined || (this.committed !== undefined && next <= this.committed)) {
      return undefined;
    }
    return next;
  }

  /** `offset` was committed: it is not sent again. */
  committedUpTo(offset: bigint): void {
    if (this.committed === undefined || offset > this.committed) this.committed = offset;
  }
}

/** What commits need of the consumer. */
export type CommittingConsumer = Pick<
  Consumer<Buffer, Buffer, Buffer, Buffer>,
  'assignments' | 'commit' | 'memberId'
>;

/** Done offsets are committed together, this long after the first ack of a batch. */
const commitDelayMs = 100;
/** A failed commit is tried again after this long. */
const commitRetryMs = 1_000;

/**
 * The partitions' offsets of one consumer, committed in batches: at most one commit
 * request at a time, `commitDelayMs` after an ack, carrying every partition's progress.
 */
export class OffsetCommits {
  private readonly partitions = new Map<string, PartitionOffsets>();
  private timer: NodeJS.Timeout | undefined;
  private committing: Promise<void> | undefined;
  private flushed = false;

  constructor(
    private readonly consumer: CommittingConsumer,
    /** A commit failed; it is tried again. `memberId`: the member it was sent as. */
    private readonly onError: (error: unknown, memberId: string | null) => void,
  ) {}

  /** The partition of a fetched message, or undefined if it was delivered before. */
  deliver(topic: string, partition: number, offset: bigint): PartitionOffsets | undefined {
    const offsets = this.partitionOf(topic, partition);
    return offsets.deliver(offset) ? offsets : undefined;
  }

  private partitionOf(topic: string, partition: number): PartitionOffsets {
    const key = partitionKey(topic, partition);
    let offsets = this.partitions.get(key);
    if (!offsets) {
      offsets = new PartitionOffsets(topic, partition);
      this.partitions.set(key, offsets);
    }
    return offsets;
  }

  /**
   * Forgets a partition the group gave to another member, and marks it withdrawn: the
   * new owner reads it from the group's committed offset. Only a partition the group has
   * an offset for (committed from here, or known or pinned at the join): with none, the
   * new owner would start at `from` and, with `latest`, skip what this one dropped, and
   * given back here it would go on from this member's fetch position, past what was
   * dropped; otherwise undefined, and nothing changes.
   */
  withdraw(topic: string, partition: number): PartitionOffsets | undefined {
    const key = partitionKey(topic, partition);
    const offsets = this.partitions.get(key);
    if (!offsets?.hasCommitted) return undefined;
    this.partitions.delete(key);
    offsets.withdrawn = true;
    return offsets;
  }

  /** The assigned partitions with no offset in the group, as far as this member knows. */
  unpinned(
    assignments: readonly { topic: string; partitions: readonly number[] }[],
  ): { topic: string; partition: number }[] {
    const unpinned: { topic: string; partition: number }[] = [];
    for (const { topic, partitions } of assignments) {
      for (const partition of partitions) {
        if (!this.partitions.get(partitionKey(topic, partition))?.hasCommitted) {
          unpinned.push({ topic, partition });
        }
      }
    }
    return unpinned;
  }

  /**
   * Where the partition's reading may be said to start: `fetchFrom`, the stream's next
   * fetch position, or the first message delivered from here and not done, if earlier.
   */
  resumePoint(topic: string, partition: number, fetchFrom: bigint | undefined): bigint | undefined {
    const open = this.partitions.get(partitionKey(topic, partition))?.firstOpen;
    if (open === undefined) return fetchFrom;
    return fetchFrom === undefined || open < fetchFrom ? open : fetchFrom;
  }

  /** The group has `offset` committed for the partition (by any member). */
  known(topic: string, partition: number, offset: bigint): void {
    this.partitionOf(topic, partition).committedUpTo(offset);
  }

  /** Commits where reading starts on partitions the group has no offset for. */
  async pin(starts: readonly { topic: string; partition: number; offset: bigint }[]) {
    await this.send(starts);
    for (const { topic, partition, offset } of starts) this.known(topic, partition, offset);
  }

  /** One commit request for these partitions' offsets. */
  private send(offsets: readonly { topic: string; partition: number; offset: bigint }[]) {
    return this.consumer.commit({
      offsets: offsets.map(({ topic, partition, offset }) => ({
        topic,
        partition,
        offset,
        leaderEpoch: -1,
      })),
    });
  }

  ack(partition: PartitionOffsets, offset: bigint): void {
    partition.ack(offset);
    this.commitSoon(commitDelayMs);
  }

  /** Commits what is done now, after the commit in flight; later acks are not committed. */
  async flush(): Promise<void> {
    this.flushed = true;
    clearTimeout(this.timer);
    await this.committing;
    await this.commit();
  }

  private commitSoon(delayMs: number) {
    if (this.timer || this.flushed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.committing) this.commitSoon(commitDelayMs);
      else this.committing = this.commit().finally(() => (this.committing = undefined));
    }, delayMs);
  }

  /**
   * Commits, per partition still assigned here, the offset after its done prefix. A
   * partition revoked meanwhile is left to its new owner, which starts from the last
   * commit: committing ours now could move its offset back.
   */
  private async commit(): Promise<void> {
    const assigned = new Set<string>();
    for (const { topic, partitions } of this.consumer.assignments ?? []) {
      for (const partition of partitions) assigned.add(partitionKey(topic, partition));
    }
    const offsets: { partition: PartitionOffsets; offset: bigint }[] = [];
    for (const [key, partition] of this.partitions) {
      const offset = partition.toCommit();
      if (offset !== undefined && assigned.has(key)) offsets.push({ partition, offset });
    }
    if (offsets.length === 0) return;
    const memberId = this.consumer.memberId;
    try {
      await this.send(
        offsets.map(({ partition: { topic, partition }, offset }) => ({
          topic,
          partition,
          offset,
        })),
      );
      for (const { partition, offset } of offsets) partition.committedUpTo(offset);
    } catch (error) {
      // A rebalance under way, or the server away: the offsets stay to commit, and a
      // message committed late at worst comes again to whoever reads the partition next.
      this.onError(error, memberId);
      this.commitSoon(commitRetryMs);
    }
  }
}

/**
 * What the message stream still holds from before a join, to be dropped as it comes out:
 * messages of partitions the group gave to another member (the new owner reads them), and
 * those held when a withdrawn partition was given back (it is read again from the group's
 * committed offset, so they are older than what comes next and must not come first). The
 * held messages leave the stream before anything fetched after the join, so the first
 * `held` out of it, whatever their partitions, are the ones held then.
 */
export class HeldAtJoin {
  private readonly withdrawn = new Set<string>();
  private readonly givenBack = new Set<string>();
  /** How many of the messages out of the stream next were held at a give-back. */
  private held = 0;

  /** The partition was given to another member. */
  withdraw(key: string): void {
    this.withdrawn.add(key);
  }

  /**
   * The partition is assigned again; `held`: the messages the stream holds now. False
   * when it was not withdrawn (nothing to drop for it).
   */
  giveBack(key: string, held: number): boolean {
    if (!this.withdrawn.delete(key)) return false;
    this.givenBack.add(key);
    this.held = Math.max(this.held, held);
    if (this.held === 0) this.givenBack.clear();
    return true;
  }

  /** Whether the next message out of the stream, of partition `key`, is to be dropped. */
  drop(key: string): boolean {
    if (this.withdrawn.size === 0 && this.held === 0) return false;
    // Every message counts against the held ones, a withdrawn partition's too.
    let heldAtGiveBack = false;
    if (this.held > 0) {
      heldAtGiveBack = this.givenBack.has(key);
      if (--this.held === 0) this.givenBack.clear();
    }
    return heldAtGiveBack || this.withdrawn.has(key);
  }
}
