import type { BatchResult, ClaimLook } from './batch.js';
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
  /**
   * Partitions of which no row lies below the cursor, as far as this lane's claims tell:
   * set by a look from the start that passed nothing over, kept while each claim from the
   * cursor passes nothing over either, and while no batch leaves an event behind (held
   * back or to retry), no open writer bounds these partitions (its rows may commit below
   * the cursor) and no `dead retry` restores a row (the count the claim reads). Then the
   * claim needs no probe of each candidate's aggregate: its earlier events are either
   * candidates or rows the claim passed over. Anything else (another lane or dispatcher
   * claiming these partitions, an error) forgets it.
   */
  private clean: ReadonlySet<number> | undefined;
  /** The count of restores the last claim read. */
  private restores = '0';
  readonly wakeup = new Wakeup();
  // Backoff after an outage waits out its delay: a NOTIFY must not cut it short (new
  // events are no reason to hit a server that is down), only stop() may.
  readonly stopRequested = new Wakeup();
  health: LaneHealth = { state: 'stopped', since: Date.now(), lastRoundAt: 0 };
  /** How long the lane waits before looking again while open writers hold events back. */
  private recheck = 0;
  /** Since this lane's last claim from the start: events claimed, and whether other claims held some back. */
  private pass = { claimed: 0, heldElsewhere: false };

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

  /**
   * The wait before the next claim after one that open writing transactions, or another
   * claim of an earlier event, held back: `minMs`, doubling while they stay open, at most
   * `maxMs` (the poll interval). Their end moves no sequence the wake-up could see, so the
   * lane looks again by itself: soon for the usual short transaction, rarely for a long one.
   */
  recheckMs(minMs: number, maxMs: number): number {
    this.recheck = this.recheck === 0 ? minMs : Math.min(maxMs, this.recheck * 2);
    return this.recheck;
  }

  /**
   * Counts a claim from `from` into the pass over the partitions that began at the last
   * claim from the start. `heldInVain`: the pass claimed nothing, and other claims held
   * events back in it (a batch all held back goes on after itself, so without this the
   * lane would look from the start again at once, for ever, while those claims last).
   */
  passed(
    from: string,
    found: { claimed: number; claimedElsewhere: boolean },
  ): { heldInVain: boolean } {
    if (from === FULL_SCAN) this.pass = { claimed: 0, heldElsewhere: false };
    this.pass.claimed += found.claimed;
    this.pass.heldElsewhere ||= found.claimedElsewhere;
    return { heldInVain: this.pass.claimed === 0 && this.pass.heldElsewhere };
  }

  /** Nothing is held back any more: the next wait is the wake-up's. */
  clearRecheck(): void {
    this.recheck = 0;
  }

  /** What the next claim from `from` over `partitions` may take for granted. */
  look(partitions: readonly number[], from: string): ClaimLook {
    const clean = this.clean;
    const trusted =
      from === FULL_SCAN || (clean !== undefined && partitions.every((p) => clean.has(p)));
    return { trusted, restores: this.restores };
  }

  /** After a claim from `from` over `partitions`: whether rows may lie below the cursor now. */
  learn(
    partitions: readonly number[],
    from: string,
    found: Pick<BatchResult, 'seen' | 'writersOpen' | 'claimedElsewhere'> & {
      retried: number;
      held: number;
    },
  ): void {
    const { seen } = found;
    if (!seen) return;
    this.restores = seen.restores;
    // A held event (behind one of its aggregate that failed or was dead-lettered in the
    // batch) stays in the outbox below the cursor: a later event of its aggregate may be
    // among the next candidates, and must wait for it.
    const leftBehind = found.retried > 0 || found.held > 0;
    if (seen.passedOver || found.writersOpen || found.claimedElsewhere || leftBehind) {
      this.clean = undefined;
    } else if (from === FULL_SCAN) {
      this.clean = new Set(partitions);
    }
  }

  /** Another claimer may have left rows of this lane's partitions below its cursor. */
  forget(): void {
    this.clean = undefined;
  }

  /** Wakes the lane from any sleep, the backoff's too (stop). */
  interrupt(): void {
    this.wakeup.wake();
    this.stopRequested.wake();
  }
}
