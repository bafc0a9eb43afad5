import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/common/logger.js';
import { statements as sqlOf } from '../src/db/sql/index.js';
import {
  type BatchReport,
  BrokerUnavailableError,
  ConfigError,
  createDispatcher,
  createOutbox,
  type Database,
  type Dispatcher,
  type DispatcherOptions,
  discardDeadLetters,
  LessonPublished,
  type Logger,
  MemoryBroker,
  notifyChannel,
  type OutboxEvent,
  type OutboxMessage,
  type PublishResult,
  pgDatabase,
  QuizSubmitted,
  readProducerNotify,
  setProducerNotify,
  type TransactionExecutor,
} from '../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
const dispatchers: Dispatcher[] = [];
const extraDatabases: Database[] = [];

beforeEach(async () => {
  t = await createPgTestSchema('dispatcher');
});

afterEach(async () => {
  await Promise.allSettled(dispatchers.splice(0).map((d) => d.stop()));
  try {
    await expectNothingRunning();
  } finally {
    await Promise.allSettled(extraDatabases.splice(0).map((db) => db.close()));
    await t.drop();
  }
});

/**
 * After stop(): no session of this test still listens for the outbox's NOTIFY or sits in a
 * transaction (claimed rows), so a stopped dispatcher really let go of everything.
 */
async function expectNothingRunning(): Promise<void> {
  const busy = async () =>
    (
      await t.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE application_name = $1 AND pid <> pg_backend_pid()
           AND (query ILIKE 'LISTEN%' OR state NOT IN ('idle'))`,
        [`test-${t.schema}`],
      )
    ).rows[0]?.n ?? 0;
  await waitFor('stopped dispatchers to release their sessions', async () => (await busy()) === 0, {
    timeoutMs: 5_000,
  });
}

/** A dispatcher on this test's schema, stopped after the test. */
function dispatcher(options: Partial<DispatcherOptions> & { broker: MemoryBroker }): Dispatcher {
  const d = createDispatcher({ db: t.db, schema: t.schema, ...options });
  dispatchers.push(d);
  return d;
}

/** A logger that keeps the fields of the `dispatcher started` line. */
function startedLine(): { logger: Logger; fields: () => object | undefined } {
  let fields: object | undefined;
  const ignore = () => {};
  const logger: Logger = {
    debug: ignore,
    info: (logged: object, message: string) => {
      if (message === 'dispatcher started') fields = logged;
    },
    warn: ignore,
    error: ignore,
  };
  return { logger, fields: () => fields };
}

/** Another pool on the same database, as a second dispatcher process would have. */
function secondDatabase(): Database {
  const db = pgDatabase({ connectionString: PG_URL, applicationName: `test-${t.schema}` });
  extraDatabases.push(db);
  return db;
}

/** Remembers each publish call's batch, to check what went out together. */
class RecordingBroker extends MemoryBroker {
  readonly batches: OutboxMessage[][] = [];
  override async publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    this.batches.push([...batch]);
    return super.publish(batch);
  }
}

/** Counts the batches being published at once (with `latencyMs`, long enough to overlap). */
class OverlapBroker extends MemoryBroker {
  publishing = 0;
  mostAtOnce = 0;
  override async publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    this.mostAtOnce = Math.max(this.mostAtOnce, ++this.publishing);
    try {
      return await super.publish(batch);
    } finally {
      this.publishing--;
    }
  }
}

const lesson = (lessonId: string = randomUUID(), title = 'Cells') =>
  LessonPublished.create({
    lesson_id: lessonId,
    author_id: randomUUID(),
    title,
    published_at: '2024-05-01T09:30:00Z',
  });

const quiz = () =>
  QuizSubmitted.create({
    quiz_id: randomUUID(),
    student_id: randomUUID(),
    score: 3,
    submitted_at: '2024-05-01T10:00:00Z',
  });

async function enqueue(events: OutboxEvent | OutboxEvent[]): Promise<string[]> {
  const outbox = createOutbox({ schema: t.schema });
  return t.db.transaction((tx) => outbox.enqueue(tx, events));
}

async function count(table: 'outbox' | 'outbox_dead_letter'): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${t.schema}".${table}`,
  );
  return rows[0]?.n ?? 0;
}

interface OutboxRow {
  id: string;
  attempts: number;
  last_error: string | null;
  wait_s: number;
}

async function outboxRow(id: string): Promise<OutboxRow | undefined> {
  const { rows } = await t.db.query<OutboxRow>(
    `SELECT id::text AS id, attempts, last_error,
       extract(epoch FROM available_at - now())::float8 AS wait_s
     FROM "${t.schema}".outbox WHERE id = $1`,
    [id],
  );
  return rows[0];
}

const failing =
  (ids: Iterable<string>, error = 'boom') =>
  (message: OutboxMessage): PublishResult | undefined => {
    const set = new Set(ids);
    return set.has(message.id) ? { ok: false, error, permanent: true } : undefined;
  };

const idsOf = (messages: readonly OutboxMessage[]) => messages.map((m) => m.id);

