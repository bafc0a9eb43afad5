import { it } from 'vitest';
import { formatDetails, formatSummary, runChaos } from './chaos.js';
const env = process.env;
it('scratch', { timeout: 900_000 }, async () => {
  const s = await runChaos({
    broker: (env.B ?? 'nats') as 'nats',
    events: Number(env.E ?? 5000),
    aggregates: Number(env.A ?? 100),
    producers: Number(env.P ?? 4),
    dispatchers: 3,
    killEveryMs: [1000, 3000],
    restartBroker: env.R === '1',
    restartPostgres: env.R === '1',
    rate: Number(env.RATE ?? 0),
    log: (l) => console.error(l),
  });
  console.log(`${formatSummary([s])}\n${formatDetails([s])}`);
});
