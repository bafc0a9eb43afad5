/**
 * `npm run test:network`: the production-network suite — TLS and authentication on every
 * connection, connection poolers, broker clusters — each test starting the private
 * servers it needs on ports of its own. Apart from `npm test` (test/**\/*.test.ts leaves
 * this folder out) because it starts servers of its own and takes its time.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/network/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