describe('what is published', () => {
  it('exactly the committed events: rolled-back ones never, and the table ends empty', async () => {
    const committed: string[] = [];
    const outbox = createOutbox({ schema: t.schema });
    for (let i = 0; i < 6; i++) {
      committed.push(...(await enqueue(Array.from({ length: 25 }, () => lesson()))));
      await t.db
        .transaction(async (tx) => {
          await outbox.enqueue(tx, [lesson(), quiz()]);
          throw new Error('rolled back');
        })
        .catch(() => {});
    }
    // A plain-SQL producer's row goes out too.
    const { rows } = await t.db.query<{ id: string }>(
      `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
       VALUES ('lesson', 'raw-1', 'lesson-published', '{"raw": true}') RETURNING id::text AS id`,
    );
    committed.push(rows[0]?.id as string);

    const broker = new MemoryBroker();
    const d = dispatcher({ broker, batchSize: 40 });
    expect(await d.drain()).toBe(committed.length);
    expect(new Set(idsOf(broker.messages))).toEqual(new Set(committed));
    expect(broker.messages).toHaveLength(committed.length);
    expect(d.stats.published).toBe(committed.length);
    expect(await count('outbox')).toBe(0);
    expect(await count('outbox_dead_letter')).toBe(0);
    expect(await d.drain()).toBe(0);
  });

  it("goes on when a listener of the dispatcher's events throws or rejects", async () => {
    const ids = await enqueue(Array.from({ length: 10 }, () => lesson()));
    const errors: string[] = [];
    const broker = new MemoryBroker();
    const d = dispatcher({
      broker,
      batchSize: 4,
      logger: { ...silentLogger, error: (_fields, message) => errors.push(message) },
    });
    // An application's listeners with bugs; the second still hears every batch.
    let heard = 0;
    d.on('batch', () => {
      throw new Error('a metrics bug');
    });
    d.on('batch', () => {
      heard++;
    });
    d.on('settled', async () => {
      throw new Error('an async bug');
    });
    // Before: the throw left the batch part-way through settling.
    expect(await d.drain()).toBe(10);
    expect(idsOf(broker.messages)).toEqual(ids);
    expect(await count('outbox')).toBe(0);
    expect(heard).toBe(3);
    await waitFor('the async rejection logged', () =>
      errors.includes("a listener of 'settled' threw; ignored, the work it was told of goes on"),
    );
    expect(errors).toContain(
      "a listener of 'batch' threw; ignored, the work it was told of goes on",
    );
  });

  it('messages carry the stored event: payload verbatim, headers, ids, time', async () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const event = lesson(randomUUID(), 'Ünïcødé "quoted"');
    const withHeaders = { ...event, headers: { traceparent }, occurredAt: '2024-05-01T09:30:00Z' };
    await enqueue(withHeaders);
    const broker = new MemoryBroker();
    await dispatcher({ broker }).drain();
    expect(broker.messages).toHaveLength(1);
    expect(broker.messages[0]).toMatchObject({
      id: event.id,
      aggregateType: 'lesson',
      aggregateId: event.aggregateId,
      eventType: 'lesson-published',
      payload: JSON.stringify(event.payload),
      headers: { traceparent },
      occurredAt: '2024-05-01T09:30:00.000000Z',
      attempts: 0,
    });
    expect(broker.messages[0]?.seq).toMatch(/^[1-9][0-9]*$/);
  });

  /**
   * 8 transactions, each touching 40 aggregates in a different order; returns each
   * aggregate's event ids in the order they were written.
   */
  async function enqueueInterleaved(): Promise<Map<string, string[]>> {
    const aggregates = Array.from({ length: 40 }, () => randomUUID());
    const expected = new Map<string, string[]>(aggregates.map((a) => [a, []]));
    for (let round = 0; round < 8; round++) {
      const order = [...aggregates].sort(() => Math.random() - 0.5);
      const events = order.map((a) => lesson(a, `part ${round}`));
      await enqueue(events);
      for (const e of events) expected.get(e.aggregateId)?.push(e.id as string);
    }
    return expected;
  }

  it('keeps each aggregate in order across many aggregates and batches', async () => {
    const expected = await enqueueInterleaved();
    const broker = new RecordingBroker();
    const d = dispatcher({ broker, batchSize: 37 });
    expect(await d.drain()).toBe(320);

    const seen = new Map<string, string[]>();
    for (const m of broker.messages)
      seen.set(m.aggregateId, [...(seen.get(m.aggregateId) ?? []), m.id]);
    expect(seen).toEqual(expected);
    // Brokers may publish one call's messages in parallel: never two of one aggregate together.
    for (const batch of broker.batches) {
      expect(new Set(batch.map((m) => m.aggregateId)).size).toBe(batch.length);
    }
    expect(d.stats.batches).toBeGreaterThan(1);
  });

  it('keeps each aggregate in order with several batches in flight at once', async () => {
    const expected = await enqueueInterleaved();
    // Slow enough that the next claims happen while a batch is still being published.
    const broker = new OverlapBroker({ latencyMs: 30 });
    const d = dispatcher({ broker, batchSize: 10, batchesInFlight: 3 });
    await d.start();
    await waitFor('every event to be published', () => d.stats.published === 320, {
      timeoutMs: 30_000,
    });

    const seen = new Map<string, string[]>();
    for (const m of broker.messages)
      seen.set(m.aggregateId, [...(seen.get(m.aggregateId) ?? []), m.id]);
    expect(seen).toEqual(expected);
    expect(broker.mostAtOnce).toBeGreaterThan(1);
    expect(await count('outbox')).toBe(0);
  });
});

