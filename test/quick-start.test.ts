/**
 * The README's quick start is examples/quick-start.mjs, word for word, and it runs: the
 * event it enqueues is published and applied once by its consumer.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { spawnNode } from './helpers/cli.js';
import { PG_URL } from './helpers/db.js';

const tag = randomBytes(5).toString('hex');
const schema = `t_quick_start_${tag}`;
const stream = `T_QUICK_${tag}`;
const example = new URL('../examples/quick-start.mjs', import.meta.url);

afterAll(async () => {
  const nc = await connect({ servers: '127.0.0.1:4222' });
  await (await jetstreamManager(nc)).streams.delete(stream).catch(() => false);
  await nc.close();
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
});

it('the README shows examples/quick-start.mjs as it is', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const block = readme.split('## Quick start')[1]?.split('```js\n')[1]?.split('```')[0];
  expect(block).toBe(readFileSync(example, 'utf8'));
});

it('runs: the event it enqueues is published and applied once', async () => {
  const run = spawnNode(example.pathname, [], {
    env: {
      DATABASE_URL: PG_URL,
      BROKER_URL: `nats://127.0.0.1:4222?stream=${stream}&subject_prefix=quick${tag}`,
      OUTBOX_SCHEMA: schema,
    },
  });
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 45_000);
  const result = await run.exited.finally(() => clearTimeout(timer));
  expect(result.code, result.stderr).toBe(0);
  const id = /^enqueued (\S+)$/m.exec(result.stdout)?.[1];
  expect(id).toBeDefined();
  expect(result.stdout.split('\n').filter((line) => line.startsWith('applied'))).toEqual([
    `applied lesson-published ${id}: "Fractions without fear"`,
  ]);
});
