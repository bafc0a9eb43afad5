import { ConfigError } from '../common/errors.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import { type DispatcherHealth, notReadyReasons } from '../dispatcher/health.js';

export interface OutboxHealthOptions {
  /** A round of the loop running longer than this is a stall: down. Default 10000. */
  stallAfterMs?: number;
}

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
 * Up while the loop runs (idle or dispatching) with the broker connected; down when it is
 * stopped (not started, shut down, or stopped by a fatal error), backing off after a
 * broker or database outage, or stalled in one round. The result is returned, never
 * thrown, as terminus 11 expects of an indicator (a `down` result makes the check fail
 * with 503); it is the plain object terminus's own helper builds, so the module does not
 * need terminus installed to provide the indicator.
 */
export class OutboxHealthIndicator {
  constructor(private readonly dispatcher: Dispatcher | null) {}

  async isHealthy<const Key extends string>(
    key: Key,
    options: OutboxHealthOptions = {},
  ): Promise<OutboxHealthResult<Key>> {
    if (!this.dispatcher) {
      throw new ConfigError(
        'dispatch',
        'is false: this application runs no dispatcher, so there is none to report on',
      );
    }
    const health = this.dispatcher.health();
    const now = Date.now();
    const reasons = problems(health, now, options.stallAfterMs ?? 10_000);
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