describe('wake-up', () => {
  /** The pool of this test, with every statement the dispatcher sends on it counted. */
  function countingDatabase(): { db: Database; statements: () => number; claims: () => number } {
    let statements = 0;
    let claims = 0;
    const counted = <E extends { query: Database['query'] }>(executor: E): E => ({
      ...executor,
      query(text: string, values?: readonly unknown[]) {
        statements++;
        return executor.query(text, values);
      },
    });
    const db: Database = {
      ...t.db,
      query: counted(t.db).query,
      transaction<T>(fn: (tx: TransactionExecutor) => Promise<T>) {
        claims++;
        statements += 2; // BEGIN and COMMIT
        return t.db.transaction((tx) => fn({ ...counted(tx), exec: tx.exec }));
      },
      async session(name: string) {
        const session = await (t.db.session as NonNullable<Database['session']>)(name);
        return { ...session, query: counted(session).query };
      },
    };
    return { db, statements: () => statements, claims: () => claims };
  }

  /**
   * The test's pool, with each look of the write probe (on the probe's own session) shown
   * to `onLook` first: what it returns answers the look instead, undefined lets it run.
   */
  function probeThrough(onLook: () => Promise<never> | undefined): Database {
    const probe = sqlOf(t.schema).outboxWriteProbe;
    return {
      ...t.db,
      async session(name: string) {
        const session = await (t.db.session as NonNullable<Database['session']>)(name);
        return {
          ...session,
          query: <R>(text: string, values?: readonly unknown[]) =>
            (text === probe ? onLook() : undefined) ?? session.query<R>(text, values),
        };
      },
    };
  }

  it('the default migration sends no NOTIFY with a producer commit', async () => {
    expect(await readProducerNotify(t.db, t.schema)).toBe(false);
    let notified = 0;
    const unlisten = await t.db.listen(notifyChannel(t.schema), () => notified++);
    try {
      await enqueue(lesson());
      // A NOTIFY is delivered when its transaction commits; give it ample time to arrive.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(notified).toBe(0);
    } finally {
      await unlisten();
    }
  });

  it('wakes for a committed event without a poll interval elapsing, and without NOTIFY', async () => {
    const { db, claims } = countingDatabase();
    const broker = new MemoryBroker();
    const d = dispatcher({ db, broker, pollIntervalMs: 60_000 });
    await d.start();
    // Its start-up claim, then asleep for the whole poll interval.
    await waitFor('the first empty claim', () => claims() >= 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const claimsBefore = claims();
    const [id] = await enqueue(lesson());
    await waitFor('the event to be published', () => d.stats.published === 1, {
      timeoutMs: 15_000,
    });
    expect(idsOf(broker.messages)).toEqual([id]);
    expect(claims()).toBeGreaterThan(claimsBefore);
  });

  it('skips its looks while a batch is under way, and wakes for what was written meanwhile', async () => {
    let looks = 0;
    const db = probeThrough(() => {
      looks++;
      return undefined;
    });
    // The first batch waits at the broker until released.
    let entered: () => void = () => {};
    const publishing = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    class GatedBroker extends MemoryBroker {
      override async publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
        entered();
        await released;
        return super.publish(batch);
      }
    }
    const broker = new GatedBroker();
    const d = dispatcher({ db, broker, pollIntervalMs: 60_000 });
    await d.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const [first] = await enqueue(lesson());
    await publishing;
    const looksBefore = looks;
    const [second] = await enqueue(lesson());
    await new Promise((resolve) => setTimeout(resolve, 300));
    const looksDuring = looks - looksBefore;
    release();
    // One look may have been under way when the batch began (every 2 ms, they were 13
    // or more in these 300 ms).
    expect(looksDuring).toBeLessThanOrEqual(1);
    // No poll comes due: the look the lane asks for after its batch finds the second event.
    await waitFor('both events to be published', () => d.stats.published === 2, {
      timeoutMs: 15_000,
    });
    expect(idsOf(broker.messages)).toEqual([first, second]);
  });

  it('looks no more often than wakeProbeMinMs while events flow, however short the batches', async () => {
    let looks = 0;
    const db = probeThrough(() => {
      looks++;
      return undefined;
    });
    const broker = new MemoryBroker();
    const d = dispatcher({
      db,
      broker,
      pollIntervalMs: 60_000,
      wakeProbeMinMs: 300,
      wakeProbeMaxMs: 300,
    });
    await d.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const looksBefore = looks;
    const started = Date.now();
    let written = 0;
    while (Date.now() - started < 1500) {
      await enqueue(lesson());
      written++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const looksDuring = looks - looksBefore;
    await waitFor('every event published', () => d.stats.published === written, {
      timeoutMs: 15_000,
    });
    // 1.5 s at one look per 300 ms, the edges counted (11 when the look after each batch
    // came at once).
    expect(looksDuring).toBeLessThanOrEqual(7);
    expect(d.stats.batches).toBeLessThan(written);
  });

  it('polls every poll interval while the write probe fails, as its warning says', async () => {
    // The probe's statement fails (a revoked sequence privilege, its connection unable to
    // come back) while the claims still work.
    const warnings: string[] = [];
    const db = probeThrough(() =>
      Promise.reject(new Error('permission denied for sequence outbox_write_seq')),
    );
    const broker = new MemoryBroker();
    const d = dispatcher({
      db,
      broker,
      pollIntervalMs: 200,
      logger: { ...silentLogger, warn: (_fields, message) => warnings.push(message) },
    });
    await d.start();
    await waitFor('the probe to fail', () =>
      warnings.includes('write probe failed; polling until it answers'),
    );
    // Past the start-up claims: the lanes asleep.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const [id] = await enqueue(lesson());
    // Before: nothing woke the lanes; the event waited for their 30 s look.
    await waitFor('the event to be published', () => d.stats.published === 1, {
      timeoutMs: 5_000,
    });
    expect(idsOf(broker.messages)).toEqual([id]);
  });

  it('answers again once the write sequence is made anew under it, as a restore in place does', async () => {
    const said: string[] = [];
    const log = (_fields: object, message?: string) => said.push(String(message));
    // The probe looks again every poll interval while it fails.
    const d = dispatcher({
      broker: new MemoryBroker(),
      pollIntervalMs: 500,
      logger: { ...silentLogger, warn: log, info: log },
    });
    await d.start();
    const seq = `"${t.schema}".outbox_write_seq`;
    await t.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ last: string }>(
        `SELECT coalesce(pg_sequence_last_value('${seq}'), 1)::text AS last`,
      );
      await tx.query(`DROP SEQUENCE ${seq}`);
      await tx.query(`CREATE SEQUENCE ${seq} AS bigint OWNED BY "${t.schema}".outbox.seq`);
      await tx.query(`SELECT setval('${seq}', $1::text::bigint)`, [rows[0]?.last]);
    });
    await waitFor('the probe to fail on the old sequence', () =>
      said.includes('write probe failed; polling until it answers'),
    );
    await waitFor('the probe to answer again', () => said.includes('write probe answering again'));
    const [id] = await enqueue(lesson());
    await waitFor('the event to be published', () => d.stats.published === 1, {
      timeoutMs: 5_000,
    });
    expect(id).toBeDefined();
  });

  it('publishes an event whose transaction commits after the wake-up saw it written', async () => {
    const broker = new MemoryBroker();
    const d = dispatcher({ broker, pollIntervalMs: 60_000 });
    await d.start();
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await client.query('BEGIN');
      const [id] = await createOutbox({ schema: t.schema }).enqueue(client, lesson());
      // The sequence moved: the dispatcher wakes, finds the writer open, and must look
      // again by itself, since the commit moves nothing it watches.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(d.stats.published).toBe(0);
      await client.query('COMMIT');
      await waitFor('the late commit to be published', () => d.stats.published === 1, {
        timeoutMs: 15_000,
      });
      expect(idsOf(broker.messages)).toEqual([id]);
    } finally {
      await client.end();
    }
  });

  it('claims with one lane between backlogs, and with every lane during one', async () => {
    const { db, claims } = countingDatabase();
    const broker = new OverlapBroker({ latencyMs: 20 });
    const d = dispatcher({ db, broker, batchSize: 10, batchesInFlight: 4, pollIntervalMs: 60_000 });
    await d.start();
    const trickle = async (events: number) => {
      const before = claims();
      for (let i = 0; i < events; i++) {
        const published = d.stats.published;
        await enqueue(lesson());
        await waitFor('the event to be published', () => d.stats.published === published + 1);
      }
      return (claims() - before) / events;
    };
    // One event at a time: each wake-up is one claim (two when it finds the writer still
    // open), not one per lane.
    expect(await trickle(10)).toBeLessThanOrEqual(3);
    // A backlog beyond one batch: the lanes claim side by side.
    await enqueue(Array.from({ length: 200 }, () => lesson()));
    await waitFor('the backlog to be published', () => d.stats.published === 210, {
      timeoutMs: 30_000,
    });
    expect(broker.mostAtOnce).toBeGreaterThan(1);
    // Drained, the lanes are idle again and one claims alone.
    expect(await trickle(10)).toBeLessThanOrEqual(3);
    expect(broker.messages).toHaveLength(220);
  });

  it('an idle dispatcher sends a bounded number of statements a second', async () => {
    const { db, statements } = countingDatabase();
    const d = dispatcher({ db, broker: new MemoryBroker(), pollIntervalMs: 1000 });
    await d.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = statements();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const perSecond = (statements() - before) / 2;
    // The write probe slows to one look per wakeProbeMaxMs (80 ms): 12.5 a second; plus
    // one ownership round a second. Idle lanes do not claim: nothing waits for a retry.
    expect(perSecond).toBeGreaterThan(8);
    expect(perSecond).toBeLessThan(25);
  });

  it('LISTENs too where producers are set to NOTIFY, and wakes on it', async () => {
    await setProducerNotify(t.db, t.schema, true);
    const broker = new MemoryBroker();
    const started = startedLine();
    // A probe that looks only once a minute: the NOTIFY must be what wakes it.
    const d = dispatcher({
      broker,
      pollIntervalMs: 60_000,
      wakeProbeMinMs: 10_000,
      wakeProbeMaxMs: 60_000,
      logger: started.logger,
    });
    await d.start();
    expect(started.fields()).toMatchObject({ listening: true });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const [id] = await enqueue(lesson());
    await waitFor('the event to be published', () => d.stats.published === 1, {
      timeoutMs: 15_000,
    });
    expect(idsOf(broker.messages)).toEqual([id]);
  });

  it('notify: false never listens, even where producers NOTIFY', async () => {
    await setProducerNotify(t.db, t.schema, true);
    const broker = new MemoryBroker();
    const started = startedLine();
    const d = dispatcher({ broker, notify: false, pollIntervalMs: 50, logger: started.logger });
    await d.start();
    expect(started.fields()).toMatchObject({ listening: false });
    const [id] = await enqueue(lesson());
    await waitFor('the event to be published', () => d.stats.published === 1);
    expect(idsOf(broker.messages)).toEqual([id]);
    const { rows } = await t.db.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query ILIKE 'LISTEN%'`,
      [`test-${t.schema}`],
    );
    expect(rows).toEqual([]);
  });
});

/** The test's database, each transaction beginning with `statements` (as a role's settings would). */
function withEachTransaction(...statements: string[]): Database {
  return {
    ...t.db,
    transaction: (fn, options) =>
      t.db.transaction(async (tx) => {
        for (const statement of statements) await tx.query(statement);
        return fn(tx);
      }, options),
  };
}

describe('autovacuum off', () => {
  it("says so at start: the outbox's dead rows would never be reclaimed", async () => {
    // The table's own setting: off whatever the server's is.
    await t.db.query(`ALTER TABLE "${t.schema}".outbox SET (autovacuum_enabled = false)`);
    const warnings: string[] = [];
    const d = dispatcher({
      broker: new MemoryBroker(),
      logger: { ...silentLogger, warn: (_fields, message) => warnings.push(message) },
    });
    await d.start();
    expect(warnings).toContainEqual(
      expect.stringMatching(
        /^autovacuum is off (on this server|for .*\.outbox).*: the outbox's published rows stay as dead rows/,
      ),
    );
  });
});

describe('a server setting that refuses the claim', () => {
  it('says what to change, not only that the database is unavailable', async () => {
    // As on a standby, or with default_transaction_read_only on.
    const db = withEachTransaction('SET TRANSACTION READ ONLY');
    await enqueue(lesson());
    const d = dispatcher({ db, broker: new MemoryBroker(), retryBaseDelayMs: 50 });
    await d.start();
    await waitFor('the backoff', () => d.health().state === 'backoff');
    expect(d.health().problem?.message).toMatch(
      /read-only transaction \(the server takes no writes: a standby, or default_transaction_read_only is on; point the database URL at the primary, or add target_session_attrs=read-write to it\)$/,
    );
  });
});

describe("the session's DateStyle and TimeZone", () => {
  it('do not change the time a dead letter for an impossible occurred_at quotes', async () => {
    // As a role with DateStyle 'Postgres, DMY' and TimeZone '+05:30' has them: the reason
    // read "Fri 31 Dec 18:30:00 9999" for a time in the year 10000.
    const db = withEachTransaction(
      "SET LOCAL DateStyle = 'Postgres, DMY'",
      "SET LOCAL TimeZone = '+05:30'",
    );
    for (const at of ['10000-01-01 00:00:00+00', '0100-06-01 12:00:00+00 BC']) {
      await t.db.query(
        `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload, occurred_at)
         VALUES ('lesson', $1::text, 'lesson-published', '{}', $1::text::timestamptz)`,
        [at],
      );
    }
    const d = dispatcher({ db, broker: new MemoryBroker() });
    await d.start();
    await waitFor('both dead-lettered', () => d.stats.deadLettered === 2);
    const { rows } = await t.db.query<{ last_error: string }>(
      `SELECT last_error FROM "${t.schema}".outbox_dead_letter ORDER BY aggregate_id`,
    );
    expect(rows.map((row) => row.last_error)).toEqual([
      'occurred_at: "0100-06-01 12:00:00+00 BC" is outside the years 0001-9999 a CloudEvents time can carry',
      'occurred_at: "10000-01-01 00:00:00+00" is outside the years 0001-9999 a CloudEvents time can carry',
    ]);
  });
});

describe('the sequences that number the rows', () => {
  it('refuses to start on a CACHE above 1, naming each and the statement that fixes it', async () => {
    // A cached block per session numbers a row below one committed before it, so an
    // aggregate's third event could go out before its second.
    const q = `"${t.schema}"`;
    // seq is drawn from it too (pg_get_serial_sequence of outbox.seq names it).
    await t.db.query(`ALTER SEQUENCE ${q}.outbox_write_seq CACHE 100`);
    const d = dispatcher({ broker: new MemoryBroker() });
    const refused = await d.start().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).message).toBe(
      `schema: ${q}.outbox_write_seq has CACHE 100: each session would number its events from a block of its own, so one aggregate's events could be published out of order. Run: ALTER SEQUENCE ${q}.outbox_write_seq CACHE 1;`,
    );
    await t.db.query(`ALTER SEQUENCE ${q}.outbox_write_seq CACHE 1`);
    const again = dispatcher({ broker: new MemoryBroker() });
    await again.start();
    expect(again.health().state).not.toBe('stopped');
  });
});

