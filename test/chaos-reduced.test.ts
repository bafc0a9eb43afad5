/**
 * The chaos suite, reduced to fit `npm test`: per broker (NATS, RabbitMQ, Kafka, at the
 * same time) 5,000 events over 100 aggregates written by 4 producers while 3 `run`
 * processes publish them and one of them is SIGKILLed every 1–3 s. No broker or
 * PostgreSQL restart: other test files run in parallel on the shared servers. The full
 * suite (100,000 events, restarts) is `npm run test:chaos` (test/chaos/full.chaos.ts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { type ChaosSummary, formatDetails, formatSummary, runChaos } from './chaos/chaos.js';
import type { BrokerName } from './chaos/targets.js';
import { killChildren } from './helpers/cli.js';

const BROKERS: BrokerName[] = ['nats', 'amqp', 'kafka'];

let running: Promise<unknown> | undefined;

// A run cut short by the test timeout (its signal aborted) restarts no dispatcher and
// cleans up; vitest abandons the test itself, so its finally may not run.
afterAll(async () => {
  await running?.catch(() => {});
  await killChildren();
}, 120_000);

describe('chaos, reduced: SIGKILLed dispatchers lose nothing and keep each aggregate in order', () => {
  it('on NATS, RabbitMQ and Kafka', { timeout: 150_000 }, async ({ signal }) => {
    let summaries: ChaosSummary[];
    try {
      const runs = BROKERS.map((broker) =>
        runChaos({
          broker,
          events: 5000,
          aggregates: 100,
          producers: 4,
          dispatchers: 3,
          killEveryMs: [1000, 3000],
          restartBroker: false,
          restartPostgres: false,
          rate: 500,
          recoveryTimeoutMs: 60_000,
          signal,
        }),
      );
      running = Promise.allSettled(runs);
      summaries = await Promise.all(runs);
    } finally {
      await killChildren();
    }
    console.log(`chaos (reduced)\n${formatSummary(summaries)}\n${formatDetails(summaries)}`);
    for (const summary of summaries) {
      const { broker } = summary;
      expect.soft(summary.events, broker).toBe(5000);
      expect.soft(summary.lost, `${broker} lost`).toBe(0);
      expect.soft(summary.outOfOrder, `${broker} out of order`).toBe(0);
      expect.soft(summary.phantoms, `${broker} phantoms`).toBe(0);
      expect.soft(summary.deadLetters, `${broker} dead letters`).toBe(0);
      expect.soft(summary.details.malformed, `${broker} malformed`).toBe(0);
      expect.soft(summary.details.producedMismatch, `${broker} bookkeeping`).toBe(0);
      expect.soft(summary.recoverySeconds, `${broker} recovery`).not.toBeNull();
      expect.soft(summary.details.finalExitCodes, `${broker} exit codes`).toEqual([0, 0, 0]);
      expect.soft(summary.kills, `${broker} kills`).toBeGreaterThan(0);
    }
    const nats = summaries.find((summary) => summary.broker === 'nats');
    expect.soft(nats?.duplicates, 'nats duplicates (Nats-Msg-Id dedup)').toBe(0);
  });
});
