import type { WholeNumberRange } from '../common/numbers.js';
import type { ProblemTarget } from './events.js';

/** What the loop is doing, for health and readiness checks. */
export interface DispatcherHealth {
  /**
   * `idle`: waiting for work; `dispatching`: a claim or publish is under way; `backoff`:
   * waiting after an outage; `stopping`: stop() was called (SIGTERM): nothing new is
   * claimed while the batches in flight finish and the connections close; `stopped`: not
   * started, stopped, or stopped by a fatal error.
   */
  state: 'idle' | 'dispatching' | 'backoff' | 'stopping' | 'stopped';
  /** When the state was entered (ms since the epoch). */
  since: number;
  /** When the loop's current round (or, while idle, its last one) began (ms since the epoch). */
  lastRoundAt: number;
  brokerConnected: boolean;
  /** The outage behind the current backoff, or the error that stopped the loop. */
  problem?: { target: ProblemTarget; message: string } | undefined;
}

/** One lane's part of the health. */
export type LaneHealth = Omit<DispatcherHealth, 'brokerConnected'>;

/**
 * The lanes together: stopped when none runs, else in backoff if any is, dispatching if
 * any is, idle otherwise; `lastRoundAt` of the longest-running round.
 */
export function combineHealth(
  lanes: readonly LaneHealth[],
  brokerConnected: boolean,
): DispatcherHealth {
  const pick =
    lanes.find((h) => h.state === 'backoff') ??
    lanes.find((h) => h.state === 'dispatching') ??
    lanes.find((h) => h.state === 'idle') ??
    lanes.find((h) => h.problem) ??
    lanes[0];
  const dispatching = lanes.filter((h) => h.state === 'dispatching');
  const lastRoundAt =
    dispatching.length > 0
      ? Math.min(...dispatching.map((h) => h.lastRoundAt))
      : (pick?.lastRoundAt ?? 0);
  return {
    state: pick?.state ?? 'stopped',
    since: pick?.since ?? 0,
    lastRoundAt,
    brokerConnected,
    ...(pick?.problem ? { problem: pick.problem } : {}),
  };
}

/** `stallAfterMs` of the health checks: its default and its range. */
export const STALL_AFTER_MS = 10_000;
export const STALL_AFTER_MS_RANGE: WholeNumberRange = [1, 86_400_000];

/**
 * Why a running dispatcher is not ready to take traffic (none when it is): stopping, in
 * backoff after an outage, its broker not connected, or one round of its loop running
 * longer than `stallAfterMs`. A stopped dispatcher is for the caller to word.
 */
export function notReadyReasons(
  health: DispatcherHealth,
  now: number,
  stallAfterMs: number,
): string[] {
  const reasons: string[] = [];
  if (health.state === 'stopping') {
    reasons.push('dispatcher stopping: finishing the batches in flight');
  } else if (health.state === 'backoff' && health.problem) {
    reasons.push(`${health.problem.target} unavailable: ${health.problem.message}`);
  } else if (health.state !== 'stopped' && !health.brokerConnected) {
    reasons.push('broker not connected');
  }
  if (health.state === 'dispatching' && now - health.lastRoundAt > stallAfterMs) {
    reasons.push(
      `stalled: one round of the loop has run for ${((now - health.lastRoundAt) / 1000).toFixed(1)} s`,
    );
  }
  return reasons;
}
