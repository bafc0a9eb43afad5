/**
 * The operations endpoints of `run --metrics-port`: Prometheus metrics moving during a
 * drain, /healthz, and /readyz turning 503 (with the reason) within 10 s of an outage
 * and back to 200 once it is over; a flood of requests that neither fails nor slows the
 * drain, served on a database connection of their own; the bounded `event_type` label.
 * Real PostgreSQL and NATS; the outages are real too (a TCP proxy in front of PostgreSQL
 * is cut, a private nats-server is stopped).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statements } from '../src/db/sql/index.js';
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

/** `name{…event_type="x"…} value` lines of one metric, as { x: value }; those still at 0 left out. */
function byEventType(metrics: string, name: string): Record<string, number> {
  const series: Record<string, number> = {};
  for (const line of metrics.split('\n')) {
    const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (match?.[1] !== name || Number(match[3]) === 0) continue;
    const eventType = /event_type="([^"]*)"/.exec(match[2] ?? '')?.[1] ?? '(none)';
    series[eventType] = (series[eventType] ?? 0) + Number(match[3]);
  }
  return series;
}

/**
 * 562 events: 500 of as many types nobody declared (`custom-001` …), 7 `custom-a`, 5
 * `custom-b`, and 30 `lesson-published` and 20 `quiz-submitted` from the catalogue.
 */
