/**
 * Consumer dead letters end to end: what consume() parks is listed, shown, retried (the
 * running consumer hands it to its handler again) and discarded with the CLI's `dead …
 * --consumer`, and `inbox purge` / `purge --consumer` delete by age. On RabbitMQ (no dedup
 * window, so one event can be published twice).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { type Consumer, consume, createInbox } from '../../src/consumer/index.js';
import { parkMessage } from '../../src/consumer/park.js';
import { QuizSubmitted } from '../../src/index.js';
import { AMQP_URL, deleteConsumerQueues, testExchange, withAmqpChannel } from '../helpers/amqp.js';
import { runCli } from '../helpers/cli.js';
import { consumeQuizzes } from '../helpers/consume.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { waitFor } from '../helpers/wait.js';

const exchange = testExchange();
const url = `${AMQP_URL}?exchange=${exchange}&accept_unroutable=true`;
const NAME = 'graded';
let pg: TestSchema;
let consumer: Consumer | undefined;
const applied: string[] = [];
let broken = new Set<string>();

const quiz = quizMessage;

async function publish(...messages: ReturnType<typeof quiz>[]): Promise<void> {
  const broker = brokerFromUrl(url, { source: 'test' });
  await broker.connect();
  for (const message of messages) await broker.publish([message]);
  await broker.close();
}

/** An event whose handler fails, published and waited for until parked. */
async function parkedFailing(): Promise<ReturnType<typeof quiz>> {
  const failing = quiz(randomUUID());
  broken = new Set([failing.id]);
  await publish(failing);
  await waitFor('parked', async () => {
    const list = await cli('dead', 'list', '--consumer', NAME, '--json');
    return JSON.parse(list.stdout).some((d: { eventId: string }) => d.eventId === failing.id);
  });
  return failing;
}

const cli = (...args: string[]) =>
  runCli([...args, '--database-url', PG_URL, '--schema', pg.schema]);

beforeAll(async () => {
  pg = await createPgTestSchema('consumer_dead');
  const inbox = createInbox({ schema: pg.schema, consumer: NAME });
  consumer = await consume({
    broker: url,
    consumer: NAME,
    database: pg.db,
    schema: pg.schema,
    events: [QuizSubmitted],
    maxAttempts: 2,
    retryDelayMs: 5,
    deadLetterRetryPollMs: 100,
    handler: async (event) => {
      if (broken.has(event.id)) throw new Error(`quiz ${event.aggregateId} is locked`);
      await pg.db.transaction((tx) =>
        inbox.process(tx, event, async () => {
          applied.push(event.id);
        }),
      );
    },
  });
});

afterAll(async () => {
  await consumer?.stop();
  await deleteConsumerQueues(exchange, NAME);
  await pg?.drop();
});

