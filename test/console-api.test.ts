/**
 * The console's admin API over HTTP against PostgreSQL: the same answers as the CLI's
 * `status` and `dead` commands, bad input refused naming the field, and the access rules
 * (token beyond loopback, no requests from other origins or host names). Dead letters are
 * made as production makes them: a dispatcher whose broker refuses some events.
 */

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ConsoleServer, startConsoleServer } from '../src/console/server.js';
import {
  createDispatcher,
  createOutbox,
  LessonPublished,
  MemoryBroker,
  type OutboxEvent,
  QuizSubmitted,
} from '../src/index.js';
import { createPgTestSchema, proxiedPgDatabase, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
let server: ConsoleServer | undefined;
let pageDir: string;

beforeEach(async () => {
  t = await createPgTestSchema('console');
  pageDir = mkdtempSync(join(tmpdir(), 'console-page-'));
  writeFileSync(join(pageDir, 'index.html'), '<!doctype html><title>console</title>');
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  rmSync(pageDir, { recursive: true, force: true });
  await t.drop();
});

const lesson = (lessonId: string) =>
  LessonPublished.create({
    lesson_id: lessonId,
    author_id: randomUUID(),
    title: 'Cells',
    published_at: '2026-11-27T09:30:00Z',
  });
const quiz = (quizId: string) =>
  QuizSubmitted.create({
    quiz_id: quizId,
    student_id: randomUUID(),
    score: 7,
    submitted_at: '2026-11-27T10:00:00Z',
  });

async function enqueue(events: OutboxEvent[]): Promise<string[]> {
  const outbox = createOutbox({ schema: t.schema });
  return t.db.transaction(async (tx) => outbox.enqueue(tx, events));
}

/** Drains once, one attempt each; the broker refuses with the reason `refuse` gives. */
async function drain(refuse: (id: string) => string | undefined): Promise<MemoryBroker> {
  const broker = new MemoryBroker({
    onPublish: (message) => {
      const error = refuse(message.id);
      return error ? { ok: false, error, permanent: true } : undefined;
    },
  });
  const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker, maxAttempts: 1 });
  await dispatcher.drain();
  await dispatcher.stop();
  return broker;
}

async function serve(options: { host?: string; token?: string; sampleIntervalMs?: number } = {}) {
  server = await startConsoleServer({ db: t.db, schema: t.schema, port: 0, pageDir, ...options });
  return server;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  // biome-ignore lint/suspicious/noExplicitAny: the API's JSON, checked by each test's expectations
  body: any;
}

