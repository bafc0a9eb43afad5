import type { DispatcherHealth, LaneHealth } from './health.js';
import { Wakeup } from './wakeup.js';

/** The cursor value that makes a claim look at every seq. */
export const FULL_SCAN = '0';

/** The seq after `seq`, where a claim goes on from; a full scan when there is none. */
export const nextSeq = (seq: string | undefined) => (seq ? String(BigInt(seq) + 1n) : FULL_SCAN);

/**
 * One of the dispatcher's parallel loops. Lane i of n claims from the owned partitions p
 * with p mod n = i, so lanes never share an aggregate and never wait for each other's
 * rows; while one publishes, another claims, and their claims run side by side in the
 * database.
 */
export class Lane {
  /**
   * Where the next claim starts looking (a seq). During a long drain each claim starts
   * after the last, instead of walking the dead index entries its predecessors left at
   * the head of the scan. Rows it steps over (held back, retried, claimed elsewhere,
   * committed late) are found by a full scan, which runs whenever a claim comes back
   * short, the partitions change, and at least every poll interval.
   */
  cursor = FULL_SCAN;
  lastFullScan = 0;
  readonly wakeup = new Wakeup();
  // Backoff after an outage waits out its delay: a NOTIFY must not cut it short (new
  // events are no reason to hit a server that is down), only stop() may.
  readonly stopRequested = new Wakeup();
  health: LaneHealth = { state: 'stopped', since: Date.now(), lastRoundAt: 0 };

  constructor(
    readonly index: number,
    private readonly count: number,
  ) {}

  share(partitions: readonly number[]): number[] {
    return partitions.filter((p) => p % this.count === this.index);
  }

  enter(state: DispatcherHealth['state'], problem?: DispatcherHealth['problem']): void {
    if (state !== this.health.state || problem) {
      this.health = { ...this.health, state, since: Date.now(), problem };
    }
  }

  /** Wakes the lane from any sleep, the backoff's too (stop). */
  interrupt(): void {
    this.wakeup.wake();
    this.stopRequested.wake();
  }
}
