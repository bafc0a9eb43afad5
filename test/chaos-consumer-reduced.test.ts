/**
 * The consumer chaos phase (test/chaos/consumer-chaos.ts), reduced to fit `npm test`: per
 * broker (NATS, RabbitMQ, Kafka, at the same time) 3,000 events over 100 aggregates
 * written by 4 producers at 150 events/s and published by 2 `run` processes, applied
 * exactly once by 3 consumer processes (`consume()` with the inbox) of which a random one
 * is SIGKILLed every 1–3 s while the producers run, and restarted at once. No broker or
 * PostgreSQL restart: other test files run in parallel on the shared servers. The full
 * phase (50,000 events, restarts) is in `npm run test:chaos` (test/chaos/full.chaos.ts).
 *
 * Why 3,000 and not more: every kill restarts a consumer process, which costs it 0.5 to
 * 1.5 CPU-seconds (loading the package, and on Kafka its client); with three brokers at
 * once that is most of a 2-core machine, and 5,000 events at 250/s took ~160 s there.
 */
import { afterAll, describe, it } from 'vitest';
import {
  type ConsumerChaosSummary,
  expectConsumerChaosPassed,
  formatConsumerDetails,
  formatConsumerSummary,
  runConsumerChaos,
} from './chaos/consumer-chaos.js';
import type { BrokerName } from './chaos/targets.js';
import { killChildren } from './helpers/cli.js';

const BROKERS: BrokerName[] = ['nats', 'amqp', 'kafka'];
const EVENTS = 3000;

let running: Promise<unknown> | undefined;

// A run cut short by the test timeout (its signal aborted) cleans up before the file ends.
afterAll(async () => {
  await running?.catch(() => {});
  await killChildren();
}, 120_000);

describe('consumer chaos, reduced: SIGKILLed consumers apply every event once, in order', () => {
  it('on NATS, RabbitMQ and Kafka', { timeout: 150_000 }, async ({ signal }) => {
    const runs = BROKERS.map((broker) =>
      runConsumerChaos({
        broker,
        events: EVENTS,
        aggregates: 100,
        producers: 4,
        rate: 150,
        dispatchers: 2,
        consumers: 3,
        killEveryMs: [1000, 3000],
        restartBroker: false,
        restartPostgres: false,
        recoveryTimeoutMs: 90_000,
        signal,
      }),
    );
    running = Promise.allSettled(runs);
    let summaries: ConsumerChaosSummary[];
    try {
      summaries = await Promise.all(runs);
    } finally {
      // One run failing leaves the others to finish (and clean up) first.
      await running;
      await killChildren();
    }
    console.log(
      `consumer chaos (reduced)\n${formatConsumerSummary(summaries)}\n${formatConsumerDetails(summaries)}`,
    );
    for (const summary of summaries) expectConsumerChaosPassed(summary, EVENTS);
  });
});
