import { errorMessage } from '../common/errors.js';
import { assertWholeNumberOptions, type WholeNumberRange } from '../common/numbers.js';
import { SharedCheck } from '../common/shared-check.js';
import { withTimeout } from '../common/timeout.js';
import type { Executor } from '../db/executor.js';
import { statements } from '../db/sql/index.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import { notReadyReasons, STALL_AFTER_MS, STALL_AFTER_MS_RANGE } from '../dispatcher/health.js';

export interface CheckResult {
  ok: boolean;
  /** Why not, one line per problem; empty when ok. */
  reasons: string[];
}

export interface HealthOptions {
  dispatcher: Dispatcher;
  /**
   * Where `/readyz` measures the lag. Give it a connection of its own (e.g. a second
   * `pgDatabase` with `maxConnections: 1`), not the dispatcher's pool: a check waiting
   * for a pooled connection delays a claim, and a claim delays the check.
   */
  db: Executor;
  schema: string;
  /** Not ready while the oldest pending event is older than this. Default 60. */
  maxLagSeconds?: number;
  /** A round of the loop running longer than this is a stall (not ready). Default 10000. */
  stallAfterMs?: number;
  /** A round running longer than this means the loop is stuck (not alive). Default 150000. */
  stuckAfterMs?: number;
  /** The readiness check gives up on the database after this. Default 2000. */
  queryTimeoutMs?: number;
  /**
   * One database answer serves every readiness check for this long after it arrived.
   * Default 1000.
   */
  databaseCacheMs?: number;
}

/** The names of `HealthOptions`, for the option checks of the functions that take them. */
export const healthOptionKeys: Record<keyof HealthOptions, true> = {
  dispatcher: true,
  db: true,
  schema: true,
  maxLagSeconds: true,
  stallAfterMs: true,
  stuckAfterMs: true,
  queryTimeoutMs: true,
  databaseCacheMs: true,
};

/** `maxLagSeconds`' range, which `run --ready-max-lag-seconds` takes too. */
export const MAX_LAG_SECONDS_RANGE: WholeNumberRange = [1, 86_400];

/** The ranges of `HealthOptions`' numbers, in the unit each name gives. */
const healthRanges: Record<string, WholeNumberRange> = {
  maxLagSeconds: MAX_LAG_SECONDS_RANGE,
  stallAfterMs: STALL_AFTER_MS_RANGE,
  stuckAfterMs: [1, 86_400_000],
  queryTimeoutMs: [1, 3_600_000],
  databaseCacheMs: [0, 3_600_000],
};

/** Refuses a health option's number out of its range (or not a whole number), naming it. */
export function assertHealthNumbers(options: object): void {
  assertWholeNumberOptions(options, healthRanges);
}

// Keyed by the executor, so every caller of `readiness` on one database and schema (the
// ops server's requests, a service's own probes) shares the check.
const lagChecks = new WeakMap<Executor, Map<string, SharedCheck<number>>>();

function lagCheck(db: Executor, schema: string): SharedCheck<number> {
  let bySchema = lagChecks.get(db);
  if (!bySchema) {
    bySchema = new Map();
    lagChecks.set(db, bySchema);
  }
  let check = bySchema.get(schema);
  if (!check) {
    check = new SharedCheck();
    bySchema.set(schema, check);
  }
  return check;
}

/** `/healthz`: the loop is alive (running, and no round stuck far beyond any timeout). */
export function liveness(options: HealthOptions, now = Date.now()): CheckResult {
  assertHealthNumbers(options);
  const health = options.dispatcher.health();
  const reasons: string[] = [];
  if (health.state === 'stopped') {
    reasons.push(
      health.problem
        ? `dispatcher stopped: ${health.problem.message}`
        : 'dispatcher is not running',
    );
  } else if (
    health.state === 'dispatching' &&
    now - health.lastRoundAt > (options.stuckAfterMs ?? 150_000)
  ) {
    reasons.push(
      `dispatch loop stuck: one round has run for ${secondsSince(health.lastRoundAt, now)} s`,
    );
  }
  return { ok: reasons.length === 0, reasons };
}

/**
 * `/readyz`: alive, the database and the broker reachable, progress being made (no round
 * of the loop running longer than `stallAfterMs`), and the oldest pending event younger
 * than `maxLagSeconds`. Concurrent calls on one `db` and schema share one database query,
 * and its answer serves for `databaseCacheMs`; the dispatcher's state is read afresh.
 */
export async function readiness(options: HealthOptions, now = Date.now()): Promise<CheckResult> {
  const { reasons } = liveness(options, now);
  const health = options.dispatcher.health();
  reasons.push(...notReadyReasons(health, now, options.stallAfterMs ?? STALL_AFTER_MS));
  const timeoutMs = options.queryTimeoutMs ?? 2000;
  const measured = await lagCheck(options.db, options.schema).get(
    async () => {
      const { rows } = await withTimeout(
        options.db.query<{ oldest_age_s: string }>(statements(options.schema).outboxOldestAge),
        timeoutMs,
        () => new Error(`no answer within ${timeoutMs} ms`),
      );
      return Number(rows[0]?.oldest_age_s ?? 0);
    },
    options.databaseCacheMs ?? 1000,
    now,
  );
  if (measured.ok) {
    const maxLag = options.maxLagSeconds ?? 60;
    if (measured.value > maxLag) {
      reasons.push(
        `lagging: the oldest pending event is ${measured.value.toFixed(1)} s old (limit ${maxLag} s)`,
      );
    }
  } else {
    reasons.push(`database unreachable: ${errorMessage(measured.error)}`);
  }
  return { ok: reasons.length === 0, reasons: [...new Set(reasons)] };
}

function secondsSince(then: number, now: number): string {
  return ((now - then) / 1000).toFixed(1);
}
