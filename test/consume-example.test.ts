/**
 * examples/consume.mjs refuses a missing broker URL before it opens a database: given
 * DATABASE_URL, it would otherwise migrate that database's `public` schema and create the
 * example's tables, then fail on the missing setting.
 */
import { expect, it } from 'vitest';
import { spawnNode } from './helpers/cli.js';

const example = new URL('../examples/consume.mjs', import.meta.url);

it('without a broker URL says its usage and exits 2, opening no database', async () => {
  // Nothing listens on port 1: a connection attempt would fail the run with another error.
  const run = spawnNode(example.pathname, [], {
    env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' },
  });
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 30_000);
  const result = await run.exited.finally(() => clearTimeout(timer));
  expect(result.stderr).toBe('usage: node examples/consume.mjs <broker-url>\n');
  expect(result.code).toBe(2);
});
