import { availableParallelism } from 'node:os';
import { configDefaults, defineConfig } from 'vitest/config';

/**
 * The reduced chaos suites each run a few dozen processes (producers, dispatchers,
 * consumers) on all three brokers at once: they run after every other file, one at a
 * time, so that neither the two together nor the timing-sensitive files beside them
 * share two cores with fifty processes.
 */
const CHAOS = ['test/chaos-reduced.test.ts', 'test/chaos-consumer-reduced.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    // Tests talk to real servers (PostgreSQL, brokers) and spawn the CLI.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'suite',
          include: ['test/**/*.test.ts'],
          // Its own command, `npm run test:network` (test/network/vitest.config.ts).
          exclude: [...configDefaults.exclude, 'test/network/**', ...CHAOS],
          // The files mostly wait (on servers, timeouts, child processes): one more worker
          // than cores, where Vitest would give one fewer (a single worker on two cores).
          // At most 4, so the shared servers' connections suffice.
          maxWorkers: Math.min(availableParallelism() + 1, 4),
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'chaos',
          include: CHAOS,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
