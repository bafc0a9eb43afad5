/**
 * `npm run test:chaos`: the full chaos suite alone. Its file is not named *.test.ts, so
 * the default configuration (test/**\/*.test.ts, `npm test`) never picks it up; the
 * reduced variant there is test/chaos-reduced.test.ts.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/chaos/full.chaos.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Brokers one after another: each run restarts shared servers.
    fileParallelism: false,
    sequence: { concurrent: false },
  },
});
