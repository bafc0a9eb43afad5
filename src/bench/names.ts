/**
 * The scenario names, in the order a full run measures them, as the performance issue
 * spells them. Kept apart from the scenarios so the CLI can list and check them without
 * loading every client library; run.ts checks that the two agree.
 */
export const scenarioNames: readonly string[] = [
  'drain-noop',
  'drain-nats',
  'drain-amqp',
  'drain-kafka',
  'steady-latency',
  'steady-latency-polling',
  'producer-cost',
  'scale',
  'memory-drain',
  'peer-drain',
  'peer-latency',
  'peer-logical',
];