describe('failures', () => {
  it('a failed event is kept with attempts, last_error and a later available_at', async () => {
    const [id] = await enqueue(lesson());
    const reports: BatchReport[] = [];
    const broker = new MemoryBroker({ onPublish: failing([id as string]) });
    const d = dispatcher({ broker, retryBaseDelayMs: 60_000, retryMaxDelayMs: 120_000 });
    d.on('batch', (report: BatchReport) => reports.push(report));

    expect(await d.drain()).toBe(0);
    expect(reports).toEqual([{ claimed: 1, published: 0, retried: 1, deadLettered: 0, held: 0 }]);
    const row = await outboxRow(id as string);
    expect(row).toMatchObject({ attempts: 1, last_error: 'boom' });
    // First retry waits between half and all of the base delay (60 s).
    expect(row?.wait_s).toBeGreaterThan(25);
    expect(row?.wait_s).toBeLessThanOrEqual(60);

    // Not claimable until then.
    expect(await d.drain()).toBe(0);
    expect((await outboxRow(id as string))?.attempts).toBe(1);
    expect(broker.messages).toEqual([]);
    expect(await count('outbox_dead_letter')).toBe(0);
  });

  it('after maxAttempts the event is a dead letter with its last error, gone from the outbox', async () => {
    const event = lesson();
    const [id] = await enqueue(event);
    const attempts: string[] = [];
    const broker = new MemoryBroker({
      onPublish: (m) => {
        attempts.push(m.id);
        return failing([id as string])(m);
      },
    });
    const deadLetters: unknown[] = [];
    const d = dispatcher({
      broker,
      maxAttempts: 3,
      retryBaseDelayMs: 10,
      retryMaxDelayMs: 50,
      pollIntervalMs: 10,
      notify: false,
    });
    d.on('deadLetter', (info) => deadLetters.push(info));
    await d.start();
    // stats count settled batches only (the event is emitted before the settle commits).
    await waitFor('the dead letter', () => d.stats.deadLettered === 1);

    expect(deadLetters).toEqual([{ id, eventType: 'lesson-published', error: 'boom' }]);
    expect(attempts).toEqual([id, id, id]);
    expect(await count('outbox')).toBe(0);
    const { rows } = await t.db.query(
      `SELECT id::text AS id, aggregate_type, aggregate_id, event_type, payload::text AS payload,
         attempts, last_error
       FROM "${t.schema}".outbox_dead_letter`,
    );
    expect(rows).toEqual([
      {
        id,
        aggregate_type: 'lesson',
        aggregate_id: event.aggregateId,
        event_type: 'lesson-published',
        payload: JSON.stringify(event.payload),
        attempts: 3,
        last_error: 'boom',
      },
    ]);
    expect(broker.messages).toEqual([]);
  });

  it.each([
    ['in one batch', 100, 1],
    ['across batches', 1, 2],
  ])('a failing event holds back only its own aggregate (%s)', async (_, batchSize, drains) => {
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const [a1, b1, a2, b2, c1] = await enqueue([
      lesson(a),
      lesson(b),
      lesson(a),
      lesson(b),
      lesson(c),
    ]);
    const broker = new MemoryBroker({ onPublish: failing([a1 as string]) });
    const d = dispatcher({ broker, batchSize, retryBaseDelayMs: 60_000, retryMaxDelayMs: 60_000 });
    let published = 0;
    for (let i = 0; i < drains; i++) published += await d.drain();

    expect(published).toBe(3);
    expect(idsOf(broker.messages).sort()).toEqual([b1, b2, c1].sort());
    expect(idsOf(broker.messages).filter((id) => id === b1 || id === b2)).toEqual([b1, b2]);
    expect((await outboxRow(a1 as string))?.attempts).toBe(1);
    // The later event of the failing aggregate was not tried at all.
    expect(await outboxRow(a2 as string)).toMatchObject({ attempts: 0, last_error: null });
  });

  it('drain does not stop at a full batch of failures while other events are claimable', async () => {
    const [bad] = await enqueue(lesson());
    const good = await enqueue([lesson(), lesson(), quiz()]);
    const broker = new MemoryBroker({ onPublish: failing([bad as string]) });
    const d = dispatcher({
      broker,
      batchSize: 1,
      retryBaseDelayMs: 60_000,
      retryMaxDelayMs: 60_000,
    });
    expect(await d.drain()).toBe(3);
    expect(idsOf(broker.messages)).toEqual(good);
  });

  it('after its earlier event is dead-lettered, the aggregate flows on', async () => {
    const a = randomUUID();
    const [a1, a2] = await enqueue([lesson(a), lesson(a)]);
    const calls: string[] = [];
    const broker = new MemoryBroker({
      onPublish: (m) => {
        calls.push(m.id);
        return failing([a1 as string])(m);
      },
    });
    const d = dispatcher({
      broker,
      maxAttempts: 2,
      retryBaseDelayMs: 10,
      retryMaxDelayMs: 50,
      pollIntervalMs: 10,
      notify: false,
    });
    await d.start();
    await waitFor('the later event to be published', () => d.stats.published === 1);

    expect(idsOf(broker.messages)).toEqual([a2]);
    // Both attempts of the failed event came before the later one went out.
    expect(calls).toEqual([a1, a1, a2]);
    const { rows } = await t.db.query(
      `SELECT id::text AS id, attempts FROM "${t.schema}".outbox_dead_letter`,
    );
    expect(rows).toEqual([{ id: a1, attempts: 2 }]);
    expect(await count('outbox')).toBe(0);
  });

  // A dead letter holds its aggregate's later events in the batch back; during a backlog the
  // next claim goes on after the batch, and must not take a still later event of theirs.
  it.each([
    ['unpublishable (its headers are not an object)', 'invalid'],
    ['refused for good by the broker', 'refused'],
  ])('keeps the aggregate in order past a dead letter that is %s, in a backlog', async (_, how) => {
    const x = randomUUID();
    const write = (aggregateId: string, headers = '{}') =>
      `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload, headers)
       SELECT 'lesson', ${aggregateId}, 'lesson-published', json_build_object('n', i), '${headers}'::jsonb
       FROM generate_series(1, $2) AS i RETURNING id::text`;
    const one = async (sql: string) =>
      (await t.db.query<{ id: string }>(sql, [x, 1])).rows[0]?.id as string;
    const x1 = await one(write('$1', how === 'invalid' ? '{"bad": 1}' : '{}'));
    const x2 = await one(write('$1'));
    // The first batch fills up behind them (500 rows); the next claim finds X3 among enough.
    await t.db.query(write("'filler-' || i || '-' || $1::text"), [randomUUID(), 498]);
    const x3 = await one(write('$1'));
    await t.db.query(write("'filler-' || i || '-' || $1::text"), [randomUUID(), 199]);
    const broker = new MemoryBroker({ onPublish: failing([x1]) });
    const d = dispatcher({ broker, batchesInFlight: 1, maxAttempts: 1 });
    await d.start();
    await waitFor('the backlog to drain', async () => (await count('outbox')) === 0);
    const published = broker.messages.filter((m) => m.aggregateId === x).map((m) => m.id);
    expect(published).toEqual([x2, x3]);
    expect(await count('outbox_dead_letter')).toBe(1);
  });

  it("with onDeadLetter: 'hold' the aggregate waits behind its dead letter; others flow", async () => {
    const a = randomUUID();
    const [a1, a2, other] = await enqueue([lesson(a), lesson(a), lesson()]);
    const broker = new MemoryBroker({ onPublish: failing([a1 as string]) });
    const d = dispatcher({
      broker,
      maxAttempts: 2,
      retryBaseDelayMs: 10,
      retryMaxDelayMs: 50,
      onDeadLetter: 'hold',
    });
    for (let round = 0; round < 20 && d.stats.deadLettered === 0; round++) {
      await d.drain();
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    await d.drain();
    expect(d.stats.deadLettered).toBe(1);
    expect(idsOf(broker.messages)).toEqual([other]);
    // a2 is still pending, held behind the dead letter …
    const { rows } = await t.db.query<{ id: string }>(
      `SELECT id::text AS id FROM "${t.schema}".outbox`,
    );
    expect(rows.map((r) => r.id)).toEqual([a2]);
    // … until the operator discards it: then it goes out.
    await t.db.query(`DELETE FROM "${t.schema}".outbox_dead_letter`);
    await d.drain();
    expect(idsOf(broker.messages)).toEqual([other, a2]);
  });

  it("under 'hold', a discard wakes the dispatcher for what it held back", async () => {
    const a = randomUUID();
    const deadId = randomUUID();
    // A dead letter of aggregate a, as a dispatcher parks one, and a later event of a.
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       VALUES (0, $1, 'lesson', $2, 'lesson-published', '{}', '{}', 0, now(), 3, 'refused')`,
      [deadId, a],
    );
    const [held] = await enqueue(lesson(a));
    const broker = new MemoryBroker();
    // No poll comes due while the test runs: only a wake-up can publish the held event
    // before the idle look 30 s later.
    const d = dispatcher({ broker, onDeadLetter: 'hold', pollIntervalMs: 60_000 });
    await d.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(d.stats.published).toBe(0);
    expect(await discardDeadLetters(t.db, t.schema, { ids: [deadId] })).toEqual([deadId]);
    await waitFor('the held event to be published', () => d.stats.published === 1, {
      timeoutMs: 10_000,
    });
    expect(idsOf(broker.messages)).toEqual([held]);
  });

  it('an unavailable broker costs no attempts, and events go out once it is back', async () => {
    const ids = await enqueue([lesson(), lesson(), quiz()]);
    let down = true;
    const broker = new MemoryBroker({
      onPublish: () => {
        if (down) throw new BrokerUnavailableError('connection refused');
        return undefined;
      },
    });
    const d = dispatcher({
      broker,
      maxAttempts: 2,
      retryBaseDelayMs: 10,
      retryMaxDelayMs: 50,
      pollIntervalMs: 10,
      notify: false,
    });
    await d.start();
    // More failed calls than maxAttempts: had they counted, the events would be dead letters.
    await waitFor('several failed publish calls', () => broker.calls >= 4);
    const { rows } = await t.db.query<{ attempts: number; last_error: string | null }>(
      `SELECT attempts, last_error FROM "${t.schema}".outbox`,
    );
    expect(rows).toEqual(ids.map(() => ({ attempts: 0, last_error: null })));
    expect(await count('outbox_dead_letter')).toBe(0);

    down = false;
    await waitFor('the events to be published', () => d.stats.published === 3);
    expect(idsOf(broker.messages).sort()).toEqual([...ids].sort());
    expect(await count('outbox')).toBe(0);
    expect(await count('outbox_dead_letter')).toBe(0);
  });

  it('a broker slower than publishTimeoutMs rolls the batch back without spending attempts', async () => {
    const [id] = await enqueue(lesson());
    const broker = new MemoryBroker({ latencyMs: 1_000 });
    const d = dispatcher({ broker, publishTimeoutMs: 100 });
    await expect(d.drain()).rejects.toBeInstanceOf(BrokerUnavailableError);
    expect(await outboxRow(id as string)).toMatchObject({ attempts: 0, last_error: null });
  });
});

describe('several dispatchers', () => {
  it('two dispatchers draining one table publish every event exactly once', async () => {
    const total = 5_000;
    const ids: string[] = [];
    for (let i = 0; i < total / 1_000; i++) {
      ids.push(...(await enqueue(Array.from({ length: 1_000 }, () => lesson()))));
    }
    const brokers = [new MemoryBroker({ latencyMs: 2 }), new MemoryBroker({ latencyMs: 2 })];
    const [d1, d2] = [
      dispatcher({ broker: brokers[0] as MemoryBroker, batchSize: 100 }),
      dispatcher({ db: secondDatabase(), broker: brokers[1] as MemoryBroker, batchSize: 100 }),
    ] as const;
    const [n1, n2] = await Promise.all([d1.drain(), d2.drain()]);

    const all = brokers.flatMap((b) => idsOf(b.messages));
    expect(n1 + n2).toBe(total);
    expect(all).toHaveLength(total);
    expect(new Set(all)).toEqual(new Set(ids));
    // Both took part, so the claims really competed.
    expect(n1).toBeGreaterThan(0);
    expect(n2).toBeGreaterThan(0);
    expect(await count('outbox')).toBe(0);
  });

  // The claim holds an aggregate back while its earlier event is in flight elsewhere (locked
  // by another dispatcher), not only while it waits for a retry.
  it('two dispatchers keep one aggregate in order (earlier event in flight elsewhere)', async () => {
    const a = randomUUID();
    const [a1, a2] = await enqueue([lesson(a), lesson(a)]);
    const publishOrder: string[] = [];
    const slowFailing = new MemoryBroker({
      latencyMs: 300,
      onPublish: (m) => {
        publishOrder.push(m.id);
        return { ok: false, error: 'boom', permanent: false };
      },
    });
    const healthy = new MemoryBroker({
      onPublish: (m) => {
        publishOrder.push(m.id);
        return undefined;
      },
    });
    const d1 = dispatcher({ broker: slowFailing, batchSize: 1, retryBaseDelayMs: 60_000 });
    const d2 = dispatcher({ db: secondDatabase(), broker: healthy, batchSize: 1 });
    const first = d1.drain();
    await waitFor('the first event in flight', () => slowFailing.calls >= 1);
    await d2.drain();
    await first;
    // a1 failed and waits for a retry: a2 must not have gone out before it.
    expect(publishOrder).toEqual([a1]);
    expect(idsOf(healthy.messages)).not.toContain(a2);
  });
});

describe('lifecycle', () => {
  it.each([1, 2])(
    'stop() lets the batches in flight (%i lanes) finish and leaves nothing claimed',
    async (batchesInFlight) => {
      // At least 6 events in partitions of each parity: after a first full batch of 5,
      // each of 2 lanes still has work in its own partitions.
      const ids: string[] = [];
      const fewestPerParity = async () =>
        (
          await t.db.query<{ n: number }>(
            `SELECT CASE WHEN count(*) = 2 THEN min(n) ELSE 0 END::int AS n
             FROM (SELECT count(*) AS n FROM "${t.schema}".outbox GROUP BY partition % 2) AS p`,
          )
        ).rows[0]?.n ?? 0;
      while ((await fewestPerParity()) < 6) {
        ids.push(...(await enqueue(Array.from({ length: 12 }, () => lesson()))));
      }
      const total = ids.length;
      const broker = new OverlapBroker({ latencyMs: 400 });
      const d = dispatcher({ broker, batchSize: 5, batchesInFlight });
      await d.start();
      // A full first batch brings in every lane, each on its own partitions: wait until
      // every lane is publishing.
      await waitFor('every lane to be publishing', () => broker.publishing === batchesInFlight);
      const settledBefore = d.stats.published;
      await d.stop();
      const calls = broker.calls;

      // The batches in flight were published and settled; no further batch was started.
      const published = idsOf(broker.messages);
      expect(published.length).toBeGreaterThan(settledBefore);
      expect(published.length).toBeLessThanOrEqual(settledBefore + 5 * batchesInFlight);
      expect(new Set(published).size).toBe(published.length);
      expect(ids).toEqual(expect.arrayContaining(published));
      expect(broker.connected).toBe(false);
      expect(await count('outbox')).toBe(total - published.length);
      // Every remaining row can be locked at once: nobody holds a claim.
      const locked = await t.db.transaction(async (tx) => {
        const { rows } = await tx.query(`SELECT seq FROM "${t.schema}".outbox FOR UPDATE NOWAIT`);
        return rows.length;
      });
      expect(locked).toBe(total - published.length);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(broker.calls).toBe(calls);
      await d.stop(); // idempotent
    },
  );

  it('can be started again after stop()', async () => {
    const broker = new MemoryBroker();
    const d = dispatcher({ broker, pollIntervalMs: 50 });
    await d.start();
    await d.stop();
    await d.start();
    await enqueue(lesson());
    await waitFor('the event to be published', () => d.stats.published === 1);
  });

  it.each([
    ['batchSize', { batchSize: 0 }],
    ['batchSize', { batchSize: 'banana' as unknown as number }],
    ['batchSize', { batchSize: 2.5 }],
    ['batchSize', { batchSize: 10_001 }],
    ['pollIntervalMs', { pollIntervalMs: -1 }],
    ['maxAttempts', { maxAttempts: 0 }],
    ['retryMaxDelayMs', { retryBaseDelayMs: 1_000, retryMaxDelayMs: 500 }],
    ['publishTimeoutMs', { publishTimeoutMs: Number.NaN }],
  ])('refuses a bad %s with ConfigError naming it', (setting, options) => {
    let error: unknown;
    try {
      createDispatcher({ db: t.db, broker: new MemoryBroker(), schema: t.schema, ...options });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe(setting);
    expect((error as ConfigError).code).toBe('CONFIG');
  });
});
