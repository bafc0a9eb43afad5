/**
 * A dispatcher whose database goes away for several steps of its backoff: it says each
 * step once, says `dispatching again` once the database answers again (not before), and
 * publishes every event written before and during the outage. Then a database whose
 * connections go silent: no error, no close, nothing answering (a network partition, a
 * failover to another address), which without a limit of its own the dispatcher would
 * wait on until TCP gives up, many minutes later, or for ever. The dispatcher reaches
 * PostgreSQL through a TCP proxy the test stops or strands; the test enqueues directly.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { MemoryBroker } from '../src/brokers/memory.js';
import {
  createDispatcher,
  createOutbox,
  type Database,
  type Dispatcher,
  type DispatcherOptions,
  LessonPublished,
} from '../src/index.js';
import { createPgTestSchema, proxiedPgDatabase, type TestSchema } from './helpers/db.js';
import type { TcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
let proxy: TcpProxy;
let viaProxy: Database;
let dispatcher: Dispatcher | undefined;
/** Server processes behind stranded connections, ended after each test. */
let strandedPorts: number[] = [];

beforeAll(async () => {
  t = await createPgTestSchema('db_outage_log');
  ({ proxy, db: viaProxy } = await proxiedPgDatabase({ connectTimeoutMs: 1000 }));
});

afterEach(async () => {
  await dispatcher?.stop().catch(() => {});
  dispatcher = undefined;
  await proxy?.start();
  await terminate(strandedPorts);
  strandedPorts = [];
});

afterAll(async () => {
  await viaProxy?.close();
  await proxy?.stop();
  await t?.drop();
});

interface Line {
  message: string;
  fields: Record<string, unknown>;
  at: number;
}

const outbox = () => createOutbox({ schema: t.schema });

/**
 * A dispatcher (not started) reaching PostgreSQL through the proxy, polling every 100 ms,
 * with `options`; the lines it logs (not debug) are collected into the array returned.
 */
function logged(
  broker: MemoryBroker,
  options: Partial<DispatcherOptions>,
): { d: Dispatcher; lines: Line[] } {
  const lines: Line[] = [];
  const log = (fields: Record<string, unknown>, message: string) =>
    lines.push({ message, fields, at: Date.now() });
  const d = createDispatcher({
    db: viaProxy,
    broker,
    schema: t.schema,
    pollIntervalMs: 100,
    rebalanceIntervalMs: 100,
    ...options,
    logger: { debug: () => {}, info: log, warn: log, error: log },
  });
  dispatcher = d;
  return { d, lines };
}

async function enqueue(count: number): Promise<string[]> {
  const ids: string[] = [];
  await t.db.transaction(async (tx) => {
    for (let i = 0; i < count; i++) {
      const event = LessonPublished.create({
        lesson_id: randomUUID(),
        author_id: randomUUID(),
        title: `lesson ${i}`,
        published_at: new Date().toISOString(),
      });
      ids.push(...(await outbox().enqueue(tx, event)));
    }
  });
  return ids;
}

it.each([
  { when: 'while it is idle', latencyMs: 0 },
  { when: 'while a batch is in flight', latencyMs: 200 },
])(
  'logs each step of a database outage $when once, and dispatching again once it is back',
  async ({ latencyMs }) => {
    const broker = new MemoryBroker({ latencyMs });
    const { d, lines } = logged(broker, {
      batchSize: 10,
      retryBaseDelayMs: 20,
      retryMaxDelayMs: 160,
    });
    const published = () => new Set(broker.messages.map((message) => message.id));
    const unavailable = () =>
      lines.filter((line) => line.message === 'database unavailable; retrying');
    const again = () => lines.filter((line) => line.message === 'dispatching again');

    await d.start();
    const before = await enqueue(20);
    if (latencyMs > 0) {
      // The first batch is at the broker: its transaction is cut before it commits.
      await waitFor('a batch in flight', () => broker.calls > 0);
    } else {
      await waitFor('the events before the outage', () =>
        before.every((id) => published().has(id)),
      );
    }

    await proxy.stop();
    const during = await enqueue(30);
    await waitFor(
      'six steps of the outage logged',
      () => unavailable().some((line) => line.fields.attempt === 6),
      { timeoutMs: 15_000 },
    );
    // Nothing declared the outage over while the database was away.
    expect(again()).toEqual([]);
    const backAt = Date.now();
    await proxy.start();

    await waitFor('dispatching again', () => again().length > 0, { timeoutMs: 15_000 });
    await waitFor('every event published', () =>
      [...before, ...during].every((id) => published().has(id)),
    );
    await d.stop();
    dispatcher = undefined;

    const attempts = unavailable().map((line) => line.fields.attempt);
    expect(attempts).toEqual(Array.from({ length: attempts.length }, (_, i) => i + 1));
    expect(again()).toHaveLength(1);
    const [resumed] = again();
    expect(resumed?.at).toBeGreaterThanOrEqual(backAt);
    expect(lines.indexOf(resumed as Line)).toBeGreaterThan(
      lines.indexOf(unavailable().at(-1) as Line),
    );
    const { rows } = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${t.schema}".outbox`,
    );
    expect(rows[0]?.n).toBe(0);
  },
);