/** One HTTP request to the console; `headers` may override Host. */
function call(
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; port?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: options.port ?? server?.port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  call(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

describe('reading', () => {
  it('the overview is the status of the schema, and the page is served with a strict CSP', async () => {
    const quizzes = [randomUUID(), randomUUID()];
    await enqueue([quiz(quizzes[0] as string), lesson(randomUUID()), quiz(quizzes[1] as string)]);
    await serve();
    const { status, body } = await call('/api/overview');
    expect(status).toBe(200);
    expect(body.dispatcher).toBeNull();
    expect(body.status).toMatchObject({
      schema: t.schema,
      partitions: 64,
      pending: 3,
      deadLetters: 0,
      consumerDeadLetters: 0,
      pendingByEventType: { 'quiz-submitted': { pending: 2 }, 'lesson-published': { pending: 1 } },
    });
    const page = await call('/');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect((await call('/assets/../../etc/passwd')).status).toBe(404);
    expect((await call('/api/nothing')).status).toBe(404);
  });

  it('groups dead letters by type and error, filters them, and shows one whole', async () => {
    const ids = await enqueue([
      quiz(randomUUID()),
      quiz(randomUUID()),
      lesson(randomUUID()),
      quiz(randomUUID()),
    ]);
    const reason = (id: string) =>
      id === ids[2] ? 'Lesson Topic Missing' : id === ids[3] ? undefined : 'quota exceeded';
    await drain(reason);
    await serve();
    const groups = await call('/api/dead-letters/groups');
    expect(groups.status).toBe(200);
    expect(groups.body.groups).toEqual([
      expect.objectContaining({ eventType: 'quiz-submitted', error: 'quota exceeded', count: 2 }),
      expect.objectContaining({
        eventType: 'lesson-published',
        error: 'Lesson Topic Missing',
        count: 1,
      }),
    ]);
    const first = groups.body.groups[0];
    expect(Date.parse(first.firstDeadAt)).toBeLessThanOrEqual(Date.parse(first.lastDeadAt));

    const byText = await call('/api/dead-letters?errorContains=topic%20MISSING');
    expect(byText.body.deadLetters.map((d: { id: string }) => d.id)).toEqual([ids[2]]);
    const limited = await call('/api/dead-letters?limit=1');
    expect(limited.body).toMatchObject({ truncated: true });
    expect(limited.body.deadLetters).toHaveLength(1);

    const detail = await call(`/api/dead-letters/${ids[2]}`);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({
      id: ids[2],
      attempts: 1,
      lastError: 'Lesson Topic Missing',
    });
    expect(JSON.parse(detail.body.payload)).toMatchObject({ title: 'Cells' });
    expect((await call(`/api/dead-letters/${randomUUID()}`)).status).toBe(404);

    const status = await call('/api/overview');
    expect(status.body.status).toMatchObject({ pending: 0, deadLetters: 3 });
  });

  it('lists groups of one size dead-lettered together in one order, by type then error', async () => {
    // One statement, one dead_at: equal counts and times, which the page refreshes every
    // 2 s; rows must not move under an operator's cursor. Enough of them for a hashed grouping (the
    // first 500 are listed).
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       SELECT 9100000 + i, gen_random_uuid(), 'lesson', 'lesson-' || i,
         'type-' || (i % 7), '{}', '{}', 0, now(), 1, md5(i::text)
       FROM generate_series(0, 2999) i`,
    );
    await t.db.query(`ANALYZE "${t.schema}".outbox_dead_letter`);
    await serve();
    const { rows } = await t.db.query<{ key: string }>(
      `SELECT event_type || ' ' || last_error AS key FROM "${t.schema}".outbox_dead_letter
       ORDER BY event_type COLLATE "C", last_error COLLATE "C"`,
    );
    for (let round = 0; round < 3; round++) {
      const { body } = await call('/api/dead-letters/groups');
      expect(
        body.groups.map((g: { eventType: string; error: string }) => `${g.eventType} ${g.error}`),
      ).toEqual(rows.slice(0, 500).map((row) => row.key));
    }
  });

  it('finds an event by id and an aggregate by its id, pending or dead', async () => {
    const lessonId = randomUUID();
    const [dead, pending] = await enqueue([lesson(lessonId)]);
    await drain(() => 'refused');
    const [later] = await enqueue([lesson(lessonId)]);
    await serve();
    const byAggregate = await call(`/api/search?q=${lessonId}`);
    expect(byAggregate.status).toBe(200);
    expect(byAggregate.body.pending.map((e: { id: string }) => e.id)).toEqual([later]);
    expect(byAggregate.body.deadLetters.map((e: { id: string }) => e.id)).toEqual([dead]);
    expect(pending).toBeUndefined();
    const byId = await call(`/api/search?q=${later}`);
    expect(byId.body.pending).toEqual([
      expect.objectContaining({ id: later, aggregateId: lessonId, attempts: 0, lastError: null }),
    ]);
    expect(byId.body.deadLetters).toEqual([]);
    expect(byId.body.consumerDeadLetters).toEqual([]);
    expect((await call('/api/search?q=')).body).toMatchObject({ field: 'q' });
  });

  it("lists an aggregate's events oldest first, by number, not as text", async () => {
    const lessonId = randomUUID();
    // Seqs ordered as text would put 10 before 9, and 100 before 99.
    const dead = await enqueue(Array.from({ length: 12 }, () => lesson(lessonId)));
    await drain(() => 'refused');
    const pending = await enqueue(Array.from({ length: 95 }, () => lesson(lessonId)));
    await serve();
    const found = (await call(`/api/search?q=${lessonId}`)).body;
    expect(found.pending.map((e: { id: string }) => e.id)).toEqual(pending);
    expect(found.deadLetters.map((e: { id: string }) => e.id)).toEqual(dead);
    const listed = (await call(`/api/dead-letters?aggregateId=${lessonId}`)).body;
    expect(listed.deadLetters.map((e: { id: string }) => e.id)).toEqual(dead);
  });

  it('samples the publish rate while a dispatcher drains, and the latency of the one it serves', async () => {
    const broker = new MemoryBroker();
    const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker });
    server = await startConsoleServer({
      db: t.db,
      schema: t.schema,
      port: 0,
      pageDir,
      dispatcher,
      brokerName: 'memory',
      sampleIntervalMs: 100,
    });
    await enqueue(Array.from({ length: 300 }, () => lesson(randomUUID())));
    await waitFor('a sample of the backlog', async () =>
      (await call('/api/history')).body.samples.some((s: { pending: number }) => s.pending === 300),
    );
    await dispatcher.start();
    try {
      await waitFor('the 300 events at the broker', () => broker.messages.length === 300);
      // The samples' rates, over their intervals, add up to the events published.
      let history: Reply['body'];
      await waitFor(
        'samples covering the drain',
        async () => {
          history = (await call('/api/history')).body;
          const samples = history.samples as {
            t: number;
            publishedPerSecond: number | null;
            pending: number;
          }[];
          let published = 0;
          for (let i = 1; i < samples.length; i++) {
            const rate = samples[i]?.publishedPerSecond ?? 0;
            published += (rate * ((samples[i]?.t ?? 0) - (samples[i - 1]?.t ?? 0))) / 1000;
          }
          return Math.round(published) === 300 && samples.at(-1)?.pending === 0;
          // PostgreSQL publishes a backend's table statistics within a second, or ten when idle.
        },
        { timeoutMs: 30_000 },
      );
      expect(history.intervalMs).toBe(100);
      expect(
        history.samples.some((s: { latencyP99Ms: number | null }) => s.latencyP99Ms !== null),
      ).toBe(true);
      const overview = await call('/api/overview');
      expect(overview.body.dispatcher).toMatchObject({ broker: 'memory', published: 300 });
    } finally {
      await dispatcher.stop();
    }
  });
});

describe('acting', () => {
  it('retries a group in its original order and discards by id, as the CLI does', async () => {
    const quizId = randomUUID();
    const ids = await enqueue([quiz(quizId), quiz(quizId), lesson(randomUUID()), quiz(quizId)]);
    await drain((id) => (id === ids[2] ? 'no topic' : 'quota exceeded'));
    await serve();
    const retried = await post('/api/dead-letters/retry', {
      filter: { eventType: 'quiz-submitted', error: 'quota exceeded' },
    });
    expect(retried.status).toBe(200);
    expect([...retried.body.ids].sort()).toEqual([ids[0], ids[1], ids[3]].sort());
    const broker = await drain(() => undefined);
    expect(broker.messages.map((m) => m.id)).toEqual([ids[0], ids[1], ids[3]]);

    // Asked by id, the answer says which were not dead letters (the CLI's exit 1).
    const gone = randomUUID();
    const discarded = await post('/api/dead-letters/discard', { ids: [ids[2], gone] });
    expect(discarded.body).toEqual({ ids: [ids[2]], notFound: [gone] });
    expect((await call('/api/overview')).body.status.deadLetters).toBe(0);
  });

  it('a retry leaves a dead letter whose id an outbox event has, and says so', async () => {
    const [taken, other] = await enqueue([quiz(randomUUID()), quiz(randomUUID())]);
    await drain(() => 'quota exceeded');
    await enqueue([{ ...lesson(randomUUID()), id: taken as string }]);
    await serve();
    // Before: 500, "duplicate key value violates unique constraint", and nothing retried.
    const retried = await post('/api/dead-letters/retry', { all: true });
    expect(retried.status).toBe(200);
    expect(retried.body).toEqual({ ids: [other], idTaken: [taken] });
    const byId = await post('/api/dead-letters/retry', { ids: [taken] });
    expect(byId.body).toEqual({ ids: [], idTaken: [taken], notFound: [] });
    await drain(() => undefined);
    expect((await post('/api/dead-letters/retry', { ids: [taken] })).body).toEqual({
      ids: [taken],
      notFound: [],
    });
    await drain(() => undefined);
  });

  it('refuses bad input naming the field, and an empty selection', async () => {
    await serve();
    const cases: [unknown, string][] = [
      [{}, 'filter'],
      [{ ids: ['not-a-uuid'] }, 'ids'],
      [{ ids: [] }, 'ids'],
      [{ filter: { eventType: 'x', colour: 'red' } }, 'filter.colour'],
      [{ filter: { since: 'yesterday' } }, 'filter.since'],
      [
        { filter: { since: '2026-12-02T00:00:00Z', until: '2026-12-01T00:00:00Z' } },
        'filter.until',
      ],
      [{ filter: { eventType: 'x' }, all: true }, 'all'],
      [{ all: 'yes' }, 'all'],
      [{ everything: true }, 'everything'],
      [[1, 2], 'body'],
      // No stored text holds a NUL: refused by name, not a 500 from the server.
      [{ filter: { aggregateId: 'a\u0000b' } }, 'filter.aggregateId'],
    ];
    for (const [body, field] of cases) {
      const reply = await post('/api/dead-letters/discard', body);
      expect(reply.status, JSON.stringify(body)).toBe(400);
      expect(reply.body.field, JSON.stringify(body)).toBe(field);
    }
    const empty = await post('/api/dead-letters/retry', {});
    expect(empty.body.error).toContain('"all": true');
    expect((await call('/api/dead-letters?limit=0')).body.field).toBe('limit');
    // A query parameter an endpoint does not read, or one given twice, is refused: a
    // misspelt filter would otherwise list every dead letter.
    for (const [path, field] of [
      ['/api/dead-letters?eventtype=lesson-published', 'eventtype'],
      ['/api/dead-letters?limit=5&limit=7', 'limit'],
      ['/api/dead-letters/groups?limit=5', 'limit'],
      ['/api/overview?verbose=1', 'verbose'],
      ['/api/search?q=x&id=y', 'id'],
      ['/api/search?q=a%00b', 'q'],
      ['/api/dead-letters?errorContains=a%00b', 'errorContains'],
      ['/api/dead-letters/groups?eventType=a%00b', 'eventType'],
    ]) {
      const reply = await call(path as string);
      expect(reply.status, path).toBe(400);
      expect(reply.body.field, path).toBe(field);
    }
    expect((await call('/api/dead-letters?until=2026-13-01T00:00:00Z')).body.field).toBe('until');
    // The window the wrong way round: nothing could match, so it is refused, not answered empty.
    const backwards = await call('/api/dead-letters?since=1h&until=2h');
    expect(backwards.status).toBe(400);
    expect(backwards.body.field).toBe('until');
    expect(backwards.body.error).toContain('is not after since');
    expect((await call('/api/dead-letters/nope')).body.field).toBe('id');
    const getRetry = await call('/api/dead-letters/retry');
    expect(getRetry.status).toBe(405);
    expect(getRetry.headers.allow).toBe('POST');
    expect((await call('/api/overview', { method: 'DELETE' })).headers.allow).toBe('GET, HEAD');
    // Headers past Node's limit: refused before the handler, in the API's form.
    const tooLarge = await call('/api/overview', { headers: { 'x-pad': 'x'.repeat(20_000) } });
    expect(tooLarge.status).toBe(431);
    expect(tooLarge.body.error).toContain('too large');
    const notJson = await call('/api/dead-letters/retry', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{oops',
    });
    expect(notJson).toMatchObject({ status: 400, body: { field: 'body' } });
    const huge = await post('/api/dead-letters/retry', { ids: ['x'.repeat(2 * 1024 * 1024)] });
    expect(huge.status).toBe(413);
  });

  it('answers 503 while the database is away, saying so, and answers again once it is back', async () => {
    const ids = await enqueue([quiz(randomUUID())]);
    await drain(() => 'quota exceeded');
    const { proxy, db } = await proxiedPgDatabase({ connectTimeoutMs: 1000 });
    try {
      server = await startConsoleServer({ db, schema: t.schema, port: 0, pageDir });
      expect((await call('/api/overview')).body.status.deadLetters).toBe(1);
      await proxy.stop();
      // The overview's status is shared for a second: it goes once that is over.
      let overview = await call('/api/overview');
      await waitFor('the overview to go', async () => {
        overview = await call('/api/overview');
        return overview.status !== 200;
      });
      for (const away of [overview, await call('/api/dead-letters')]) {
        expect(away.status).toBe(503);
        expect(away.headers['retry-after']).toBe('2');
        expect(away.body.error).toMatch(/^the database is unavailable \(.+\)$/);
      }
      // An action cut off may have been applied or not: the answer does not claim either.
      const retry = await post('/api/dead-letters/retry', { ids });
      expect(retry.status).toBe(503);
      expect(retry.body.error).toMatch(/whether the action took effect shows once it is back$/);
      await proxy.start();
      await waitFor('the overview back', async () => (await call('/api/overview')).status === 200);
      expect((await call('/api/overview')).body.status.deadLetters).toBe(1);
    } finally {
      await server?.close();
      server = undefined;
      await db.close();
      await proxy.stop();
    }
  });
});

describe('access', () => {
  it('refuses a bind beyond loopback without a token, and a short token', async () => {
    await expect(serve({ host: '0.0.0.0' })).rejects.toThrow(
      /ui-token: .*give the console a token/,
    );
    await expect(serve({ token: 'short' })).rejects.toThrow(/ui-token: must be at least 16/);
  });

  it('beyond loopback, every API request needs the token; the page itself holds no data', async () => {
    const token = `tok-${randomUUID()}`;
    await serve({ host: '0.0.0.0', token });
    const without = await call('/api/overview');
    expect(without.status).toBe(401);
    expect(without.headers['www-authenticate']).toBe('Bearer');
    expect(JSON.stringify(without.body)).not.toContain(token);
    expect(without.body.error).toBe('a token is required: Authorization: Bearer <token>');
    const wrong = await call('/api/overview', {
      headers: { authorization: 'Bearer wrong-token-0123456789' },
    });
    expect(wrong).toMatchObject({ status: 401, body: { error: 'the token is not accepted' } });
    const inUrl = await call(`/api/overview?token=${token}`);
    expect(inUrl.status).toBe(401);
    expect(inUrl.body.error).toContain('a token in the URL is not read');
    const basic = await call('/api/overview', {
      headers: { authorization: `Basic ${Buffer.from(`u:${token}`).toString('base64')}` },
    });
    expect(basic.body.error).toBe('the Authorization header must be Bearer <token>');
    for (const reply of [wrong, inUrl, basic]) {
      expect(JSON.stringify(reply.body)).not.toContain(token);
    }
    const refusedPost = await post('/api/dead-letters/discard', { all: true });
    expect(refusedPost.status).toBe(401);
    const right = await call('/api/overview', { headers: { authorization: `Bearer ${token}` } });
    expect(right.status).toBe(200);
    // A name other than loopback is fine once the token is checked.
    const named = await call('/api/overview', {
      headers: { authorization: `Bearer ${token}`, host: 'outbox.internal.example' },
    });
    expect(named.status).toBe(200);
    expect((await call('/')).status).toBe(200);
  });

  it('without a token, refuses what a page of another site could send', async () => {
    await enqueue([lesson(randomUUID())]);
    await drain(() => 'refused');
    await serve();
    // DNS rebinding: another site's name pointed at 127.0.0.1.
    expect(
      (await call('/api/overview', { headers: { host: 'attacker.example:8740' } })).status,
    ).toBe(403);
    // A cross-origin fetch or form post.
    const crossSite = await post(
      '/api/dead-letters/discard',
      { all: true },
      { origin: 'https://attacker.example' },
    );
    expect(crossSite.status).toBe(403);
    const form = await call('/api/dead-letters/discard', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ all: true }),
    });
    expect(form.status).toBe(415);
    expect((await call('/api/overview')).body.status.deadLetters).toBe(1);
    const sameOrigin = await post(
      '/api/dead-letters/discard',
      { all: true },
      {
        origin: `http://127.0.0.1:${server?.port}`,
      },
    );
    expect(sameOrigin.status).toBe(200);
    expect((await call('/api/overview')).body.status.deadLetters).toBe(0);
  });
});