describe('consumer dead letters', () => {
  it('lists and shows a parked event, and a retry hands it to the handler again', async () => {
    const failing = quiz(randomUUID());
    broken = new Set([failing.id]);
    await publish(failing);
    await waitFor('parked', () => consumer?.stats.parked === 1, { timeoutMs: 20_000 });

    const list = await cli('dead', 'list', '--consumer', NAME, '--json');
    expect(list.code).toBe(0);
    const [row] = JSON.parse(list.stdout);
    expect(row).toMatchObject({
      consumer: NAME,
      eventId: failing.id,
      eventType: 'quiz-submitted',
      aggregateId: failing.aggregateId,
      attempts: 2,
      lastError: `handler failed 2 times; last error: quiz ${failing.aggregateId} is locked`,
      retrying: false,
    });
    const show = await cli('dead', 'show', failing.id, '--consumer', NAME);
    expect(show.code).toBe(0);
    const detail = JSON.parse(show.stdout);
    expect(detail.body).toBe(failing.payload);
    expect(detail.headers['cloudEvents:type']).toBe('quiz-submitted');

    broken = new Set();
    const retry = await cli('dead', 'retry', failing.id, '--consumer', NAME);
    expect(retry.code).toBe(0);
    expect(retry.stdout.trim()).toBe(failing.id);
    await waitFor('applied on retry', () => applied.includes(failing.id), { timeoutMs: 10_000 });
    await waitFor('the dead letter gone', async () => {
      const after = await cli('dead', 'list', '--consumer', NAME, '--json');
      return JSON.parse(after.stdout).length === 0;
    });
    // None of a consumer that applied events reads as such; a name given wrong says so.
    const none = await cli('dead', 'list', '--consumer', NAME);
    expect(none.stderr).toBe(`0 dead letters of consumer ${NAME}\n`);
    const misspelt = await cli('dead', 'list', '--consumer', `${NAME}x`);
    expect(misspelt.code).toBe(0);
    expect(misspelt.stderr).toBe(
      `0 dead letters of consumer ${NAME}x; consumer ${NAME}x has no inbox record or mark in schema "${pg.schema}" either: is the name right?\n`,
    );
  });

  it('a retry that fails again is parked anew, not lost', async () => {
    const failing = await parkedFailing();
    const failedBefore = consumer?.stats.failed ?? 0;
    expect((await cli('dead', 'retry', '--consumer', NAME, '--all')).code).toBe(0);
    await waitFor('two more failures', () => (consumer?.stats.failed ?? 0) >= failedBefore + 2);
    await waitFor('parked again, not retrying', async () => {
      const list = await cli('dead', 'list', '--consumer', NAME, '--json');
      const rows = JSON.parse(list.stdout) as { eventId: string; retrying: boolean }[];
      return rows.length === 1 && rows[0]?.eventId === failing.id && !rows[0].retrying;
    });
    const discard = await cli('dead', 'discard', '--consumer', NAME, '--all');
    expect(discard.code).toBe(0);
    expect(discard.stdout.trim()).toBe(failing.id);
    broken = new Set();
  });

  it("a parked event the broker delivers again and that is parked anew keeps an operator's retry waiting", async () => {
    // A consumer that does not run meanwhile: the retry stays asked for, not taken.
    const settings = { database: pg.db, schema: pg.schema, consumer: 'reparked' };
    const message = quiz(randomUUID());
    const delivery = {
      headers: {},
      contentType: 'application/json',
      body: new TextEncoder().encode(message.payload),
      origin: 'amqp q#1',
      ack: async () => {},
    };
    const fields = {
      id: message.id,
      source: 'test',
      type: 'quiz-submitted',
      aggregateId: message.aggregateId,
      sequence: '1',
    };
    const retrying = async () => {
      const list = await cli('dead', 'list', '--consumer', 'reparked', '--json');
      return (JSON.parse(list.stdout) as { retrying: boolean }[]).map((row) => row.retrying);
    };
    await parkMessage(settings, delivery, fields, 'handler failed 2 times', 2);
    expect((await cli('dead', 'retry', message.id, '--consumer', 'reparked')).code).toBe(0);
    // Delivered again by the broker (a restart replays it) and failing again.
    await parkMessage(settings, delivery, fields, 'handler failed 2 times', 2);
    expect(await retrying()).toEqual([true]);
    // Its retry failing: parked anew, the retry over.
    await parkMessage(settings, delivery, fields, 'handler failed 2 times', 2, false, true);
    expect(await retrying()).toEqual([false]);
  });

  it("two producers' events of one id are two dead letters, each retried with its own body", async () => {
    // CloudEvents makes an event its source and id: a producer numbering its events may
    // reuse another's id. Parked alike, neither may overwrite the other's dead letter.
    const id = randomUUID();
    const ours = { ...quiz(randomUUID()), id };
    const theirs = { ...quiz(randomUUID()), id };
    broken = new Set([id]);
    await publish(ours);
    const other = brokerFromUrl(url, { source: 'urn:other-producer' });
    await other.connect();
    await other.publish([theirs]);
    await other.close();
    type Listed = { eventId: string; source: string; aggregateId: string };
    const parkedOf = async () =>
      (JSON.parse((await cli('dead', 'list', '--consumer', NAME, '--json')).stdout) as Listed[])
        .filter((d) => d.eventId === id)
        .sort((a, b) => a.source.localeCompare(b.source));
    await waitFor('both parked', async () => (await parkedOf()).length === 2, {
      timeoutMs: 20_000,
    });
    expect((await parkedOf()).map((d) => [d.source, d.aggregateId])).toEqual([
      ['test', ours.aggregateId],
      ['urn:other-producer', theirs.aggregateId],
    ]);
    const show = await cli('dead', 'show', id, '--consumer', NAME);
    const bodies = (
      JSON.parse(`[${show.stdout.trim().replace(/\}\n\{/g, '},{')}]`) as {
        body: string;
      }[]
    ).map((d) => d.body);
    expect(bodies.sort()).toEqual([ours.payload, theirs.payload].sort());

    broken = new Set();
    expect((await cli('dead', 'retry', id, '--consumer', NAME)).code).toBe(0);
    await waitFor('both applied on retry', () => applied.filter((a) => a === id).length === 2, {
      timeoutMs: 10_000,
    });
    await waitFor('the dead letters gone', async () => (await parkedOf()).length === 0);
  });

  it('a retry whose consumer stops before finishing it is given back, and the next start takes it', async () => {
    const name = 'stopper';
    const event = quiz(randomUUID());
    let mode: 'fail' | 'hang' | 'apply' = 'fail';
    let entered = false;
    let unhang: () => void = () => {};
    const done: string[] = [];
    const start = () =>
      consumeQuizzes(url, name, pg, {
        maxAttempts: 1,
        deadLetterRetryPollMs: 100,
        stopTimeoutMs: 300,
        handler: async (received) => {
          if (received.id !== event.id) return;
          if (mode === 'fail') throw new Error('not yet');
          if (mode === 'hang') {
            entered = true;
            await new Promise<void>((resolve) => {
              unhang = resolve;
            });
            return;
          }
          done.push(received.id);
        },
      });
    let first: Consumer | undefined = await start();
    let second: Consumer | undefined;
    try {
      await publish(event);
      await waitFor('parked', () => first?.stats.parked === 1, { timeoutMs: 20_000 });
      mode = 'hang';
      expect((await cli('dead', 'retry', event.id, '--consumer', name)).code).toBe(0);
      await waitFor('the retry taken', () => entered);
      await first.stop();
      first = undefined;
      const { rows } = await pg.db.query<{ requested: boolean; taken: boolean }>(
        `SELECT retry_requested_at IS NOT NULL AS requested, retry_taken_at IS NOT NULL AS taken
         FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1`,
        [name],
      );
      expect(rows).toEqual([{ requested: true, taken: false }]);
      mode = 'apply';
      second = await start();
      await waitFor('applied by the next start', () => done.includes(event.id), {
        timeoutMs: 10_000,
      });
      await waitFor('the dead letter gone', async () => {
        const list = await cli('dead', 'list', '--consumer', name, '--json');
        return JSON.parse(list.stdout).length === 0;
      });
    } finally {
      unhang();
      await first?.stop();
      await second?.stop();
      // Its queue only: the exchange is the file's.
      await withAmqpChannel((channel) => channel.deleteQueue(`${exchange}.${name}`));
    }
  });

  it('a retry asked for again while the consumer handles it is handled once', async () => {
    const name = 'twice-asked';
    const event = quiz(randomUUID());
    let mode: 'fail' | 'hang' = 'fail';
    let unhang: () => void = () => {};
    const calls: string[] = [];
    const consumer = await consumeQuizzes(url, name, pg, {
      maxAttempts: 1,
      deadLetterRetryPollMs: 100,
      handler: async (received) => {
        if (received.id !== event.id) return;
        if (mode === 'fail') throw new Error('not yet');
        calls.push(received.id);
        if (calls.length === 1) await new Promise<void>((resolve) => (unhang = resolve));
      },
    });
    try {
      await publish(event);
      await waitFor('parked', () => consumer.stats.parked === 1, { timeoutMs: 20_000 });
      mode = 'hang';
      expect((await cli('dead', 'retry', event.id, '--consumer', name)).code).toBe(0);
      await waitFor('the retry taken', () => calls.length === 1);
      expect((await cli('dead', 'retry', event.id, '--consumer', name)).code).toBe(0);
      // Long enough for the consumer to take it again (it looks every 100 ms).
      await new Promise((resolve) => setTimeout(resolve, 500));
      unhang();
      await waitFor('the dead letter gone', async () => {
        const list = await cli('dead', 'list', '--consumer', name, '--json');
        return JSON.parse(list.stdout).length === 0;
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(calls).toEqual([event.id]);
    } finally {
      unhang();
      await consumer.stop();
      await withAmqpChannel((channel) => channel.deleteQueue(`${exchange}.${name}`));
    }
  });

  /** Marks the dead letter of `eventId` as a retry a consumer took `ago` and has not kept since. */
  const takenAgo = (eventId: string, ago: string) =>
    pg.db.query(
      `UPDATE "${pg.schema}".consumer_dead_letter
       SET retry_requested_at = NULL, retry_taken_at = now() - $2::interval WHERE event_id = $1`,
      [eventId, ago],
    );

  it('a retry taken by a consumer that died is taken again after 15 minutes', async () => {
    const failing = await parkedFailing();
    broken = new Set();
    // As a consumer SIGKILLed while handling the retry leaves it: taken, and kept no more.
    await takenAgo(failing.id, '14 minutes');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(applied).not.toContain(failing.id);
    await takenAgo(failing.id, '16 minutes');
    await waitFor('applied', () => applied.includes(failing.id), { timeoutMs: 10_000 });
  });

  it('a retry whose consumer died is taken up at once when asked for again', async () => {
    const failing = await parkedFailing();
    broken = new Set();
    // Taken four minutes ago, by a consumer that may have missed a keep or two: asked
    // again, left to it.
    await takenAgo(failing.id, '4 minutes');
    expect((await cli('dead', 'retry', failing.id, '--consumer', NAME)).code).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(applied).not.toContain(failing.id);
    // Not kept for six minutes: its consumer died (SIGKILL) while handling it.
    await takenAgo(failing.id, '6 minutes');
    expect((await cli('dead', 'retry', failing.id, '--consumer', NAME)).code).toBe(0);
    await waitFor('applied', () => applied.includes(failing.id), { timeoutMs: 10_000 });
  });

  it('a stale event is parked, and a retry applies it after all', async () => {
    const aggregate = randomUUID();
    const older = quiz(aggregate);
    const newer = quiz(aggregate);
    // The newer one first: the older one arrives late, as a producer's retried dead letter would.
    await publish(newer, older);
    await waitFor('parked as stale', () => (consumer?.stats.stale ?? 0) >= 1, {
      timeoutMs: 20_000,
    });
    const list = await cli('dead', 'list', '--consumer', NAME, '--json');
    const [row] = JSON.parse(list.stdout);
    expect(row.eventId).toBe(older.id);
    expect(row.lastError).toMatch(/is older than the last event applied for quiz "/);
    expect(applied).not.toContain(older.id);
    // `status` says which consumer parked what.
    const status = JSON.parse((await cli('status', '--json')).stdout);
    const byConsumer: Record<string, number> = status.consumerDeadLettersByConsumer;
    const mine = await pg.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1`,
      [NAME],
    );
    expect(byConsumer[NAME]).toBe(mine.rows[0]?.n);
    expect(Object.values(byConsumer).reduce((a, b) => a + b, 0)).toBe(status.consumerDeadLetters);
    const listed = Object.entries(byConsumer).map(([name, n]) => `${name}: ${n}`);
    expect((await cli('status')).stdout).toContain(
      `consumer dead letters: ${status.consumerDeadLetters} (${listed.join(', ')}; dead list --consumer <name>)`,
    );
    expect((await cli('dead', 'retry', older.id, '--consumer', NAME)).code).toBe(0);
    await waitFor('applied on retry', () => applied.includes(older.id), { timeoutMs: 10_000 });
  });

  it('a message that could not be decoded is shown, retried and discarded by its dead letter id', async () => {
    await withAmqpChannel(async (channel) => {
      channel.publish(exchange, 'quiz.quiz-submitted', Buffer.from('not an event'), {
        contentType: 'text/plain',
      });
      // A round trip on the channel: the publish before it has reached the server.
      await channel.checkExchange(exchange);
    });
    type Listed = { id: string; eventId: string | null; origin: string; retrying: boolean };
    const undecodable = async () => {
      const list = await cli('dead', 'list', '--consumer', NAME, '--json');
      return (JSON.parse(list.stdout) as Listed[]).filter((d) => d.eventId === null);
    };
    await waitFor('parked undecoded', async () => (await undecodable()).length === 1);
    const [first] = await undecodable();
    const id = first?.id as string;
    // Before: "has no dead letter with event id …", and a retry or discard by it exited 1.
    const show = await cli('dead', 'show', id, '--consumer', NAME);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout).body).toBe('not an event');
    const retry = await cli('dead', 'retry', id, '--consumer', NAME);
    expect(retry.code).toBe(0);
    expect(retry.stdout.trim()).toBe(id);
    // Still undecodable: parked anew (a new row), its origin saying once that it was retried.
    await waitFor('parked again', async () => {
      const rows = await undecodable();
      return rows.length === 1 && rows[0]?.id !== id && !rows[0]?.retrying;
    });
    const [again] = await undecodable();
    expect(again?.origin).toBe(`retry of ${first?.origin}`);
    expect((await cli('dead', 'retry', again?.id as string, '--consumer', NAME)).code).toBe(0);
    await waitFor('parked a third time', async () => {
      const rows = await undecodable();
      return rows.length === 1 && rows[0]?.id !== again?.id && !rows[0]?.retrying;
    });
    const [third] = await undecodable();
    expect(third?.origin).toBe(`retry of ${first?.origin}`);
    const discard = await cli('dead', 'discard', third?.id as string, '--consumer', NAME);
    expect(discard.code).toBe(0);
    expect(await undecodable()).toEqual([]);
  });

  it('refuses what a consumer dead letter has no field for, and an unknown id exits 1', async () => {
    const bad = await cli('dead', 'list', '--consumer', NAME, '--aggregate-type', 'quiz');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/aggregate-type/);
    // A name no consumer can have: refused, not answered with "0" as if it had none.
    for (const args of [
      ['inbox', 'purge', '--older-than', '1d', '--consumer', 'a;b'],
      ['dead', 'list', '--consumer', 'bad name!'],
      ['dead', 'show', 'x', '--consumer', 'a;b'],
      ['purge', '--older-than', '1d', '--consumer', 'a;b'],
    ]) {
      const refused = await cli(...args);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr).toMatch(/consumer: ".*" is not a consumer name/);
    }
    const missing = await cli('dead', 'retry', 'no-such-event', '--consumer', NAME);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not among the dead letters: no-such-event/);
    // dead groups counts the outbox's only: its help does not offer --consumer.
    expect((await cli('dead', 'groups', '--help')).stdout).not.toContain('--consumer');
    const groups = await cli('dead', 'groups', '--consumer', NAME);
    expect(groups.code).toBe(2);
    expect(groups.stderr).toContain("unknown option '--consumer'");
  });

  it('inbox purge and purge --consumer delete by age', async () => {
    const { rows } = await pg.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${pg.schema}".inbox WHERE consumer = $1`,
      [NAME],
    );
    expect(rows[0]?.n).toBeGreaterThan(0);
    const kept = await cli('inbox', 'purge', '--older-than', '1h', '--consumer', NAME);
    expect(kept.stdout).toMatch(new RegExp(`^0 inbox records of consumer ${NAME} purged`));
    // Nothing younger than a minute: `0s` would take every record, the latest included.
    const tooYoung = await cli('inbox', 'purge', '--older-than', '0s', '--consumer', NAME);
    expect(tooYoung.code).toBe(2);
    expect(tooYoung.stderr).toContain('older-than: "0s" is less than a minute ago');
    await pg.db.query(
      `UPDATE "${pg.schema}".inbox SET processed_at = processed_at - interval '2 minutes' WHERE consumer = $1`,
      [NAME],
    );
    const purged = await cli('inbox', 'purge', '--older-than', '1m', '--consumer', NAME);
    expect(purged.code).toBe(0);
    expect(purged.stdout).toMatch(
      new RegExp(`^${rows[0]?.n} inbox records? of consumer ${NAME} purged`),
    );
    const invalid = quiz(randomUUID(), { payload: '{"score":-1}' });
    await publish(invalid);
    await waitFor('parked', async () => {
      const list = await cli('dead', 'list', '--consumer', NAME, '--json');
      return JSON.parse(list.stdout).length === 1;
    });
    await pg.db.query(
      `UPDATE "${pg.schema}".consumer_dead_letter SET dead_at = dead_at - interval '2 minutes' WHERE consumer = $1`,
      [NAME],
    );
    const dead = await cli('purge', '--older-than', '1m', '--consumer', NAME);
    expect(dead.stdout).toMatch(new RegExp(`^1 dead letter of consumer ${NAME} purged`));
  });

  it("the janitor deletes its own consumer's inbox records past the retention, no others", async () => {
    const inboxRow = (consumer: string, age: string) =>
      pg.db.query(
        `INSERT INTO "${pg.schema}".inbox (consumer, event_id, event_type, aggregate_id, processed_at)
         VALUES ($1, $2, 'quiz-submitted', 'q', now() - $3::interval)`,
        [consumer, randomUUID(), age],
      );
    for (const age of ['2 hours', '3 hours', '30 days']) await inboxRow('tidy', age);
    await inboxRow('tidy', '30 seconds');
    for (const age of ['2 hours', '30 days']) await inboxRow('untidy', age);
    const tidy = await consume({
      broker: url,
      consumer: 'tidy',
      database: pg.db,
      schema: pg.schema,
      events: [QuizSubmitted],
      inboxRetentionMs: 3_600_000,
      inboxPurgeIntervalMs: 100,
      handler: () => {},
    });
    try {
      await waitFor('purged', () => tidy.stats.inboxPurged === 3);
    } finally {
      await tidy.stop();
      await withAmqpChannel((channel) => channel.deleteQueue(`${exchange}.tidy`)).catch(() => {});
    }
    const { rows } = await pg.db.query<{ consumer: string; n: number }>(
      `SELECT consumer, count(*)::int AS n FROM "${pg.schema}".inbox
       WHERE consumer IN ('tidy', 'untidy') GROUP BY consumer ORDER BY consumer`,
    );
    expect(rows).toEqual([
      { consumer: 'tidy', n: 1 },
      { consumer: 'untidy', n: 2 },
    ]);
    expect(tidy.stats.inboxPurged).toBe(3);
  });

  it("a retried dead letter that still does not decode is parked again under onInvalid: 'skip', not deleted", async () => {
    const name = 'lenient';
    const start = (onInvalid: 'park' | 'skip') =>
      consume({
        broker: url,
        consumer: name,
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted],
        onInvalid,
        deadLetterRetryPollMs: 100,
        handler: () => {},
      });
    const listed = async () =>
      JSON.parse((await cli('dead', 'list', '--consumer', name, '--json')).stdout) as {
        eventId: string;
        retrying: boolean;
        lastError: string;
      }[];
    const invalid = quiz(randomUUID(), { score: -1 });
    const strict = await start('park');
    try {
      await publish(invalid);
      await waitFor('parked as invalid', () => strict.stats.parked === 1);
    } finally {
      await strict.stop();
    }
    // Redeployed with the policy that skips invalid events; the operator retries anyway.
    const lenient = await start('skip');
    try {
      expect((await cli('dead', 'retry', '--consumer', name, '--all')).code).toBe(0);
      await waitFor('parked again', () => lenient.stats.parked === 1);
      const rows = await listed();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ eventId: invalid.id, retrying: false });
      expect(rows[0]?.lastError).toMatch(/^payload\.score: /);
      expect(lenient.stats.skipped).toBe(0);
    } finally {
      await lenient.stop();
      await withAmqpChannel((channel) => channel.deleteQueue(`${exchange}.${name}`)).catch(
        () => {},
      );
      // The suite's own consumer parked it too.
      await cli('dead', 'discard', '--consumer', NAME, invalid.id);
    }
  });
});