it("leaves backoff on every lane once one lane finds the database back, not at each lane's own timer", async () => {
  // Backoff grows to seconds during the outage; each lane sleeps its own (jittered) step.
  // A slow broker keeps the backlog in flight, so both lanes claim when the outage comes.
  const broker = new MemoryBroker({ latencyMs: 100 });
  const { d, lines } = logged(broker, {
    batchSize: 5,
    batchesInFlight: 2,
    retryBaseDelayMs: 200,
    retryMaxDelayMs: 30_000,
  });
  // Each lane's latest step (the log says a step once, whichever lane met it first).
  const steps = new Map<number, number>();
  d.on('unavailable', ({ lane, retryInMs }) => steps.set(lane, retryInMs));
  await d.start();
  const before = await enqueue(200);
  await waitFor('both lanes claiming', () => d.stats.batches >= 2);
  await proxy.stop();
  await waitFor(
    'both lanes in a backoff of seconds',
    () => steps.size === 2 && [...steps.values()].every((ms) => ms >= 6400),
    { timeoutMs: 40_000 },
  );
  const during = await enqueue(50);
  await proxy.start();
  await waitFor('dispatching again', () => lines.some((l) => l.message === 'dispatching again'), {
    timeoutMs: 40_000,
  });
  const againAt = Date.now();
  // Readiness follows the state: out of backoff within a round trip, not seconds later.
  await waitFor('no lane in backoff', () => dispatcher?.health().state !== 'backoff', {
    timeoutMs: 1000,
    intervalMs: 20,
  });
  expect(Date.now() - againAt).toBeLessThan(1000);
  await waitFor('every event published', () => {
    const published = new Set(broker.messages.map((message) => message.id));
    return [...before, ...during].every((id) => published.has(id));
  });
}, 90_000);

/** Ends the server processes whose clients sit at `ports` (on this host); how many there were. */
async function terminate(ports: number[]): Promise<number> {
  if (ports.length === 0) return 0;
  const { rows } = await t.db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
     WHERE client_port = ANY($1::int[]) AND client_addr = '127.0.0.1' AND pid <> pg_backend_pid()`,
    [ports],
  );
  for (const { pid } of rows) await t.db.query('SELECT pg_terminate_backend($1)', [pid]);
  return rows.length;
}

function start(broker: MemoryBroker, lines: string[]): Promise<void> {
  const log = (_fields: Record<string, unknown>, message: string) => lines.push(message);
  dispatcher = createDispatcher({
    db: viaProxy,
    broker,
    schema: t.schema,
    databaseTimeoutMs: 1000,
    retryBaseDelayMs: 20,
    retryMaxDelayMs: 200,
    rebalanceIntervalMs: 200,
    logger: { debug: () => {}, info: log, warn: log, error: log },
  });
  return dispatcher.start();
}

const published = (broker: MemoryBroker) => new Set(broker.messages.map((m) => m.id));

// The dispatcher would otherwise find an event only at its idle look, every 30 s, with
// its write probe waiting on a dead connection; 15 s tells the two apart.
const soon = { timeoutMs: 15_000 };

it('gives up on connections gone silent with a batch in flight, and publishes on new ones (a failover)', async () => {
  const broker = new MemoryBroker({ latencyMs: 300 });
  const lines: string[] = [];
  await start(broker, lines);
  const first = await enqueue(5);
  // The batch is at the broker: its settle will go out on a connection already stranded.
  await waitFor('a batch in flight', () => broker.calls > 0);
  strandedPorts = proxy.strand();
  // The old server is gone, and its sessions with it: nothing holds the rows any more.
  expect(await terminate(strandedPorts)).toBeGreaterThan(0);
  const later = await enqueue(5);
  await waitFor(
    'every event published',
    () => [...first, ...later].every((id) => published(broker).has(id)),
    soon,
  );
  expect(lines).toContain('database unavailable; retrying');
  await waitFor('the outage declared over', () => lines.includes('dispatching again'), soon);
}, 30_000);

/** Starts a dispatcher, lets it publish three events, then strands its connections. */
async function strandAfterFirstEvents(broker: MemoryBroker, lines: string[]): Promise<void> {
  await start(broker, lines);
  const first = await enqueue(3);
  await waitFor('the events before', () => first.every((id) => published(broker).has(id)));
  strandedPorts = proxy.strand();
}

it('frees the partitions it held when cut off while the server stays up, and takes them again', async () => {
  const broker = new MemoryBroker();
  const lines: string[] = [];
  await strandAfterFirstEvents(broker, lines);
  // The server still runs the stranded sessions. The one holding the partition locks must
  // end by itself, or no dispatcher could own those partitions again.
  await waitFor(
    "the server ending the dispatcher's stranded sessions",
    async () => (await dedicatedSessions(strandedPorts)) === 0,
    soon,
  );
  const later = await enqueue(3);
  await waitFor('the events after', () => later.every((id) => published(broker).has(id)), soon);
  const joined = lines.filter((line) => line === 'joined the dispatchers sharing partitions');
  expect(joined.length).toBeGreaterThanOrEqual(2);
}, 40_000);

it('stops within its database timeout when its connections have gone silent', async () => {
  await strandAfterFirstEvents(new MemoryBroker(), []);
  const asked = Date.now();
  await dispatcher?.stop();
  dispatcher = undefined;
  // databaseTimeoutMs is 1000: each dedicated session's close may wait that long.
  expect(Date.now() - asked).toBeLessThan(5000);
}, 30_000);

/** The dispatcher's own sessions (ownership, write probe) among the server processes at `ports`. */
async function dedicatedSessions(ports: number[]): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE client_port = ANY($1::int[]) AND client_addr = '127.0.0.1'
       AND application_name LIKE 'edupulse-outbox %'`,
    [ports],
  );
  return rows[0]?.n ?? 0;
}