describe('the OpenAPI file', () => {
  it('documents every endpoint the server answers, with the fields its answers carry', async () => {
    const { parse } = await import('yaml');
    const { readFileSync } = await import('node:fs');
    const spec = parse(readFileSync('docs/console-api.yaml', 'utf8'));
    const schemas = spec.components.schemas as Record<string, { required?: string[] }>;
    const required = (schema: { $ref?: string; required?: string[] }): string[] =>
      schema.$ref
        ? (schemas[schema.$ref.split('/').at(-1) as string]?.required ?? [])
        : (schema.required ?? []);
    const ids = await enqueue([lesson(randomUUID())]);
    await drain(() => 'refused');
    await serve();
    const paths = Object.entries(
      spec.paths as Record<
        string,
        Record<
          string,
          {
            responses: Record<
              string,
              { content: Record<string, { schema: { $ref?: string; required?: string[] } }> }
            >;
          }
        >
      >,
    );
    expect(paths.map(([path]) => path).sort()).toEqual([
      '/api/dead-letters',
      '/api/dead-letters/discard',
      '/api/dead-letters/groups',
      '/api/dead-letters/retry',
      '/api/dead-letters/{id}',
      '/api/history',
      '/api/overview',
      '/api/search',
    ]);
    for (const [path, methods] of paths) {
      for (const [method, operation] of Object.entries(methods)) {
        const url = path.replace('{id}', ids[0] as string) + (path === '/api/search' ? '?q=x' : '');
        const reply =
          method === 'post' ? await post(url, { ids: [randomUUID()] }) : await call(url);
        expect(reply.status, `${method} ${path}`).toBe(200);
        const schema = operation.responses['200']?.content['application/json']?.schema;
        for (const field of required(schema ?? {})) {
          expect(reply.body, `${method} ${path}: ${field}`).toHaveProperty(field);
        }
      }
    }
    const overview = (await call('/api/overview')).body;
    for (const field of schemas.Status?.required ?? []) {
      expect(overview.status, `Status.${field}`).toHaveProperty(field);
    }
  });
});
