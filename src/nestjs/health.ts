import { assertWholeNumberOptions } from '../common/numbers.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import {
  type DispatcherHealth,
  notReadyReasons,
  STALL_AFTER_MS,
  STALL_AFTER_MS_RANGE,
} from '../dispatcher/health.js';

export interface OutboxHealthOptions {
  /** A round of the loop running longer than this is a stall: down. Default 10000. */
  stallAfterMs?: number;
}

const healthOptions = optionNames<OutboxHealthOptions>({ stallAfterMs: true });

/** What an application without a dispatcher (`dispatch: false`) reports. */
const NO_DISPATCHER =
  'this application runs no dispatcher (dispatch: false), so there is none to report on';

/** What `isHealthy` reports under its key, `status` beside the dispatcher's health. */
export interface OutboxHealthDetails {
  status: 'up' | 'down';
  state: DispatcherHealth['state'];
  brokerConnected: boolean;
  /** When the state was entered (ISO 8601); absent before the dispatcher first started. */
  since?: string;
  /** When the current round of the loop (or, while idle, the last one) began (ISO 8601). */
  lastRoundAt?: string;
  /** Events published and dead-lettered since the dispatcher was made. */
  published: number;
  deadLettered: number;
  /** Why it is down, one problem per clause. Only when down. */
  message?: string;
}

/**
 * A `@nestjs/terminus` result: `{ [key]: { status: 'up' | 'down', … } }`, as terminus's
 * `HealthIndicatorService.check(key).up(…)` / `.down(…)` build it.
 */
export type OutboxHealthResult<Key extends string = string> = Record<Key, OutboxHealthDetails>;

/**
 * The embedded dispatcher's health for `@nestjs/terminus`:
 *
 *   this.health.check([() => this.outboxHealth.isHealthy('outbox')])
 *
 * Up while the loop runs (idle or dispatching) with the broker connected; down while it
 * stops and when it is stopped (not started, shut down, or stopped by a fatal error),
 * backing off after a broker or database outage, or stalled in one round; down, saying
 * so, in an application that runs no dispatcher (`dispatch: false`). The result is
 * returned, never thrown, as terminus 11 expects of an indicator (a `down` result makes
 * the check fail with 503); it is the plain object terminus's own helper builds, so the
 * module does not need terminus installed to provide the indicator. Only a bad option is
 * thrown (a ConfigError naming it). Listed in a module's own `providers`, it is made from
 * the module's `DISPATCHER`.
 */
export class OutboxHealthIndicator {
  constructor(private readonly dispatcher: Dispatcher | null) {}

  async isHealthy<const Key extends string>(
    key: Key,
    options: OutboxHealthOptions = {},
  ): Promise<OutboxHealthResult<Key>> {
    assertKnownOptions('isHealthy', options, healthOptions);
    assertWholeNumberOptions(options, { stallAfterMs: STALL_AFTER_MS_RANGE });
    if (!this.dispatcher) {
      const details: OutboxHealthDetails = {
        status: 'down',
        state: 'stopped',
        brokerConnected: false,
        published: 0,
        deadLettered: 0,
        message: NO_DISPATCHER,
      };
      return { [key]: details } as OutboxHealthResult<Key>;
    }
    const health = this.dispatcher.health();
    const now = Date.now();
    const reasons = problems(health, now, options.stallAfterMs ?? STALL_AFTER_MS);
    const { published, deadLettered } = this.dispatcher.stats;
    const details: OutboxHealthDetails = {
      status: reasons.length === 0 ? 'up' : 'down',
      state: health.state,
      brokerConnected: health.brokerConnected,
      ...(health.since > 0 ? { since: new Date(health.since).toISOString() } : {}),
      ...(health.lastRoundAt > 0
        ? { lastRoundAt: new Date(health.lastRoundAt).toISOString() }
        : {}),
      published,
      deadLettered,
      ...(reasons.length > 0 ? { message: reasons.join('; ') } : {}),
    };
    return { [key]: details } as OutboxHealthResult<Key>;
  }
}

function problems(health: DispatcherHealth, now: number, stallAfterMs: number): string[] {
  const { state, problem } = health;
  if (state === 'stopped') {
    return [problem ? `dispatcher stopped: ${problem.message}` : 'dispatcher is not running'];
  }
  return notReadyReasons(health, now, stallAfterMs);
}