async function insertManyEventTypes(): Promise<void> {
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT 'thing', 'thing-' || row_number() OVER (), event_type, '{}'
     FROM (
       SELECT 'custom-' || lpad(i::text, 3, '0') FROM generate_series(1, 500) AS i
       UNION ALL SELECT 'custom-a' FROM generate_series(1, 7)
       UNION ALL SELECT 'custom-b' FROM generate_series(1, 5)
       UNION ALL SELECT 'lesson-published' FROM generate_series(1, 30)
       UNION ALL SELECT 'quiz-submitted' FROM generate_series(1, 20)
     ) AS types (event_type)`,
  );
}

describe('run --metrics-port', () => {
  it('shows the counters moving and the backlog falling during a drain; /healthz is 200', async () => {
    await insert(30_000);
    const { run, base } = await runWithOps(['--broker', 'log:', '--batch-size', '100']);
    let first = '';
    let second = '';
    await waitFor(
      'a scrape during the drain, then one with a smaller backlog',
      async () => {
        const metrics = await get(`${base}/metrics`);
        expect(metrics.status).toBe(200);
        const pending = sample(metrics.body, 'outbox_pending_events');
        if (!first) {
          if (sample(metrics.body, 'outbox_events_published_total') > 0 && pending > 0) {
            first = metrics.body;
          }
          return false;
        }
        // The backlog is counted at most once a second, so this waits for the next count.
        second = metrics.body;
        return pending < sample(first, 'outbox_pending_events');
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
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
        return (
          sample(metrics, 'outbox_events_published_total') === 30_000 &&
          sample(metrics, 'outbox_pending_events') === 0
        );
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

  it('answers a flood of /readyz and /metrics during a 40,000-event drain without a database failure, and the drain completes', async () => {
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
       SELECT 'lesson', 'lesson-' || (i % 1000), 'lesson-published', json_build_object('n', i)
       FROM generate_series(1, 40000) AS i`,
    );
    const nats = await startNatsServer();
    try {
      const { run, base } = await runWithOps([
        '--broker',
        `${nats.url}?stream=FLOOD`,
        '--batches-in-flight',
        '2',
      ]);
      let waves = 0;
      // Waves of 150 concurrent /readyz (and some /metrics) from the moment the endpoints
      // listen until every event is published, and at least three of them.
      await run.waitFor(
        'the drain to finish under the flood',
        async () => {
          const [ready, metrics] = await Promise.all([
            Promise.all(Array.from({ length: 150 }, () => get(`${base}/readyz`))),
            Promise.all(Array.from({ length: 10 }, () => get(`${base}/metrics`))),
          ]);
          waves++;
          // Not ready before the dispatcher has started, but never for the database's sake.
          expect(ready.filter((answer) => /database/.test(answer.body))).toEqual([]);
          for (const scrape of metrics) expect(scrape.status).toBe(200);
          const published = Math.max(
            ...metrics.map((scrape) => sample(scrape.body, 'outbox_events_published_total')),
          );
          return waves >= 3 && published === 40_000;
        },
        120_000,
      );
      const { rows } = await t.db.query<{ pending: number }>(
        `SELECT count(*)::int AS pending FROM "${t.schema}".outbox`,
      );
      expect(rows[0]?.pending).toBe(0);
      expect(await get(`${base}/readyz`)).toEqual({ status: 200, body: 'ok\n' });
      run.child.kill('SIGTERM');
      expect((await run.exited).code).toBe(0);
    } finally {
      await nats.destroy();
    }
  }, 180_000);

  it('serves the endpoints from a database connection of their own, named "edupulse-outbox ops"', async () => {
    const sql = statements(t.schema);
    const { run, base } = await runWithOps(['--broker', 'log:']);
    await waitFor('ready', async () => (await get(`${base}/readyz`)).status === 200);
    // pg_stat_activity.query is each backend's latest statement: the ones that ran a given
    // statement of this test's schema, with the name their process gave them.
    const ranLast = async (...texts: string[]) =>
      (
        await t.db.query<{ pid: number; application_name: string }>(
          'SELECT pid, application_name FROM pg_stat_activity WHERE query = ANY($1::text[])',
          [texts],
        )
      ).rows;

    const readyBackends = await ranLast(sql.outboxOldestAge);
    expect(readyBackends.map((row) => row.application_name)).toEqual(['edupulse-outbox ops']);

    expect((await get(`${base}/metrics`)).status).toBe(200);
    const scrapeBackends = await ranLast(sql.outboxBacklogByPartition, sql.deadLetterCount);
    expect(scrapeBackends).toEqual(readyBackends);

    // A flood is served by that one connection too; the dispatcher's own never run these.
    await Promise.all([
      ...Array.from({ length: 150 }, () => get(`${base}/readyz`)),
      ...Array.from({ length: 20 }, () => get(`${base}/metrics`)),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await Promise.all([get(`${base}/readyz`), get(`${base}/metrics`)]);
    expect(
      await ranLast(sql.outboxOldestAge, sql.outboxBacklogByPartition, sql.deadLetterCount),
    ).toEqual(readyBackends);

    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  });

  it('labels events of types outside the catalogue as event_type="other", and keeps those of --metrics-event-types', async () => {
    await insertManyEventTypes();
    const first = await runWithOps(['--broker', 'log:']);
    let metrics = '';
    await first.run.waitFor('the drain', async () => {
      metrics = (await get(`${first.base}/metrics`)).body;
      return sample(metrics, 'outbox_events_published_total') === 562;
    });
    expect(byEventType(metrics, 'outbox_events_published_total')).toEqual({
      'lesson-published': 30,
      'quiz-submitted': 20,
      other: 512,
    });
    first.run.child.kill('SIGTERM');
    expect((await first.run.exited).code).toBe(0);

    await insertManyEventTypes();
    const second = await runWithOps([
      '--broker',
      'log:',
      '--metrics-event-types',
      'custom-a,custom-b',
    ]);
    // Before anything counts, every label the counters can take is there at 0: an alert on
    // increase() sees the first dead letter.
    const before = (await get(`${second.base}/metrics`)).body;
    for (const eventType of ['custom-a', 'lesson-published', 'other']) {
      expect(before).toContain(
        `outbox_events_dead_lettered_total{event_type="${eventType}",broker="log"} 0`,
      );
    }
    await second.run.waitFor('the drain', async () => {
      metrics = (await get(`${second.base}/metrics`)).body;
      return sample(metrics, 'outbox_events_published_total') === 562;
    });
    expect(byEventType(metrics, 'outbox_events_published_total')).toEqual({
      'lesson-published': 30,
      'quiz-submitted': 20,
      'custom-a': 7,
      'custom-b': 5,
      other: 500,
    });
    second.run.child.kill('SIGTERM');
    expect((await second.run.exited).code).toBe(0);
  });

  it('refuses a --metrics-event-types that is not a list of event types, naming the setting (exit 2)', async () => {
    const run = (extra: string[], env?: Record<string, string>) =>
      runCli(
        ['run', '--database-url', PG_URL, '--schema', t.schema, '--metrics-port', '0', ...extra],
        { env, timeoutMs: 10_000 },
      );
    for (const bad of ['custom-a,,custom-b', 'custom a', ',', 'custom-a;drop', '"quoted"']) {
      const result = await run(['--metrics-event-types', bad]);
      expect(result.code, bad).toBe(2);
      expect(result.stderr, bad).toContain('metrics-event-types: ');
    }
    const fromEnv = await run([], { OUTBOX_METRICS_EVENT_TYPES: 'custom-a,,custom-b' });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain('metrics-event-types (from OUTBOX_METRICS_EVENT_TYPES): ');
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
