import { defineConfig } from 'vitest/config';
export default defineConfig({ root: '/work/main', test: { include: ['test/chaos/scratch.chaos.ts'], pool: 'forks', testTimeout: 900000 } });
