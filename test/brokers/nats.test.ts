/**
 * NATS JetStream broker: the conformance suite, then NATS-specific behaviour. Every target
 * has its own stream `T_<random>` over `t<random>.>`, deleted afterwards, so this file runs
 * in parallel with others and twice in a row. Outages stop a private nats-server (own port,
 * own store), never the machine's server on 4222.
 */
import { randomBytes } from 'node:crypto';
import { DiscardPolicy, jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { connect, nanos } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import type { EventBroker, OutboxMessage } from '../../src/brokers/broker.js';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { headerValue, maxSubjectBytes } from '../../src/brokers/nats/subjects.js';
import { BrokerUnavailableError, ConfigError } from '../../src/common/errors.js';
import { createDispatcher, natsSettings } from '../../src/index.js';
import { createPgTestSchema } from '../helpers/db.js';
import { outboxMessage } from '../helpers/messages.js';
import {
  consumeStream,
  createStream,
  deleteStream,
  type NatsReceived,
  streamInfo,
  withConnection,
} from '../helpers/nats-consumer.js';
import { type PrivateNatsServer, startNatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';
import { badInputSuite } from './bad-input.js';
import { type BrokerHarness, brokerConformance } from './conformance.js';

/** The machine's NATS, shared with other test files. */
const SHARED_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const SOURCE = '/edupulse/test';
/** The private server's limit, so a refused message need not be megabytes. */
const MAX_PAYLOAD = 64 * 1024;
/**
 * The conformance streams' limit: a message over it reaches the server and is refused
 * there (a payload over max_payload is refused before sending, at claim time).
 */
const MAX_MSG_SIZE = 4 * 1024;

let privateServer: Promise<PrivateNatsServer> | undefined;
/** This file's own server, started on first use: the conformance outages stop it. */
const ownServer = () => {
  privateServer ??= startNatsServer({ maxPayload: MAX_PAYLOAD });
  return privateServer;
};
afterAll(async () => {
  await (await privateServer)?.destroy();
});

const names = () => {
  const id = randomBytes(5).toString('hex');
  return { stream: `T_${id}`, prefix: `t${id}` };
};

const harness: BrokerHarness = {
  name: 'nats',
  // Two services' events of one id are two events (CloudEvents: source and id).
  dedupId: (attributes) => `${attributes.id}@${attributes.source}`,
  async target() {
    const server = await ownServer();
    const { stream, prefix } = names();
    // Declared up front, as an operator would: the consumer starts before the broker connects.
    // The broker creating a missing stream is tested below.
    await createStream(server.url, stream, [`${prefix}.>`], { max_msg_size: MAX_MSG_SIZE });
    return {
      broker: () =>
        brokerFromUrl(`${server.url}?stream=${stream}&subject_prefix=${prefix}`, {
          source: SOURCE,
        }),
      consume: () => consumeStream(server.url, stream),
      refused: {
        aggregateType: 'lesson',
        payload: JSON.stringify({ blob: 'x'.repeat(MAX_MSG_SIZE) }),
        reason: /message size exceeds maximum allowed \(code 10054\)/,
      },
      outage: { stop: () => server.stop(), start: () => server.start() },
      cleanup: () => deleteStream(server.url, stream),
    };
  },
};

brokerConformance(harness);
badInputSuite(harness);

function message(overrides: Partial<OutboxMessage> = {}): OutboxMessage {
  const base = outboxMessage({ headers: {}, ...overrides });
  return overrides.payload
    ? base
    : { ...base, payload: JSON.stringify({ lesson_id: base.aggregateId }) };
}

describe('nats broker', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  });

  /** A broker on a fresh stream name of `url`, closed and its stream deleted after the file. */
  const fresh = (url = SHARED_URL, query = '') => {
    const { stream, prefix } = names();
    const broker: EventBroker = brokerFromUrl(
      `${url}?stream=${stream}&subject_prefix=${prefix}${query}`,
      { source: SOURCE },
    );
    cleanups.push(
      () => broker.close(),
      () => deleteStream(url, stream),
    );
    return { broker, stream, prefix };
  };

  it('creates the stream over <prefix>.> with the duplicate window, and reuses it', async () => {
    const { broker, stream, prefix } = fresh(SHARED_URL, '&duplicate_window_s=7');
    await broker.connect();
    const info = await streamInfo(SHARED_URL, stream);
    expect(info.config.subjects).toEqual([`${prefix}.>`]);
    expect(info.config.duplicate_window).toBe(nanos(7000));
    await broker.close();
    await broker.connect();
    expect(await broker.publish([message()])).toEqual([{ ok: true }]);
  });

  it('accepts an existing stream that captures the subjects, refuses one that does not', async () => {
    const narrow = fresh();
    await createStream(SHARED_URL, narrow.stream, [`${narrow.prefix}.*.*`]);
    await narrow.broker.connect();

    const other = fresh();
    await createStream(SHARED_URL, other.stream, [`${other.prefix}x.>`, `${other.prefix}.lesson`]);
    const error = await other.broker.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain(
      `NATS stream "${other.stream}" exists but does not capture "${other.prefix}.*.*"`,
    );
    expect(String(error)).toContain(`${other.prefix}x.>, ${other.prefix}.lesson`);
  });

  it('a dispatcher warns of an existing stream that keeps less than its settings, and uses it', async () => {
    const { stream, prefix } = names();
    cleanups.push(() => deleteStream(SHARED_URL, stream));
    // Made elsewhere: a 5 s duplicate window, one replica.
    await withConnection(SHARED_URL, async (nc) => {
      await (await jetstreamManager(nc)).streams.add({
        name: stream,
        subjects: [`${prefix}.>`],
        duplicate_window: nanos(5000),
      });
    });
    const pg = await createPgTestSchema('nats_shortfall');
    cleanups.push(() => pg.drop());
    const warnings: string[] = [];
    const dispatcher = createDispatcher({
      db: pg.db,
      broker: brokerFromUrl(
        `${SHARED_URL}?stream=${stream}&subject_prefix=${prefix}&duplicate_window_s=60&replicas=3`,
        { source: SOURCE },
      ),
      schema: pg.schema,
      pollIntervalMs: 50,
      logger: {
        debug: () => {},
        info: () => {},
        warn: (_fields, message) => warnings.push(message),
        error: () => {},
      },
    });
    cleanups.push(() => dispatcher.stop());
    await dispatcher.start();
    await pg.db.query(
      `INSERT INTO "${pg.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
       VALUES ('lesson', 'l-1', 'lesson-published', '{}')`,
    );
    await waitFor(
      'the event',
      async () => (await streamInfo(SHARED_URL, stream)).state.messages === 1,
    );
    // Of the stream (the server may warn of its autovacuum too).
    expect(warnings.filter((w) => w.startsWith('NATS stream'))).toEqual([
      `NATS stream "${stream}" drops a repeated Nats-Msg-Id only within 5 s, less than duplicate_window_s (60 s): an event published again after a crash later than that reaches consumers twice; widen it: nats stream edit ${stream} --dupe-window 60s`,
      `NATS stream "${stream}" keeps 1 copy of each event, fewer than replicas (3): it survives fewer lost servers than planned; add copies: nats stream edit ${stream} --replicas 3`,
    ]);
    // Used as it is: the dispatcher changes nothing of a stream it did not make.
    expect((await streamInfo(SHARED_URL, stream)).config.duplicate_window).toBe(nanos(5000));

    // A stream that keeps what the settings ask (the server's default window, 2 min, and
    // the default 120 s), or one the dispatcher made itself: nothing to say.
    const quiet: string[] = [];
    const logger = {
      debug: () => {},
      info: () => {},
      warn: (_fields: object, message: string) => quiet.push(message),
      error: () => {},
    };
    const asked = fresh();
    await createStream(SHARED_URL, asked.stream, [`${asked.prefix}.>`]);
    await asked.broker.connect({ logger });
    const made = fresh();
    await made.broker.connect({ logger });
    expect(quiet).toEqual([]);
  });

  it('maps characters a subject token cannot hold to _, and percent-encodes header values', async () => {
    const { broker, stream, prefix } = fresh();
    await broker.connect();
    const consumer = await consumeStream(SHARED_URL, stream);
    cleanups.push(() => consumer.close());
    const odd = message({
      aggregateType: 'lesson.v2 *>',
      eventType: 'leçon\tpubliée',
      aggregateId: 'café "1" 100%',
    });
    expect(await broker.publish([odd])).toEqual([{ ok: true }]);
    await waitFor('the message', () => consumer.received.length === 1);
    const [got] = consumer.received;
    expect(got?.subject).toBe(`${prefix}.lesson_v2___.le_on_publi_e`);
    expect(got?.raw['ce-subject']).toBe('caf%C3%A9%20%221%22%20100%25');
    expect(got?.attributes.subject).toBe('café "1" 100%');
    expect(got?.attributes.type).toBe('leçon\tpubliée');
    expect(got?.body).toBe(odd.payload);
    // The binding's datacontenttype header, beside the protocol's content-type.
    expect(got?.raw['ce-datacontenttype']).toBe('application/json');
    expect(got?.raw['content-type']).toBe('application/json');
  });

  it('stores an event published twice once (Nats-Msg-Id dedup), both publishes succeed', async () => {
    const { broker, stream } = fresh();
    await broker.connect();
    const event = message();
    expect(await broker.publish([event])).toEqual([{ ok: true }]);
    expect(await broker.publish([event])).toEqual([{ ok: true }]);
    expect((await streamInfo(SHARED_URL, stream)).state.messages).toBe(1);
  });

  it("keeps two services' events of one id apart: the dedup id is the source and the id", async () => {
    const { broker, stream, prefix } = fresh();
    const other = brokerFromUrl(`${SHARED_URL}?stream=${stream}&subject_prefix=${prefix}`, {
      source: '/another-service',
    });
    cleanups.push(() => other.close());
    await broker.connect();
    await other.connect();
    const event = message();
    expect(await broker.publish([event])).toEqual([{ ok: true }]);
    expect(await other.publish([event])).toEqual([{ ok: true }]);
    expect((await streamInfo(SHARED_URL, stream)).state.messages).toBe(2);
  });

  it('refuses headers over the 64 KiB JetStream stores, at claim and from the server, permanently', async () => {
    // Within the server's max_payload (1 MiB here): only JetStream's header limit refuses.
    const { broker } = fresh();
    await broker.connect();
    const wide = message({ headers: { tenant: 't'.repeat(70_000) } });
    expect(broker.validate?.(wide)).toMatch(
      /^headers: the CloudEvents headers \(aggregate_id and the event's headers among them\) take 68\.\d KiB, over the 64\.0 KiB JetStream stores with a message$/,
    );
    // Sent anyway (a caller that does not validate): refused for good, not retried.
    const [result] = await broker.publish([wide]);
    expect(result).toMatchObject({ ok: false, permanent: true });
    expect(result?.ok === false && result.error).toMatch(
      /header size exceeds maximum allowed of 64k \(code 10097\)/,
    );
  });

  it("fails a message over the stream's max_msg_size permanently, with the server's reason", async () => {
    const { broker, stream, prefix } = fresh();
    await withConnection(SHARED_URL, async (nc) => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], max_msg_size: 1000 });
    });
    await broker.connect();
    const [small, large] = await broker.publish([
      message(),
      message({ payload: JSON.stringify({ blob: 'x'.repeat(2000) }) }),
    ]);
    expect(small).toEqual({ ok: true });
    expect(large).toEqual({
      ok: false,
      permanent: true,
      error: `stream ${stream}: message size exceeds maximum allowed (code 10054)`,
    });
  });

  it('refuses a subject longer than a control line carries, alone; the connection stays', async () => {
    const { broker, stream, prefix } = fresh();
    await broker.connect();
    const consumer = await consumeStream(SHARED_URL, stream);
    cleanups.push(() => consumer.close());
    // `<prefix>.lesson.<event type>`: the longest subject published, and one byte more.
    const fits = 'f'.repeat(maxSubjectBytes - `${prefix}.lesson.`.length);
    const batch = [
      message(),
      message({ eventType: 't'.repeat(5000) }),
      message({ eventType: fits }),
      message({ eventType: `${fits}x` }),
      message({ aggregateType: 'a'.repeat(4000) }),
      message(),
    ];
    const results = await broker.publish(batch);
    const subjectBytes = `${prefix}.lesson.`.length + 5000;
    expect(results).toEqual([
      { ok: true },
      {
        ok: false,
        permanent: true,
        error: `event_type: "${'t'.repeat(80)}… (5000 characters)" makes the NATS subject ${subjectBytes} bytes, over the 3584 a NATS server's control line leaves for a subject`,
      },
      { ok: true },
      {
        ok: false,
        permanent: true,
        error: expect.stringMatching(
          /^event_type: .* makes the NATS subject 3585 bytes, over the 3584 /,
        ),
      },
      {
        ok: false,
        permanent: true,
        error: expect.stringMatching(
          /^aggregate_type: "a{80}… \(4000 characters\)" makes the NATS subject /,
        ),
      },
      { ok: true },
    ]);
    // The same reasons when the dispatcher claims the rows, before any publish.
    expect(batch.map((m) => broker.validate?.(m))).toEqual(
      results.map((r) => (r.ok ? undefined : r.error)),
    );
    // Still connected: a round trip, and the next batch goes out.
    await broker.check?.();
    expect(await broker.publish([message()])).toEqual([{ ok: true }]);
    await waitFor('the four published messages', () => consumer.received.length === 4);
    const received: NatsReceived[] = consumer.received;
    const longest = received.find((m) => m.attributes.id === batch[2]?.id);
    expect(longest?.subject.length).toBe(maxSubjectBytes);
    expect(consumer.received.map((m) => m.attributes.id)).toEqual(
      expect.arrayContaining([batch[0]?.id, batch[5]?.id]),
    );
  });

  it('publishes a batch larger than max_in_flight', async () => {
    const { broker, stream } = fresh(SHARED_URL, '&max_in_flight=3');
    await broker.connect();
    const batch = Array.from({ length: 50 }, () => message());
    const results = await broker.publish(batch);
    expect(results.every((r) => r.ok)).toBe(true);
    expect((await streamInfo(SHARED_URL, stream)).state.messages).toBe(50);
  });

  it.each([
    ['', false],
    [', also with a plain subscriber on its subjects (no "no responders")', true],
  ])(
    'a dispatcher whose stream is deleted mid-run creates it again; nothing is dead-lettered%s',
    async (_, listening) => {
      const { stream, prefix } = names();
      if (listening) {
        // As an operator's `nats sub`: the publish reaches a subscriber, so the server sends
        // no "no responders", and without a stream no PubAck either.
        const listener = await connect({ servers: SHARED_URL.replace(/^nats:\/\//, '') });
        cleanups.push(() => listener.close());
        listener.subscribe(`${prefix}.>`);
        await listener.flush();
      }
      const pg = await createPgTestSchema('nats_vanish');
      cleanups.push(
        () => pg.drop(),
        () => deleteStream(SHARED_URL, stream),
      );
      const insert = (from: number, count: number) =>
        pg.db.query(
          `INSERT INTO "${pg.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         SELECT 'lesson', 'l-' || (i % 10), 'lesson-published', json_build_object('n', i)
         FROM generate_series($1::int, $2::int) AS i ORDER BY i`,
          [from, from + count - 1],
        );
      const pending = async () =>
        (await pg.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${pg.schema}".outbox`))
          .rows[0]?.n;
      const dispatcher = createDispatcher({
        db: pg.db,
        broker: brokerFromUrl(
          `${SHARED_URL}?stream=${stream}&subject_prefix=${prefix}&timeout_ms=1000`,
          { source: SOURCE },
        ),
        schema: pg.schema,
        pollIntervalMs: 50,
        retryBaseDelayMs: 100,
        retryMaxDelayMs: 500,
        maxAttempts: 2,
      });
      cleanups.push(() => dispatcher.stop());
      await insert(1, 100);
      await dispatcher.start();
      await waitFor('the first events', async () => (await pending()) === 0);
      await deleteStream(SHARED_URL, stream);
      await insert(101, 100);
      await waitFor('the later events', async () => (await pending()) === 0, { timeoutMs: 20_000 });
      const { rows } = await pg.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${pg.schema}".outbox_dead_letter`,
      );
      expect(rows[0]?.n).toBe(0);
      expect((await streamInfo(SHARED_URL, stream)).state.messages).toBe(100);
    },
  );

  it('a stream deleted while connected is an outage; connecting again creates it', async () => {
    const { broker, stream, prefix } = fresh();
    await broker.connect();
    await deleteStream(SHARED_URL, stream);
    const error = await broker.publish([message()]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String(error)).toContain(`no stream captures subject ${prefix}.lesson.lesson-published`);
    await broker.close();
    await broker.connect();
    expect(await broker.publish([message()])).toEqual([{ ok: true }]);
    expect((await streamInfo(SHARED_URL, stream)).state.messages).toBe(1);
  });

  it('fails a message retryably when a live server and its stream send no PubAck in time', async () => {
    const { broker, stream, prefix } = fresh(SHARED_URL, '&timeout_ms=300');
    await broker.connect();
    // The stream is there and takes the subject but answers nothing (as one that lost its
    // leader, while PINGs are still answered): here one replaced by a stream with no_ack.
    await deleteStream(SHARED_URL, stream);
    await createStream(SHARED_URL, stream, [`${prefix}.>`], { no_ack: true });
    const [result] = await broker.publish([message()]);
    expect(result).toEqual({
      ok: false,
      permanent: false,
      error: `no PubAck from stream ${stream} within 300 ms`,
    });
  });

  /** A connection of something other than the dispatcher, closed after the file. */
  const stranger = async () => {
    const nc = await connect({ servers: SHARED_URL.replace(/^nats:\/\//, '') });
    cleanups.push(() => nc.close());
    return nc;
  };

  it("a stream deleted while something else listens on its subjects is an outage, not the events' fault", async () => {
    const { broker, stream, prefix } = fresh(SHARED_URL, '&timeout_ms=300');
    await broker.connect();
    await deleteStream(SHARED_URL, stream);
    // A plain subscriber: the request gets neither "no responders" nor a PubAck.
    const listener = await stranger();
    listener.subscribe(`${prefix}.>`);
    await listener.flush();
    const error = await broker.publish([message()]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String(error)).toContain(
      `stream ${stream} does not exist (deleted; something other than a stream listens on ${prefix}.lesson.lesson-published)`,
    );
    // A stream now over other subjects only: the same, saying what it captures.
    await createStream(SHARED_URL, stream, [`${prefix}x.>`]);
    const narrowed = await broker.publish([message()]).catch((e: unknown) => e);
    expect(narrowed).toBeInstanceOf(BrokerUnavailableError);
    expect(String(narrowed)).toContain(
      `stream ${stream} no longer captures ${prefix}.lesson.lesson-published (its subjects: ${prefix}x.>)`,
    );
  });

  it("a reply on the stream's subjects from something other than the stream is an outage, not a publish", async () => {
    const { broker, stream, prefix } = fresh(SHARED_URL, '&timeout_ms=2000');
    await broker.connect();
    await deleteStream(SHARED_URL, stream);
    // A service answering on the subjects: `{}`, then a PubAck of another stream.
    const responder = await stranger();
    const replies = ['{}', '{"stream":"OTHER","seq":7}'];
    let answered = 0;
    responder.subscribe(`${prefix}.>`, {
      callback: (_error, msg) => {
        msg.respond(replies[answered++ % replies.length]);
      },
    });
    await responder.flush();
    for (const shown of ['a reply that is no PubAck', 'a PubAck of stream "OTHER"']) {
      const error = await broker.publish([message()]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BrokerUnavailableError);
      expect(String(error)).toContain(
        `${shown}${shown.startsWith('a PubAck') ? `, not of ${stream}` : ''}: something other than stream ${stream} answers on its subjects`,
      );
    }
  });

  /** A connected broker on a stream of its own with `limits`, discarding new messages. */
  const limited = async (limits: Partial<StreamConfig>) => {
    const named = fresh();
    await createStream(SHARED_URL, named.stream, [`${named.prefix}.>`], {
      discard: DiscardPolicy.New,
      ...limits,
    });
    await named.broker.connect();
    return named;
  };

  it('a stream full (discard new) is an outage: no event is failed for it', async () => {
    const { broker, stream } = await limited({ max_msgs: 2 });
    expect(await broker.publish([message(), message()])).toEqual([{ ok: true }, { ok: true }]);
    const error = await broker.publish([message()]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String(error)).toContain(`stream ${stream}: maximum messages exceeded (code 10077)`);
  });

  it("a message alone over the stream's max_bytes fails for good; the others are published", async () => {
    const { broker, stream } = await limited({ max_bytes: 1000 });
    const [large, small] = await broker.publish([
      message({ payload: JSON.stringify({ blob: 'x'.repeat(2000) }) }),
      message(),
    ]);
    expect(large).toMatchObject({ ok: false, permanent: true });
    expect(large?.ok === false && large.error).toContain(
      `stream ${stream}: maximum bytes exceeded (code 10077): this message (`,
    );
    expect(small).toEqual({ ok: true });
  });

  it("a subject at its own limit (discard new per subject) fails that subject's event only", async () => {
    const { broker, stream } = await limited({
      max_msgs_per_subject: 1,
      discard_new_per_subject: true,
    });
    expect(await broker.publish([message()])).toEqual([{ ok: true }]);
    const quizEvent = message({ aggregateType: 'quiz', eventType: 'quiz-submitted' });
    expect(await broker.publish([message(), quizEvent])).toEqual([
      {
        ok: false,
        permanent: false,
        error: `stream ${stream}: maximum messages per subject exceeded (code 10077)`,
      },
      { ok: true },
    ]);
  });

  it('refuses a stream with no_ack at connect, naming it', async () => {
    const { broker, stream, prefix } = fresh();
    await createStream(SHARED_URL, stream, [`${prefix}.>`], { no_ack: true });
    const error = await broker.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain(`NATS stream "${stream}" is configured with no_ack`);
  });

  it('close() is idempotent and connect() works again after it', async () => {
    const { broker } = fresh();
    await broker.connect();
    await broker.close();
    await broker.close();
    await expect(broker.publish([message()])).rejects.toBeInstanceOf(BrokerUnavailableError);
    await broker.connect();
    expect(await broker.publish([message()])).toEqual([{ ok: true }]);
  });

  it('rejects a publish while the server is down with BrokerUnavailableError, quickly', async () => {
    const server = await ownServer();
    const { broker } = fresh(server.url, '&timeout_ms=3000');
    await broker.connect();
    await server.stop();
    try {
      const started = Date.now();
      const error = await broker.publish([message(), message()]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BrokerUnavailableError);
      expect(String(error)).toContain(`127.0.0.1:${server.port}`);
      expect(Date.now() - started).toBeLessThan(3000);
      // What the dispatcher does next: close, back off, connect again.
      await broker.close();
      await expect(broker.connect()).rejects.toThrow(
        `cannot connect to NATS at nats://127.0.0.1:${server.port}`,
      );
    } finally {
      await server.start();
    }
    await broker.connect();
    expect(await broker.publish([message()])).toEqual([{ ok: true }]);
  });

  it('gives up within the timeout on a server that stops answering (no PubAck, no PONG)', async () => {
    const server = await ownServer();
    const { broker } = fresh(server.url, '&timeout_ms=500');
    await broker.connect();
    await server.freeze();
    try {
      const started = Date.now();
      const error = await broker.publish([message(), message()]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BrokerUnavailableError);
      expect(String(error)).toMatch(
        /no PubAck within 500 ms and no PONG from nats:\/\/127\.0\.0\.1/,
      );
      // PubAck timeout + one PING probe of at most a second.
      expect(Date.now() - started).toBeLessThan(2500);
      await broker.close();
    } finally {
      server.thaw();
    }
    await broker.connect();
    expect(await broker.publish([message()])).toEqual([{ ok: true }]);
  });

  describe('URL parameters', () => {
    const from = (query: string) =>
      brokerFromUrl(`nats://127.0.0.1:4222${query}`, { source: SOURCE });

    it('has defaults and reads every documented parameter', () => {
      expect(from('').name).toBe('nats');
      expect(
        from(
          '?stream=S&subject_prefix=p&max_in_flight=10&duplicate_window_s=60&replicas=3&timeout_ms=1000',
        ).name,
      ).toBe('nats');
    });

    it.each([
      ['?max_in_flight=0', /broker: max_in_flight="0" is not a whole number from 1 to 65536/],
      ['?max_in_flight=many', /max_in_flight="many"/],
      ['?timeout_ms=5', /timeout_ms="5"/],
      ['?duplicate_window_s=-1', /duplicate_window_s="-1"/],
      ['?replicas=0', /replicas="0" is not a whole number from 1 to 5/],
      ['?replicas=7', /replicas="7"/],
      ['?subject_prefix=edu.pulse', /subject_prefix="edu.pulse" is not valid/],
      ['?subject_prefix=edu*', /subject_prefix="edu\*" is not valid/],
      ['?stream=a%20b', /stream="a b" is not valid/],
      ['?streams=X', /unknown parameter "streams"/],
      ['?stream=A&stream=B', /stream is given more than once: give it once/],
      ['?tls=yes', /tls="yes" is not valid \(true or false\)/],
      [
        '?cert_file=/nonexistent/client.crt&key_file=/nonexistent/client.key',
        /cert_file: cannot read \/nonexistent\/client\.crt/,
      ],
      ['?token_file=', /token_file is empty \(expected a file path\)/],
    ])('refuses %s', (query, reason) => {
      let error: unknown;
      try {
        from(query);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).setting).toBe('broker');
      expect(String(error)).toMatch(reason);
    });
  });

  it('reads a list of servers, each with its port or 4222', () => {
    expect(natsSettings('nats://a.example:4223,b.example,10.0.0.3:4224').servers).toEqual([
      'a.example:4223',
      'b.example:4222',
      '10.0.0.3:4224',
    ]);
    expect(natsSettings('nats://').servers).toEqual(['127.0.0.1:4222']);
    expect(() => natsSettings('nats://a.example:42x,b.example:4222')).toThrow(
      /broker: "a.example:42x" is not a NATS server/,
    );
  });

  describe('credentials', () => {
    let closedPort = 0;
    let auth: PrivateNatsServer | undefined;
    afterAll(async () => {
      await auth?.destroy();
    });

    const connectError = async (url: string) => {
      const broker = brokerFromUrl(url, { source: SOURCE });
      const error = await broker.connect().catch((e: unknown) => e);
      await broker.close();
      return error;
    };

    it('never appear in connection errors', async () => {
      // A port that was free a moment ago: nothing listens there.
      const probe = await startNatsServer();
      closedPort = probe.port;
      await probe.destroy();
      const withPassword = await connectError(`nats://alice:s3cret-pw@127.0.0.1:${closedPort}`);
      expect(withPassword).toBeInstanceOf(BrokerUnavailableError);
      expect(String(withPassword)).toContain(`nats://alice:***@127.0.0.1:${closedPort}`);
      expect(String(withPassword)).not.toContain('s3cret-pw');
      const withToken = await connectError(`nats://t0ken-value@127.0.0.1:${closedPort}`);
      expect(String(withToken)).toContain(`nats://***@127.0.0.1:${closedPort}`);
      expect(String(withToken)).not.toContain('t0ken-value');
    });

    it('are used, and a wrong password is a ConfigError (retrying cannot help) without it', async () => {
      auth = await startNatsServer({ user: { name: 'alice', password: 'right-pw' } });
      const wrong = await connectError(`nats://alice:wrong-pw@127.0.0.1:${auth.port}`);
      expect(wrong).toBeInstanceOf(ConfigError);
      expect((wrong as ConfigError).setting).toBe('broker');
      expect(String(wrong)).toMatch(/authorization violation/i);
      expect(String(wrong)).not.toContain('wrong-pw');
      const { broker } = fresh(`nats://alice:right-pw@127.0.0.1:${auth.port}`);
      await broker.connect();
      expect(await broker.publish([message()])).toEqual([{ ok: true }]);
    });
  });

  it('percent-encodes per the CloudEvents NATS binding', () => {
    expect(headerValue('Euro € 😀')).toBe('Euro%20%E2%82%AC%20%F0%9F%98%80');
    expect(headerValue('a\r\nb')).toBe('a%0D%0Ab');
    expect(headerValue('2026-11-27T10:00:00.000Z')).toBe('2026-11-27T10:00:00.000Z');
  });
});
