/**
 * The web console in a real headless Chromium (Debian's, driven by playwright-core) against
 * `edupulse-outbox ui` and `run` processes, PostgreSQL and the real brokers: what an
 * operator relies on when looking at the page. Every case has its own schema, stream or
 * exchange, removed afterwards, so the file runs beside others and twice in a row.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AMQP_URL, consumeExchange, deleteExchange, testExchange } from './helpers/amqp.js';
import { type CliProcess, killChildren, runCli, spawnCli } from './helpers/cli.js';
import {
  launchChromium,
  loggedPort,
  screenshotDir,
  shownNumber,
  startConsole,
  type WatchedPage,
  watchedPage,
} from './helpers/console.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { createStream, deleteStream } from './helpers/nats-consumer.js';
import { waitFor } from './helpers/wait.js';

const NATS_URL = 'nats://127.0.0.1:4222';

let browser: Browser;
let t: TestSchema;
const cleanups: (() => Promise<unknown>)[] = [];
const pages: WatchedPage[] = [];

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

beforeEach(async () => {
  t = await createPgTestSchema('console');
});

afterEach(async () => {
  for (const { page } of pages.splice(0)) await page.close().catch(() => {});
  await killChildren();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  await t.drop();
});

/** A page on `base` that is closed after the test, its requests and violations recorded. */
async function open(base: string, hash = '#/'): Promise<WatchedPage> {
  const watched = await watchedPage(browser);
  pages.push(watched);
  await watched.page.goto(`${base}/${hash}`);
  return watched;
}

/** A page of a browser context whose clock is in `timezoneId`, closed after the test. */
async function pageInTimeZone(timezoneId: string) {
  const context = await browser.newContext({ timezoneId });
  cleanups.push(() => context.close());
  return context.newPage();
}

/** Every request stayed on the console's origin, and the page reported no CSP violation. */
function expectSameOriginAndNoViolation(watched: WatchedPage, base: string): void {
  const origin = new URL(base).origin;
  expect(watched.requests.length).toBeGreaterThan(0);
  expect(watched.requests.filter((url) => new URL(url).origin !== origin)).toEqual([]);
  expect(watched.violations).toEqual([]);
}

interface Row {
  id: string;
  seq: string;
  aggregate_id: string;
  event_type: string;
}

/** `count` events by plain SQL, round-robin over `aggregates` `<prefix>-<i>`, in seq order. */
async function insert(count: number, aggregates: number, eventType = 'lesson-published') {
  const aggregateType = eventType === 'quiz-submitted' ? 'quiz' : 'lesson';
  const { rows } = await t.db.query<Row>(
    `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT $1, $2 || '-' || (i % $3), $4, json_build_object('n', i, 'title', $5::text)
     FROM generate_series(1, $6) i
     RETURNING id::text, seq::text, aggregate_id, event_type`,
    [aggregateType, aggregateType, aggregates, eventType, '<script>alert(1)</script>', count],
  );
  return rows;
}

async function tableCount(suffix: '' | '_dead_letter'): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${t.schema}".outbox${suffix}`,
  );
  return rows[0]?.n ?? -1;
}

/** `edupulse-outbox run` on the test's schema; SIGTERMed (and awaited) by `stop`. */
function run(broker: string, ...args: string[]): CliProcess {
  return spawnCli([
    'run',
    '--database-url',
    PG_URL,
    '--schema',
    t.schema,
    '--broker',
    broker,
    ...args,
  ]);
}

/** `run --ui-port 0` to a stream of its own, its console open once it shows the broker connected. */
async function runWithConsole() {
  const dispatcher = run(await natsStream(), '--ui-port', '0');
  let port = 0;
  await dispatcher.waitFor('the console', () => {
    port = loggedPort(dispatcher, 'serving the console');
    return port > 0;
  });
  const base = `http://127.0.0.1:${port}`;
  const watched = await open(base);
  await waitFor(
    'the broker figure',
    async () =>
      /nats: connected/.test((await watched.page.getByTestId('broker').textContent()) ?? ''),
    { timeoutMs: 15_000 },
  );
  return { dispatcher, base, watched };
}

