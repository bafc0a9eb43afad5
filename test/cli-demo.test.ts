/** `edupulse-outbox demo` as a separate process: embedded PGlite by default, or the server. */

import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createOutbox, LessonPublished } from '../src/index.js';
import { AMQP_URL, deleteExchange, testExchange } from './helpers/amqp.js';
import {
  type CliResult,
  jsonLines,
  killChildren,
  lines,
  runCli,
  spawnCli,
  stackLines,
} from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

afterEach(killChildren);

const CATALOGUE = ['lesson-published', 'quiz-submitted', 'enrollment-created', 'lesson-completed'];

/** The summary line on stderr: `demo: produced N, published M, dead letters D in …`. */
function summary(stderr: string): { produced: number; published: number; dead: number } {
  const match = /produced (\d+), published (\d+), dead letters (\d+)/.exec(stderr);
  if (!match) throw new Error(`no summary line on stderr:\n${stderr}`);
  return { produced: Number(match[1]), published: Number(match[2]), dead: Number(match[3]) };
}

/** `demo --events <events> --rate 0` and `more`, run to its end. */
const demoOf = (events: number, ...more: string[]) =>
  runCli(['demo', '--events', String(events), '--rate', '0', ...more]);

/** Every stdout line is a CloudEvent of the catalogue; returns them. */
function expectCloudEvents(result: CliResult) {
  const events = jsonLines(result.stdout);
  expect(events).toHaveLength(lines(result.stdout).length);
  for (const event of events) {
    expect(event.specversion).toBe('1.0');
    expect(CATALOGUE).toContain(event.type);
    expect(typeof event.id).toBe('string');
    expect(typeof event.subject).toBe('string');
    expect(event.data).toBeTypeOf('object');
  }
  expect(new Set(events.map((event) => event.id)).size).toBe(events.length);
  return events;
}

describe('demo', () => {
  let target: TestSchema;

  beforeAll(async () => {
    target = await createPgTestSchema('cli_demo', { migrate: false });
  });

  afterAll(async () => {
    await killChildren();
    await target?.drop();
  });

  it('--events 50 --rate 0 on the embedded database publishes exactly 50 events', async () => {
    // runCli removes DATABASE_URL from the child's environment: the demo uses PGlite.
    const result = await demoOf(50);
    expect(result.code, result.stderr).toBe(0);
    expect(expectCloudEvents(result)).toHaveLength(50);
    expect(summary(result.stderr)).toEqual({ produced: 50, published: 50, dead: 0 });
    expect(stackLines(result.stderr)).toEqual([]);
  });

  it('--events 50 --rate 0 works on the server too', async () => {
    const result = await demoOf(50, '--database-url', PG_URL, '--schema', target.schema);
    expect(result.code, result.stderr).toBe(0);
    expect(expectCloudEvents(result)).toHaveLength(50);
    expect(summary(result.stderr)).toEqual({ produced: 50, published: 50, dead: 0 });
    const { rows } = await target.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${target.schema}".outbox`,
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('publishes and waits for what an earlier run left in the outbox, and says so', async () => {
    const leftover = await createPgTestSchema('cli_demo_left');
    try {
      const outbox = createOutbox({ schema: leftover.schema });
      await leftover.db.transaction((tx) =>
        outbox.enqueue(
          tx,
          Array.from({ length: 20 }, (_, n) =>
            LessonPublished.create({
              lesson_id: randomUUID(),
              author_id: randomUUID(),
              title: `left ${n}`,
              published_at: '2026-12-03T09:30:00Z',
            }),
          ),
        ),
      );
      const result = await demoOf(5, '--database-url', PG_URL, '--schema', leftover.schema);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain(
        'demo: 20 events already in the outbox, left by an earlier run, go out too',
      );
      expect(summary(result.stderr)).toEqual({ produced: 5, published: 25, dead: 0 });
      expect(expectCloudEvents(result)).toHaveLength(25);
      const { rows } = await leftover.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${leftover.schema}".outbox`,
      );
      expect(rows[0]?.n).toBe(0);
    } finally {
      await leftover.drop();
    }
  });

  // --rate 0 on the embedded database: its answers come without a turn of the event loop,
  // which must not starve the dispatcher or the signal handler.
  it.each(['50', '0'])(
    '--rate %s: SIGINT stops producing, publishes what is pending, and exits 0',
    async (rate) => {
      const cli = spawnCli(['demo', '--rate', rate]);
      await cli.waitFor('20 events on stdout', () => cli.lineCount() >= 20);
      cli.child.kill('SIGINT');
      const result = await cli.exited;
      expect(result.code, result.stderr).toBe(0);
      expect(stackLines(result.stderr)).toEqual([]);
      const { produced, published, dead } = summary(result.stderr);
      expect(produced).toBeGreaterThanOrEqual(20);
      expect(published).toBe(produced);
      expect(dead).toBe(0);
      expect(expectCloudEvents(result)).toHaveLength(published);
    },
  );

  it('says it is starting the embedded database, and a SIGINT meanwhile produces nothing', async () => {
    const cli = spawnCli(['demo', '--rate', '0']);
    await cli.waitFor('the starting line', () =>
      cli.stderr.includes('demo: starting the embedded PostgreSQL (PGlite, in memory)'),
    );
    // The database takes seconds to start; the signal comes while it does.
    cli.child.kill('SIGINT');
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('demo: stopping');
    expect(summary(result.stderr)).toEqual({ produced: 0, published: 0, dead: 0 });
    expect(result.stdout).toBe('');
  });

  it('exits 1 naming what is left when the broker refuses every event for 10 s', async () => {
    // No queue is bound to the exchange: RabbitMQ returns every event (NO_ROUTE), and the
    // first retry is due after the demo stops waiting.
    const exchange = testExchange();
    try {
      const result = await demoOf(
        5,
        '--broker',
        `${AMQP_URL}?exchange=${exchange}`,
        '--retry-base-delay-ms',
        '60000',
      );
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toContain(
        'demo: 5 of 5 events not published: none went out in the last 10 s',
      );
      expect(result.stderr).not.toContain('guest:guest');
      expect(stackLines(result.stderr)).toEqual([]);
    } finally {
      await deleteExchange(exchange);
    }
  });

  it('a bad --events or --rate exits 2 naming it', async () => {
    for (const [flag, value] of [
      ['--events', 'many'],
      ['--rate', 'fast'],
    ] as const) {
      const result = await runCli(['demo', flag, value]);
      expect(result.code).toBe(2);
      expect(lines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toContain(flag.slice(2));
      expect(stackLines(result.stderr)).toEqual([]);
    }
  });
});
