import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Its own command, `npm run test:network` (test/network/vitest.config.ts).
    exclude: [...configDefaults.exclude, 'test/network/**'],
    globalSetup: ['test/global-setup.ts'],
    // Tests talk to real servers (PostgreSQL, brokers) and spawn the CLI.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