async function stop(cli: CliProcess): Promise<void> {
  cli.child.kill('SIGTERM');
  const result = await cli.exited;
  expect(result.code, result.stderr).toBe(0);
}

/** A fresh JetStream stream for the test (deleted after it); the broker URL publishing to it. */
async function natsStream(): Promise<string> {
  const prefix = `t${randomBytes(5).toString('hex')}`;
  const stream = `T_${prefix}`;
  await createStream(NATS_URL, stream, [`${prefix}.>`]);
  cleanups.push(() => deleteStream(NATS_URL, stream));
  return `${NATS_URL}?stream=${stream}&subject_prefix=${prefix}`;
}

/**
 * Makes every pending event a dead letter the way production does: a dispatcher publishes
 * to a RabbitMQ exchange that no queue is bound to (unroutable, refused), one attempt each.
 */
async function deadLetterAll(exchange: string): Promise<void> {
  const expected = (await tableCount('')) + (await tableCount('_dead_letter'));
  const refused = run(`${AMQP_URL}?exchange=${exchange}`, '--max-attempts', '1');
  await refused.waitFor(
    'every event dead-lettered',
    async () => (await tableCount('_dead_letter')) === expected,
    60_000,
  );
  await stop(refused);
}

describe('the web console in Chromium', () => {
  it('shows the backlog falling during a live drain, without a reload', {
    timeout: 180_000,
  }, async () => {
    const EVENTS = 20_000;
    await insert(EVENTS, 500);
    const ui = await startConsole(t.schema);
    const watched = await open(ui.base);
    const { page } = watched;
    await waitFor(
      'the page to show the backlog',
      async () => (await shownNumber(page, 'pending')) === EVENTS,
      {
        timeoutMs: 15_000,
      },
    );
    // A mark in this document: still there at the end means no reload happened.
    await page.evaluate('window.sameDocument = true');

    // Tiny batches, one at a time: the drain takes several of the page's 2 s polls (in
    // batches of 20 it took under 2 s, and the page once saw only 20,000, then 0).
    const dispatcher = run(await natsStream(), '--batch-size', '2', '--batches-in-flight', '1');
    const shown: number[] = [EVENTS];
    const shots = screenshotDir();
    cleanups.push(async () => shots.remove());
    let shot = false;
    await dispatcher.waitFor(
      'the page to show 0 pending',
      async () => {
        const pending = await shownNumber(page, 'pending');
        if (pending !== shown.at(-1)) shown.push(pending);
        // The overview's picture: mid-drain, the backlog chart falling.
        if (!shot && pending > 0 && pending < EVENTS / 2) {
          shot = true;
          await page.screenshot({ path: join(shots.dir, 'overview.png') });
        }
        return pending === 0;
      },
      120_000,
    );
    await stop(dispatcher);

    expect(await tableCount('')).toBe(0);
    // It fell through values between, never rose, and ended at 0: the page was live.
    expect(shown.filter((n) => n > 0 && n < EVENTS).length, shown.join(' → ')).toBeGreaterThan(0);
    expect(shown).toEqual([...shown].sort((a, b) => b - a));
    expect(await page.evaluate('window.sameDocument')).toBe(true);
    expect(await page.getByTestId('chart-backlog').isVisible()).toBe(true);
    expectSameOriginAndNoViolation(watched, ui.base);
  });

  it('retries a dead-letter group by clicking; its events then reach the broker in order', {
    timeout: 180_000,
  }, async () => {
    const exchange = testExchange();
    cleanups.push(() => deleteExchange(exchange));
    const lessons = await insert(200, 10);
    const quizzes = await insert(30, 3, 'quiz-submitted');
    await deadLetterAll(exchange);
    expect(await tableCount('_dead_letter')).toBe(230);

    const ui = await startConsole(t.schema);
    const watched = await open(ui.base, '#/dead-letters');
    const { page } = watched;
    const groups = page.getByTestId('groups-row');
    await waitFor('two groups', async () => (await groups.count()) === 2, { timeoutMs: 15_000 });
    const lessonGroup = groups.filter({ hasText: 'lesson-published' });
    expect(await lessonGroup.textContent()).toContain('200');
    await lessonGroup.getByTestId('group-open').click();
    // The group's dead letters (the first hundred): the lesson events, no others.
    const rows = page.getByTestId('letters-row');
    await waitFor('the group listed', async () => (await rows.count()) === 100, {
      timeoutMs: 15_000,
    });
    const lessonIds = new Set(lessons.map((row) => row.id));
    const listed = await rows.evaluateAll((all) =>
      all.map((row) => row.querySelector('a')?.textContent),
    );
    expect(listed.filter((id) => !lessonIds.has(id ?? ''))).toEqual([]);

    await page.getByTestId('retry-group').click();
    await page.getByTestId('confirm').waitFor();
    // Nothing moves before the confirm.
    expect(await tableCount('')).toBe(0);
    await page.getByTestId('confirm-yes').click();
    await page.getByTestId('touched').waitFor();
    expect(await page.getByTestId('touched').textContent()).toBe('Retried 200 dead letters.');
    expect(await tableCount('')).toBe(200);
    // The other group stays dead, and the page says so.
    expect(await tableCount('_dead_letter')).toBe(30);
    await waitFor('one group left', async () => (await groups.count()) === 1, {
      timeoutMs: 10_000,
    });
    expect(await groups.first().textContent()).toContain('quiz-submitted');

    // Now a queue is bound: a dispatcher publishes the retried events, and RabbitMQ's own
    // client, not this project's code, reads them back.
    const consumer = await consumeExchange(exchange, '#');
    cleanups.push(() => consumer.close());
    const dispatcher = run(`${AMQP_URL}?exchange=${exchange}`);
    await dispatcher.waitFor(
      '200 events at the consumer',
      () => consumer.received.length >= 200,
      60_000,
    );
    await stop(dispatcher);

    const order = new Map<string, string[]>();
    for (const message of consumer.received) {
      const subject = message.attributes.subject ?? '';
      const ids = order.get(subject) ?? [];
      if (!ids.includes(message.dedupId)) ids.push(message.dedupId);
      order.set(subject, ids);
    }
    const expected = new Map<string, string[]>();
    for (const row of lessons)
      expected.set(row.aggregate_id, [...(expected.get(row.aggregate_id) ?? []), row.id]);
    expect(order).toEqual(expected);
    const quizIds = new Set(quizzes.map((row) => row.id));
    expect(consumer.received.filter((message) => quizIds.has(message.dedupId))).toEqual([]);
    expect(await tableCount('')).toBe(0);
    expectSameOriginAndNoViolation(watched, ui.base);
  });

  it('keeps the dead-letter groups within the window when an event type is 1,500 characters', {
    timeout: 60_000,
  }, async () => {
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       VALUES (9000001, gen_random_uuid(), 'lesson', 'lesson-1', $1, '{}', '{}', 0, now(), 1, $2)`,
      [`lesson-${'x'.repeat(1500)}`, `refused: ${'y'.repeat(1000)}`],
    );
    // And one whose aggregate id is 450 characters without a space, in its group's table.
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       VALUES (9000002, gen_random_uuid(), 'lesson', $1, 'lesson-published', '{}', '{}', 0, now(), 1, 'refused')`,
      ['L'.repeat(450)],
    );
    cleanups.push(() =>
      t.db.query(`DELETE FROM "${t.schema}".outbox_dead_letter WHERE seq = 9000001`),
    );
    const ui = await startConsole(t.schema);
    const { page } = await open(ui.base, '#/dead-letters');
    await page.getByTestId('groups-row').first().waitFor();
    const widths = {
      table: await page
        .getByTestId('groups')
        .evaluate((table) => (table as unknown as { scrollWidth: number }).scrollWidth),
      window: page.viewportSize()?.width ?? 0,
    };
    expect(widths.table).toBeGreaterThan(0);
    expect(widths.table).toBeLessThanOrEqual(widths.window);
    await page
      .getByTestId('groups-row')
      .filter({ hasText: 'lesson-published' })
      .getByTestId('group-open')
      .click();
    await page.getByTestId('letters-row').first().waitFor();
    const letters = await page
      .getByTestId('letters')
      .evaluate((table) => (table as unknown as { scrollWidth: number }).scrollWidth);
    expect(letters).toBeGreaterThan(0);
    expect(letters).toBeLessThanOrEqual(widths.window);
  });

  it("shows a dead letter's payload as stored, and keeps it shown when a retry finds its id taken", {
    timeout: 60_000,
  }, async () => {
    const id = randomUUID();
    const payload =
      '{"z": 1, "a": 12345678901234567890123, "f": 0.1000000000000000055511151231257827, "dup": 1, "dup": 2, "e": 1e400, "s": "a,b:{\\"["}';
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       VALUES (9000003, $1, 'lesson', 'lesson-1', 'lesson-published', $2, '{}', 0, now(), 3, 'refused')`,
      [id, payload],
    );
    // An event of the same id waits in the outbox (not yet due): a retry must leave the dead letter.
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox (id, aggregate_type, aggregate_id, event_type, payload, available_at)
       VALUES ($1, 'lesson', 'lesson-1', 'lesson-published', '{}', now() + interval '1 hour')`,
      [id],
    );
    const ui = await startConsole(t.schema);
    const { page, requests } = await open(ui.base, `#/dead-letters/${id}`);
    await page.getByTestId('detail-payload').waitFor();
    expect(await page.getByTestId('detail-payload').textContent()).toBe(
      [
        '{',
        '  "z": 1,',
        '  "a": 12345678901234567890123,',
        '  "f": 0.1000000000000000055511151231257827,',
        '  "dup": 1,',
        '  "dup": 2,',
        '  "e": 1e400,',
        '  "s": "a,b:{\\"["',
        '}',
      ].join('\n'),
    );
    await page.getByTestId('retry-one').click();
    await page.getByTestId('confirm-yes').click();
    const touched = page.getByTestId('touched');
    await touched.waitFor();
    expect(await touched.textContent()).toContain(
      '1 left: another event has the same id, in the outbox or as an earlier dead letter',
    );
    expect(await touched.getAttribute('class')).toContain('partial');
    // Still a dead letter, still shown with its actions, through the page's next polls.
    const asked = () => requests.filter((url) => url.endsWith(`/api/dead-letters/${id}`)).length;
    const before = asked();
    await waitFor('two more polls of the dead letter', () => asked() >= before + 2, {
      timeoutMs: 15_000,
    });
    expect(await page.getByTestId('detail-payload').isVisible()).toBe(true);
    expect(await page.getByTestId('retry-one').isVisible()).toBe(true);
    expect(await tableCount('_dead_letter')).toBe(1);
  });

  it('draws the charts in UTC, as every time it shows, in any time zone', {
    timeout: 60_000,
  }, async () => {
    const ui = await startConsole(t.schema);
    const page = await pageInTimeZone('Asia/Tokyo');
    await page.goto(`${ui.base}/#/`);
    const chart = page.getByTestId('chart-backlog');
    await chart.locator('.u-over').waitFor();
    // The cursor over the newest sample, once there is one: the legend names its time.
    let shown = '';
    let match: RegExpExecArray | null = null;
    await waitFor(
      'a sample in the legend',
      async () => {
        const over = await chart.locator('.u-over').boundingBox();
        if (!over) return false;
        await page.mouse.move(over.x + over.width - 2, over.y + over.height / 2);
        shown = (await chart.locator('.u-legend .u-series').first().textContent()) ?? '';
        match = /(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)/.exec(shown);
        return match !== null;
      },
      { timeoutMs: 15_000 },
    ).catch(() => {});
    expect(shown).toContain('UTC');
    expect(match?.[1]).toBeDefined();
    const at = Date.parse(`${(match?.[1] ?? '').replace(' ', 'T')}Z`);
    // Tokyo's clock is 9 hours ahead: a local time would be far from now.
    expect(Math.abs(at - Date.now())).toBeLessThan(5 * 60_000);
  });

  it('reads the filter times as UTC, as every time it shows, in any time zone', {
    timeout: 60_000,
  }, async () => {
    const ui = await startConsole(t.schema);
    const page = await pageInTimeZone('America/New_York');
    const asked: string[] = [];
    page.on('request', (request) => asked.push(request.url()));
    await page.goto(`${ui.base}/#/dead-letters`);
    await page.getByTestId('filter-since').fill('2026-12-05T15:30');
    await page.getByTestId('filter-until').fill('2026-12-05T16:00');
    await page.getByTestId('filter-apply').click();
    await waitFor('the filtered groups asked for', () =>
      asked.some((url) => new URL(url).searchParams.has('since')),
    );
    const filtered = new URL(asked.find((url) => new URL(url).searchParams.has('since')) ?? '');
    expect(filtered.searchParams.get('since')).toBe('2026-12-05T15:30:00.000Z');
    expect(filtered.searchParams.get('until')).toBe('2026-12-05T16:00:00.000Z');
  });

  it('served by run --ui-port, shows its broker and the occurred → ack latency', {
    timeout: 120_000,
  }, async () => {
    const { dispatcher, base, watched } = await runWithConsole();
    const { page } = watched;
    const broker = page.getByTestId('broker');
    // Events keep coming for a few samples: each sample holds the latency of what it saw published.
    let inserted = 0;
    await waitFor(
      'the latency chart',
      async () => {
        if (inserted < 2000) inserted += (await insert(100, 10)).length;
        return (await page.getByTestId('chart-latency').count()) === 1;
      },
      { timeoutMs: 30_000, intervalMs: 300 },
    );
    expect(await page.getByTestId('chart-latency-absent').count()).toBe(0);
    await waitFor('everything published', async () => (await tableCount('')) === 0, {
      timeoutMs: 30_000,
    });
    await waitFor(
      "the dispatcher's count",
      async () =>
        new RegExp(`${inserted.toLocaleString('en-US')} published`).test(
          (await broker.textContent()) ?? '',
        ),
      {
        timeoutMs: 10_000,
      },
    );
    await stop(dispatcher);
    expectSameOriginAndNoViolation(watched, base);
  });

  it('draws a latency measured once, between quiet samples, as a point', {
    timeout: 180_000,
  }, async () => {
    const { dispatcher, base, watched } = await runWithConsole();
    const { page } = watched;
    // uPlot draws every sample as a point while they are few for the chart's width (one
    // per 12 px or so): a narrow page, and a history of quiet samples past that.
    await page.setViewportSize({ width: 320, height: 800 });
    await waitFor(
      'a history of 24 samples',
      async () => {
        const history = (await (await fetch(`${base}/api/history`)).json()) as {
          samples: unknown[];
        };
        return history.samples.length >= 24;
      },
      { timeoutMs: 90_000, intervalMs: 1_000 },
    );
    // One transaction of three events: published in one batch, within one sample.
    await insert(3, 3);
    const chart = page.getByTestId('chart-latency');
    await waitFor('the latency chart', async () => (await chart.count()) === 1, {
      timeoutMs: 30_000,
    });
    // p99's colour (#dc2626) on the chart's canvas: a line needs two samples, so only a
    // point can draw this one (uPlot's legend is HTML, not on the canvas).
    const p99Pixels = () =>
      chart.locator('canvas').evaluate((element) => {
        // The page's own types: this file is compiled without the DOM's.
        const canvas = element as unknown as {
          width: number;
          height: number;
          getContext(kind: '2d'): {
            getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
          } | null;
        };
        const context = canvas.getContext('2d');
        if (!context) return -1;
        const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
        let count = 0;
        for (let i = 0; i < data.length; i += 4) {
          const [r, g, b, a] = [data[i] ?? 0, data[i + 1] ?? 0, data[i + 2] ?? 0, data[i + 3] ?? 0];
          if (
            Math.abs(r - 0xdc) < 32 &&
            Math.abs(g - 0x26) < 32 &&
            Math.abs(b - 0x26) < 32 &&
            a > 128
          )
            count++;
        }
        return count;
      });
    await waitFor('the lone sample drawn', async () => (await p99Pixels()) > 0, {
      timeoutMs: 10_000,
    });
    const { samples } = (await (await fetch(`${base}/api/history`)).json()) as {
      samples: { latencyP99Ms: number | null }[];
    };
    expect(samples.filter((sample) => sample.latencyP99Ms !== null)).toHaveLength(1);
    await stop(dispatcher);
    expectSameOriginAndNoViolation(watched, base);
  });

  it('bound beyond loopback, refuses API requests without the token and asks for it', {
    timeout: 60_000,
  }, async () => {
    const token = randomBytes(16).toString('hex');
    const refused = await runCli(
      ['ui', '--database-url', PG_URL, '--schema', t.schema, '--port', '0', '--host', '0.0.0.0'],
      {
        timeoutMs: 15_000,
      },
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('ui-token');

    await insert(7, 7);
    const ui = await startConsole(t.schema, ['--host', '0.0.0.0'], { OUTBOX_UI_TOKEN: token });
    const api = `${ui.base}/api/overview`;
    expect((await fetch(api)).status).toBe(401);
    expect((await fetch(api, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(api, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    // The page itself carries no data and is served without the token.
    expect((await fetch(`${ui.base}/`)).status).toBe(200);

    const watched = await open(ui.base);
    const { page } = watched;
    await page.getByTestId('token-form').waitFor();
    expect(await page.getByTestId('pending').count()).toBe(0);
    expect(await page.getByTestId('token-refused').count()).toBe(0);
    await page.getByTestId('token-input').fill('wrong');
    await page.getByTestId('token-submit').click();
    await page.getByTestId('token-refused').waitFor();
    await page.getByTestId('token-input').fill(token);
    await page.getByTestId('token-submit').click();
    await waitFor(
      'the overview with the token',
      async () => (await page.getByTestId('pending').count()) === 1,
      {
        timeoutMs: 10_000,
      },
    );
    expect(await shownNumber(page, 'pending')).toBe(7);
    // Another page of the console in the same tab uses the kept token.
    await page.getByTestId('nav-partitions').click();
    await page.getByTestId('partition-grid').waitFor();
    // The token travelled in a header only: never in a URL.
    expect(watched.requests.filter((url) => url.includes(token))).toEqual([]);
    expectSameOriginAndNoViolation(watched, ui.base);
  });

  it('keeps a search typed as soon as the search page shows', {
    timeout: 60_000,
  }, async () => {
    const [row] = await insert(3, 1);
    const ui = await startConsole(t.schema);
    const watched = await open(ui.base);
    const { page } = watched;
    await page.getByTestId('nav-search').waitFor();
    // Typed into the field the moment it is in the page, before the page's effects run
    // (they run after the next frame), as a quick hand or a browser's autofill does.
    const typed = row?.aggregate_id ?? '';
    const kept = await page.evaluate(`(async () => {
      const field = () => document.querySelector('[data-testid="search-input"]');
      const shown = new Promise((resolve) => {
        new MutationObserver((_, observer) => {
          if (field()) {
            observer.disconnect();
            resolve(field());
          }
        }).observe(document.body, { childList: true, subtree: true });
      });
      location.hash = '#/search';
      const input = await shown;
      input.value = ${JSON.stringify(typed)};
      input.dispatchEvent(new Event('input', { bubbles: true }));
      // Two frames and a while: every effect of the render has run.
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      await new Promise((resolve) => setTimeout(resolve, 200));
      return field().value;
    })()`);
    expect(kept).toBe(typed);
    await page.getByTestId('search-submit').click();
    await page.getByTestId('search-pending').waitFor();
    expect(await page.getByTestId('search-pending').getByTestId('search-pending-row').count()).toBe(
      3,
    );
    expectSameOriginAndNoViolation(watched, ui.base);
  });

  it('every page stays on its own origin with no CSP violation, untrusted text shown as text (screenshots)', {
    timeout: 180_000,
  }, async () => {
    const shots = screenshotDir();
    cleanups.push(async () => shots.remove());
    const exchange = testExchange();
    cleanups.push(() => deleteExchange(exchange));
    const dead = await insert(40, 8);
    await insert(12, 4, 'quiz-submitted');
    await deadLetterAll(exchange);
    // An error text that would run script if the page pasted it as HTML.
    const hostile = '<img src=x onerror="window.pwned=1"> broker said no';
    await t.db.query(
      `UPDATE "${t.schema}".outbox_dead_letter SET last_error = $1 WHERE event_type = 'quiz-submitted'`,
      [hostile],
    );
    // A backlog, held by two dispatchers whose broker refuses it (retried later, not dead).
    await insert(3000, 300);
    const holders = [1, 2].map(() =>
      run(
        `${AMQP_URL}?exchange=${exchange}`,
        '--max-attempts',
        '1000',
        '--retry-base-delay-ms',
        '60000',
      ),
    );
    const ui = await startConsole(t.schema);
    const watched = await open(ui.base);
    const { page } = watched;
    const overview = async () =>
      (await (await fetch(`${ui.base}/api/overview`)).json()) as {
        status: { partitions: number; dispatchers: { partitions: number[] }[] };
      };
    await waitFor(
      'two dispatchers sharing the partitions',
      async () => {
        const { status } = await overview();
        const owned = status.dispatchers.reduce((sum, d) => sum + d.partitions.length, 0);
        return status.dispatchers.length === 2 && owned === status.partitions;
      },
      { timeoutMs: 30_000 },
    );

    await waitFor(
      'the overview figures',
      async () => (await shownNumber(page, 'pending')) === 3000,
      { timeoutMs: 10_000 },
    );
    expect(await shownNumber(page, 'dead-letters')).toBe(52);
    // The retention at work shows as the oldest dead letter's age.
    expect(await page.getByTestId('oldest-dead-letter').textContent()).toMatch(/^\d+ s ago$/);
    // Drawn from the same answer as the backlog, or a later one on a busy machine.
    await waitFor(
      'two dispatchers shown',
      async () => (await shownNumber(page, 'dispatchers')) === 2,
      {
        timeoutMs: 10_000,
      },
    );
    expect(await page.getByTestId('broker').textContent()).toContain('not known');
    expect(await page.getByTestId('chart-latency-absent').textContent()).toContain('run --ui-port');

    await page.getByTestId('nav-partitions').click();
    const { status } = await overview();
    const cells = page.getByTestId('partition');
    await waitFor('every partition', async () => (await cells.count()) === status.partitions, {
      timeoutMs: 10_000,
    });
    // Each partition in its owner's colour: as many colours as dispatchers, none unowned.
    // Waited for: the page may have drawn a snapshot taken while a membership changed (the
    // first dispatcher gives back half of its partitions a round before the second takes
    // them: unowned meanwhile, longer on a busy machine).
    let classes: string[] = [];
    const colours = () => new Set(classes.map((c) => /owner-\d/.exec(c)?.[0])).size;
    await waitFor(
      'two owners on the partitions page, none unowned',
      async () => {
        classes = await cells.evaluateAll((all) => all.map((cell) => cell.className));
        return colours() === 2 && !classes.some((c) => c.includes('unowned'));
      },
      { timeoutMs: 10_000 },
    ).catch(() => {});
    expect(colours()).toBe(2);
    expect(classes.filter((c) => c.includes('unowned'))).toEqual([]);
    await page.screenshot({ path: join(shots.dir, 'partitions.png') });

    // With the dispatchers gone, the partitions with a backlog have no owner: stuck, and shown so.
    for (const holder of holders) await stop(holder);
    await waitFor(
      'stuck partitions shown',
      async () => (await page.locator('[data-state="stuck"]').count()) > 0,
      {
        timeoutMs: 10_000,
      },
    );

    await page.getByTestId('nav-dead-letters').click();
    const groups = page.getByTestId('groups-row');
    await waitFor('two groups', async () => (await groups.count()) === 2, { timeoutMs: 10_000 });
    const hostileGroup = groups.filter({ hasText: 'quiz-submitted' });
    expect(await hostileGroup.textContent()).toContain(hostile);
    await groups.filter({ hasText: 'lesson-published' }).getByTestId('group-open').click();
    await page.getByTestId('letters-row').first().waitFor();
    await page.getByTestId('select').nth(1).check();
    await page.screenshot({ path: join(shots.dir, 'dead-letters.png') });

    const first = dead[0] as Row;
    await page.getByRole('link', { name: first.id }).click();
    await page.getByTestId('detail-payload').waitFor();
    expect(JSON.parse((await page.getByTestId('detail-payload').textContent()) ?? '')).toEqual({
      n: 1,
      title: '<script>alert(1)</script>',
    });
    expect(await page.getByTestId('detail-type').textContent()).toBe('lesson-published');
    await page.screenshot({ path: join(shots.dir, 'dead-letter.png') });

    await page.getByTestId('nav-search').click();
    await page.getByTestId('search-input').fill(first.aggregate_id ?? '');
    await page.getByTestId('search-submit').click();
    await page.getByTestId('search-dead').waitFor();
    // Its dead letters (5 of the 40 over 8 aggregates) and its pending events (10 of 3,000 over 300).
    expect(await page.getByTestId('search-dead').getByTestId('search-dead-row').count()).toBe(5);
    expect(await page.getByTestId('search-pending').getByTestId('search-pending-row').count()).toBe(
      10,
    );
    await page.screenshot({ path: join(shots.dir, 'search.png') });
    expect(await page.getByTestId('search-nothing').count()).toBe(0);
    // An id found nowhere (a published event is no longer kept) says why.
    await page.getByTestId('search-input').fill('00000000-0000-4000-8000-000000000000');
    await page.getByTestId('search-submit').click();
    await page.getByTestId('search-nothing').waitFor();
    expect(await page.getByTestId('search-nothing').textContent()).toContain(
      'An event leaves the outbox once the broker has acknowledged it',
    );

    // Untrusted text stayed text: no element was made from it, no script ran.
    expect(await page.evaluate('window.pwned')).toBeUndefined();
    expect(await page.locator('img').count()).toBe(0);
    expectSameOriginAndNoViolation(watched, ui.base);

    // The recorder does see a violation when there is one: an inline script is refused.
    await page.evaluate(
      "document.body.append(Object.assign(document.createElement('script'), { textContent: 'window.inline = 1' }))",
    );
    await waitFor('the violation reported', () => watched.violations.length > 0, {
      timeoutMs: 5000,
    });
    expect(await page.evaluate('window.inline')).toBeUndefined();
  });
});
