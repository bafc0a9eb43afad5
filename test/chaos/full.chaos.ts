/**
 * The full chaos suite, `npm run test:chaos` (not part of `npm test`: it restarts the
 * shared PostgreSQL and RabbitMQ, so run it alone). Two phases, each per broker, one
 * after another:
 *
 * - dispatchers: 8 producers write 100,000 events over 1,000 aggregates as fast as they
 *   can; 3 `run` processes publish them; a random one is SIGKILLed every 1–3 s and
 *   replaced at once; the broker is stopped for 3–5 s once (at a quarter of the
 *   production) and PostgreSQL for 2 s once (at 60 %). Then an independent reader counts
 *   what the broker holds. The run fails on any lost or out-of-order event, and on any
 *   duplicate on NATS (Nats-Msg-Id dedup).
 * - consumers (consumer-chaos.ts): 50,000 events over 500 aggregates, published by 2
 *   steady `run` processes, applied by 3 consumer processes (`consume()` with the inbox);
 *   a random consumer is SIGKILLed every 1–3 s and restarted at once, the broker and
 *   PostgreSQL restarted once as above. The run fails on any event lost, applied twice,
 *   applied out of order or parked, on counters that disagree with the effects, and on a
 *   consumer that does not exit 0 on SIGTERM.
 *
 * One summary table per phase is printed. CHAOS_PHASE=dispatchers or consumers runs one
 * phase, CHAOS_BROKERS=nats,kafka a subset of brokers; CHAOS_SEED fixes the random
 * choices (the seed of every run is printed, to repeat one). CHAOS_KAFKA_INSTANCE_NAMES=1
 * gives each Kafka consumer slot a `group_instance_id` of its own (static membership).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { killChildren } from '../helpers/cli.js';
import { type ChaosSummary, formatDetails, formatSummary, runChaos } from './chaos.js';
import {
  type ConsumerChaosSummary,
  expectConsumerChaosPassed,
  formatConsumerDetails,
  formatConsumerSummary,
  runConsumerChaos,
} from './consumer-chaos.js';
import type { BrokerName } from './targets.js';

const ALL: BrokerName[] = ['nats', 'amqp', 'kafka'];
const brokers = (process.env.CHAOS_BROKERS?.split(',') ?? ALL).filter((name): name is BrokerName =>
  ALL.includes(name as BrokerName),
);
const phases = process.env.CHAOS_PHASE?.split(',') ?? ['dispatchers', 'consumers'];
const seed = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : undefined;
const instanceNames = process.env.CHAOS_KAFKA_INSTANCE_NAMES === '1';
const EVENTS = 100_000;
const CONSUMER_EVENTS = 50_000;

const summaries: ChaosSummary[] = [];
const consumerSummaries: ConsumerChaosSummary[] = [];

afterAll(async () => {
  await killChildren();
  if (summaries.length > 0) {
    console.log(`\nchaos summary\n${formatSummary(summaries)}\n\n${formatDetails(summaries)}\n`);
  }
  if (consumerSummaries.length > 0) {
    console.log(
      `\nconsumer chaos summary\n${formatConsumerSummary(consumerSummaries)}\n\n${formatConsumerDetails(consumerSummaries)}\n`,
    );
  }
});

describe.runIf(phases.includes('dispatchers'))(
  'chaos: SIGKILLed dispatchers, a broker restart and a PostgreSQL restart',
  () => {
    it.each(brokers)('%s', { timeout: 600_000 }, async (broker) => {
      const summary = await runChaos({
        broker,
        events: EVENTS,
        aggregates: 1000,
        producers: 8,
        dispatchers: 3,
        killEveryMs: [1000, 3000],
        restartBroker: true,
        restartPostgres: true,
        recoveryTimeoutMs: 180_000,
        ...(seed !== undefined ? { seed } : {}),
        log: (line) => console.log(line),
      });
      summaries.push(summary);
      console.log(`${formatSummary([summary])}\n${formatDetails([summary])}`);

      expect.soft(summary.events).toBe(EVENTS);
      expect.soft(summary.lost, 'lost').toBe(0);
      expect.soft(summary.outOfOrder, 'out of order').toBe(0);
      expect.soft(summary.phantoms, 'phantoms').toBe(0);
      expect.soft(summary.deadLetters, 'dead letters').toBe(0);
      expect.soft(summary.details.malformed, 'malformed').toBe(0);
      expect.soft(summary.details.producedMismatch, 'producer bookkeeping').toBe(0);
      expect.soft(summary.recoverySeconds, 'recovered').not.toBeNull();
      expect.soft(summary.details.finalExitCodes, 'exit codes after SIGTERM').toEqual([0, 0, 0]);
      expect.soft(summary.details.brokerRestart, 'broker restarted').toBeDefined();
      expect.soft(summary.details.postgresRestart, 'PostgreSQL restarted').toBeDefined();
      if (broker === 'nats') expect.soft(summary.duplicates, 'NATS duplicates').toBe(0);
    });
  },
);

describe.runIf(phases.includes('consumers'))(
  'consumer chaos: SIGKILLed consumers, a broker restart and a PostgreSQL restart',
  () => {
    it.for(brokers)('%s', { timeout: 1_200_000 }, async (broker, { signal }) => {
      const summary = await runConsumerChaos({
        broker,
        events: CONSUMER_EVENTS,
        aggregates: 500,
        producers: 4,
        rate: 400,
        dispatchers: 2,
        consumers: 3,
        killEveryMs: [1000, 3000],
        restartBroker: true,
        restartPostgres: true,
        recoveryTimeoutMs: 600_000,
        instanceNames,
        signal,
        ...(seed !== undefined ? { seed } : {}),
        log: (line) => console.log(line),
      });
      consumerSummaries.push(summary);
      console.log(`${formatConsumerSummary([summary])}\n${formatConsumerDetails([summary])}`);
      expectConsumerChaosPassed(summary, CONSUMER_EVENTS);
      expect.soft(summary.details.brokerRestart, 'broker restarted').toBeDefined();
      expect.soft(summary.details.postgresRestart, 'PostgreSQL restarted').toBeDefined();
    });
  },
);
