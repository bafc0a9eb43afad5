/**
 * The operations endpoints of `run --metrics-port`: Prometheus metrics moving during a
 * drain, /healthz, and /readyz turning 503 (with the reason) within 10 s of an outage
 * and back to 200 once it is over. Real PostgreSQL and NATS; the outages are real too (a
 * TCP proxy in front of PostgreSQL is cut, a private nats-server is stopped).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CliProcess, killChildren, runCli, spawnCli } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { startNatsServer } from './helpers/nats-server.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;

beforeEach(async () => {
  t = await createPgTestSchema('ops');
});

afterEach(async () => {
  await killChildren();
  await t.drop();
});

async function insert(count: number): Promise<void> {
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT 'lesson', 'lesson-' || (i % 50), 'lesson-published', json_build_object('n', i)
     FROM generate_series(1, $1) AS i`,
    [count],
  );
}

/** Starts `run` with the endpoints on a free port; resolves with the process and its base URL. */
async function runWithOps(
  args: string[],
  databaseUrl = PG_URL,
): Promise<{ run: CliProcess; base: string }> {
  const run = spawnCli([
    'run',
    '--database-url',
    databaseUrl,
    '--schema',
    t.schema,
    '--metrics-port',
    '0',
    ...args,
  ]);
  let port: number | undefined;
  await run.waitFor('the endpoints to listen', () => {
    const line = run.stderr.split('\n').find((l) => l.includes('serving /metrics'));
    if (!line) return false;
    const logged = JSON.parse(line) as { host: string; port: number };
    expect(logged.host).toBe('127.0.0.1');
    port = logged.port;
    return true;
  });
  return { run, base: `http://127.0.0.1:${port}` };
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

/** Waits (at most 10 s) for /readyz to turn 503 after an outage began; returns its body. */
async function notReadyWithin10s(base: string): Promise<string> {
  const began = Date.now();
  let body = '';
  await waitFor(
    '/readyz to fail',
    async () => {
      const ready = await get(`${base}/readyz`);
      body = ready.body;
      return ready.status === 503;
    },
    { timeoutMs: 10_000, intervalMs: 100 },
  );
  expect(Date.now() - began).toBeLessThan(10_000);
  return body;
}

const readyAgain = (base: string) =>
  waitFor('/readyz to recover', async () => (await get(`${base}/readyz`)).status === 200, {
    timeoutMs: 30_000,
    intervalMs: 200,
  });

/** The value of one sample (`name{labels} value`) summed over every label set that matches. */
function sample(metrics: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match?.[1] === name && (match[2] ?? '').includes(labels)) sum += Number(match[3]);
  }
  return sum;
}

describe('run --metrics-port', () => {
  it('shows the counters moving and the backlog falling during a drain; /healthz is 200', async () => {
    await insert(30_000);
    const { run, base } = await runWithOps(['--broker', 'log:', '--batch-size', '100']);
    const scrapes: string[] = [];
    await waitFor(
      'two scrapes during the drain',
      async () => {
        const metrics = await get(`${base}/metrics`);
        expect(metrics.status).toBe(200);
        const published = sample(metrics.body, 'outbox_events_published_total');
        if (published > 0 && sample(metrics.body, 'outbox_pending_events') > 0) {
          scrapes.push(metrics.body);
        }
        return (
          scrapes.length >= 2 &&
          published > sample(scrapes[0] as string, 'outbox_events_published_total')
        );
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    const [first, second] = scrapes as [string, string];
    expect(
      sample(second, 'outbox_events_published_total', 'event_type="lesson-published"'),
    ).toBeGreaterThan(sample(first, 'outbox_events_published_total'));
    expect(sample(second, 'outbox_pending_events')).toBeLessThan(
      sample(first, 'outbox_pending_events'),
    );
    expect((await get(`${base}/healthz`)).status).toBe(200);

    await waitFor(
      'the drain to finish',
      async () => {
        const metrics = (await get(`${base}/metrics`)).body;
        return sample(metrics, 'outbox_events_published_total') === 30_000;
      },
      { timeoutMs: 60_000 },
    );
    const done = (await get(`${base}/metrics`)).body;
    expect(sample(done, 'outbox_pending_events')).toBe(0);
    expect(sample(done, 'outbox_publish_latency_seconds_count', 'broker="log"')).toBe(30_000);
    expect(sample(done, 'outbox_batch_size_sum')).toBe(30_000);
    expect(sample(done, 'outbox_owned_partitions')).toBe(64);
    expect(sample(done, 'outbox_broker_connected', 'broker="log"')).toBe(1);
    expect(sample(done, 'outbox_dead_letters')).toBe(0);
    expect(await get(`${base}/readyz`)).toEqual({ status: 200, body: 'ok\n' });
    expect((await get(`${base}/nothing`)).status).toBe(404);

    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  });

  it('/readyz is 503 within 10 s of losing the database, with the reason, and 200 again after', async () => {
    const target = new URL(PG_URL);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const viaProxy = new URL(PG_URL);
    viaProxy.port = String(proxy.port);
    const { run, base } = await runWithOps(['--broker', 'log:'], viaProxy.toString());
    await waitFor('ready', async () => (await get(`${base}/readyz`)).status === 200);

    await proxy.stop();
    expect(await notReadyWithin10s(base)).toMatch(/database/);
    // Alive all the same: the loop is waiting for the database, not stuck.
    expect((await get(`${base}/healthz`)).status).toBe(200);

    await proxy.start();
    await readyAgain(base);
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  });

  it('/readyz is 503 within 10 s of stopping the broker, with the reason, and 200 again after', async () => {
    const nats = await startNatsServer();
    try {
      const broker = `${nats.url}?stream=OPS_${t.schema.toUpperCase()}`;
      const { run, base } = await runWithOps(['--broker', broker]);
      await waitFor('ready', async () => (await get(`${base}/readyz`)).status === 200, {
        timeoutMs: 15_000,
      });

      await nats.stop();
      expect(await notReadyWithin10s(base)).toMatch(/broker/);

      await nats.start();
      await readyAgain(base);
      // And events flow again.
      await insert(10);
      await waitFor(
        'the events to be published',
        async () =>
          sample((await get(`${base}/metrics`)).body, 'outbox_events_published_total') === 10,
      );
      run.child.kill('SIGTERM');
      expect((await run.exited).code).toBe(0);
    } finally {
      await nats.destroy();
    }
  });

  it('refuses a port it cannot use, naming the setting (exit 2)', async () => {
    const result = await runCli([
      'run',
      '--database-url',
      PG_URL,
      '--schema',
      t.schema,
      '--metrics-port',
      'http',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('metrics-port');
  });
});
