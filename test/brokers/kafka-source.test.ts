import { execFileSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  Connection,
  Consumer,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  NetworkError,
} from '@platformatic/kafka';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { EventBroker, OutboxMessage } from '../../src/brokers/broker.js';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { PartitionOffsets } from '../../src/brokers/kafka/offsets.js';
import { readKafkaSourceSettings } from '../../src/brokers/kafka/settings.js';
import {
  createKafkaSource,
  sourceTopics,
  topicAggregateTypes,
} from '../../src/brokers/kafka/source.js';
import type { Delivery, MessageSource } from '../../src/brokers/source.js';
import { BrokerUrlParams, parseBrokerUrl } from '../../src/brokers/url-params.js';
import { BrokerUnavailableError, ConfigError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { deleteTestResources, testAdmin, uniqueName } from '../helpers/kafka.js';
import { outboxMessage } from '../helpers/messages.js';
import { waitFor } from '../helpers/wait.js';

const bootstrap = '127.0.0.1:9092';
const prefix = uniqueName('t-');
let tests = 0;

/** Topics and a group of one test's own: `<prefix>-<n>.{aggregate_type}`, `<prefix>-<n>-group`. */
function target(query = '') {
  const name = `${prefix}-${++tests}`;
  const url = `kafka://${bootstrap}/?topic=${name}.{aggregate_type}&timeout_ms=20000${query}`;
  return { name, url, group: `${name}-group` };
}

const sources: MessageSource[] = [];
const brokers: EventBroker[] = [];

function source(url: string, group: string, maxInFlight = 100): MessageSource {
  const params = new BrokerUrlParams(parseBrokerUrl(url, 'broker', 'a Kafka URL'), 'broker');
  const created = createKafkaSource(readKafkaSourceSettings(params), {
    consumer: group,
    maxInFlight,
    events: [{ type: 'lesson-published', aggregateType: 'lesson' }],
    logger: silentLogger,
  });
  params.assertNoneUnknown();
  sources.push(created);
  return created;
}

/** Starts `source`; what it delivers, and whether it reported losing its consumer. */
async function receive(started: MessageSource, autoAck = false) {
  const received = { deliveries: [] as Delivery[], lost: [] as Error[], autoAck };
  await started.start(
    (delivery) => {
      received.deliveries.push(delivery);
      if (received.autoAck) void delivery.ack();
    },
    (error) => received.lost.push(error),
  );
  return received;
}

async function publisher(url: string): Promise<EventBroker> {
  const broker = brokerFromUrl(url, { source: 'test' });
  brokers.push(broker);
  await broker.connect();
  return broker;
}

function message(aggregateId: string, payload: unknown): OutboxMessage {
  return outboxMessage({ aggregateId, payload: JSON.stringify(payload) });
}

/** Eight aggregates, spread over the partitions the same way in every run. */
const AGGREGATES = ['a-1', 'a-2', 'a-3', 'a-4', 'a-5', 'a-6', 'a-7', 'a-8'];

/** Publishes one event of each of AGGREGATES per call (a round), returning them. */
function roundsOf(broker: EventBroker) {
  return async (round: number) => {
    const batch = AGGREGATES.map((id) => message(id, { id, round }));
    expect(await broker.publish(batch)).toEqual(batch.map(() => ({ ok: true })));
    return batch;
  };
}

/** Publishes `count` events of one aggregate, one call each (as the dispatcher does). */
async function publishSeries(broker: EventBroker, count: number): Promise<OutboxMessage[]> {
  const sent: OutboxMessage[] = [];
  for (let n = 0; n < count; n++) {
    const next = message('only', { n });
    expect(await broker.publish([next])).toEqual([{ ok: true }]);
    sent.push(next);
  }
  return sent;
}

/** Closes a client of the test's own, leaving its group (the promise form takes no flag). */
const leave = (client: Consumer) =>
  new Promise<void>((resolve) => client.close(true, () => resolve()));
const ids = (deliveries: Delivery[]) => deliveries.map((d) => d.headers.ce_id);
const offset = (delivery: Delivery) => Number(delivery.origin.split('@')[1]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** The client's channel for each request it is about to write, and the API key of SyncGroup. */
const API_START = 'tracing:plt:kafka:connections:api:start';
const SYNC_GROUP = 14;
const HEARTBEAT = 12;

afterEach(async () => {
  for (const closing of sources.splice(0)) await closing.close();
  for (const broker of brokers.splice(0)) await broker.close();
});
afterAll(() => deleteTestResources(prefix, bootstrap), 60_000);

describe('kafka message source', () => {
  it('delivers CloudEvents headers and the body bytes intact, in order per partition', async () => {
    const { name, url, group } = target('&partitions=3');
    // Started before the first publish: the source creates the topic.
    const started = source(url, group);
    expect(started).toMatchObject({ binding: 'kafka', needsLease: false });
    expect(started.location).toBe(`kafka://${bootstrap}`);
    const received = await receive(started, true);
    const broker = await publisher(url);
    const aggregates = ['a-1', 'a-2', 'a-3', 'a-4', 'a-5', 'a-6'];
    const sent: OutboxMessage[] = [];
    for (let round = 0; round < 4; round++) {
      const batch = aggregates.map((id) => message(id, { id, round, text: 'héllo ✓ 🎓' }));
      expect(await broker.publish(batch)).toEqual(batch.map(() => ({ ok: true })));
      sent.push(...batch);
    }
    await waitFor('every message', () => received.deliveries.length === sent.length, {
      timeoutMs: 30_000,
    });
    const byId = new Map(sent.map((m) => [m.id, m]));
    const partitions = new Map<string, number[]>();
    const rounds = new Map<string, number[]>();
    for (const delivery of received.deliveries) {
      const original = byId.get(delivery.headers.ce_id ?? '');
      if (!original) throw new Error(`unexpected delivery ${delivery.origin}`);
      expect(delivery.headers).toMatchObject({
        ce_specversion: '1.0',
        ce_id: original.id,
        ce_type: 'lesson-published',
        ce_source: 'test',
        ce_subject: original.aggregateId,
        'content-type': 'application/json',
        ce_traceparent: original.headers.traceparent,
      });
      expect(delivery.contentType).toBe('application/json');
      expect(Buffer.from(delivery.body).equals(Buffer.from(original.payload, 'utf8'))).toBe(true);
      const match = /^kafka (\S+)\/(\d+)@(\d+)$/.exec(delivery.origin);
      expect(match?.[1]).toBe(`${name}.lesson`);
      const partition = match?.[2] ?? '';
      partitions.set(partition, [...(partitions.get(partition) ?? []), offset(delivery)]);
      const round = (JSON.parse(original.payload) as { round: number }).round;
      rounds.set(original.aggregateId, [...(rounds.get(original.aggregateId) ?? []), round]);
    }
    expect(new Set(received.deliveries.map((d) => d.headers.ce_id)).size).toBe(sent.length);
    for (const offsets of partitions.values()) {
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    }
    for (const id of aggregates) expect(rounds.get(id)).toEqual([0, 1, 2, 3]);
    await started.check();
    expect(received.lost).toEqual([]);
  });

  it('commits only the acked prefix: a new member gets everything from the first un-acked', async () => {
    const { url, group } = target('&partitions=1');
    const sent = await publishSeries(await publisher(url), 10);
    const first = source(url, group);
    const firstRun = await receive(first);
    await waitFor('ten messages', () => firstRun.deliveries.length === 10, { timeoutMs: 30_000 });
    expect(ids(firstRun.deliveries)).toEqual(sent.map((m) => m.id));
    // Done: 0-3 (a prefix) and 6, 8 (after a gap, so not committable yet).
    for (const index of [0, 1, 2, 3, 6, 8]) await firstRun.deliveries[index]?.ack();
    await first.close();
    await first.close();
    // Acks after close are ignored, not thrown.
    await firstRun.deliveries[4]?.ack();

    const second = source(url, group);
    const secondRun = await receive(second, true);
    await waitFor('the redelivery', () => secondRun.deliveries.length >= 6, { timeoutMs: 30_000 });
    await sleep(1_500);
    expect(ids(secondRun.deliveries)).toEqual(sent.slice(4).map((m) => m.id));
    expect(offset(secondRun.deliveries[0] as Delivery)).toBe(4);
    await second.close();

    // Everything was acked and close() committed it: a third member gets nothing.
    const third = source(url, group);
    const thirdRun = await receive(third, true);
    await sleep(2_000);
    expect(thirdRun.deliveries).toEqual([]);
  });

  it('holds at most maxInFlight messages un-acked, and delivers the rest as acks come', async () => {
    const { url, group } = target('&partitions=1');
    const sent = await publishSeries(await publisher(url), 20);
    const bounded = source(url, group, 5);
    const run = await receive(bounded);
    await waitFor('five messages', () => run.deliveries.length === 5, { timeoutMs: 30_000 });
    await sleep(2_000);
    expect(run.deliveries.length).toBe(5);

    // From now on each delivery is acked a little later, as a handler would. Between two
    // ticks deliveries only grow, so the count at a tick is the most outstanding since.
    const acked = new Set<Delivery>();
    let most = 0;
    const acking = setInterval(() => {
      most = Math.max(most, run.deliveries.length - acked.size);
      const next = run.deliveries.find((d) => !acked.has(d));
      if (next) {
        acked.add(next);
        void next.ack();
      }
    }, 5);
    try {
      await waitFor('all twenty', () => acked.size === 20, { timeoutMs: 30_000 });
    } finally {
      clearInterval(acking);
    }
    expect(most).toBeLessThanOrEqual(5);
    expect(ids(run.deliveries)).toEqual(sent.map((m) => m.id));
  });

  it('pause() stops deliveries; acks still work', async () => {
    const { url, group } = target('&partitions=1');
    const broker = await publisher(url);
    const paused = source(url, group);
    const run = await receive(paused, true);
    await publishSeries(broker, 3);
    await waitFor('three messages', () => run.deliveries.length === 3, { timeoutMs: 30_000 });
    await paused.pause();
    await publishSeries(broker, 3);
    await sleep(2_000);
    expect(run.deliveries.length).toBe(3);
    await paused.check();
    await paused.close();
    // The three delivered were acked and committed: the next member starts after them.
    const next = source(url, group);
    const nextRun = await receive(next, true);
    await waitFor('the other three', () => nextRun.deliveries.length === 3, { timeoutMs: 30_000 });
    expect(offset(nextRun.deliveries[0] as Delivery)).toBe(3);
  });

  it('survives a rebalance: acks of revoked partitions settle quietly, nothing is lost', async () => {
    const { url, group } = target('&partitions=4');
    const publishRound = roundsOf(await publisher(url));
    const sent = [...(await publishRound(0)), ...(await publishRound(1))];
    const first = source(url, group);
    const firstRun = await receive(first);
    await waitFor('the first rounds', () => firstRun.deliveries.length === sent.length, {
      timeoutMs: 30_000,
    });
    // A second member joins while the first holds everything un-acked: the group takes
    // some of the first one's partitions away.
    const second = source(url, group);
    const secondRun = await receive(second, true);
    for (const delivery of firstRun.deliveries) await delivery.ack();
    firstRun.autoAck = true;
    sent.push(...(await publishRound(2)));
    // A fetch of the first member's, sent before the rebalance, may still bring messages
    // of the partitions it lost: the new owner reads them too (at least once, not once).
    const seen = () => new Set(ids([...firstRun.deliveries, ...secondRun.deliveries]));
    await waitFor(
      'every message, and the second member reading',
      () => seen().size === sent.length && secondRun.deliveries.length > 0,
      { timeoutMs: 30_000 },
    );
    // Within one member, a partition fetched again after the rebalance is not redelivered.
    for (const run of [firstRun, secondRun]) {
      expect(new Set(ids(run.deliveries)).size).toBe(run.deliveries.length);
    }
    expect(firstRun.lost).toEqual([]);
    expect(secondRun.lost).toEqual([]);
    // The last acks committed while the group is stable (commits go every 100 ms): two
    // members leaving at the same instant may have their final commit refused by the
    // rebalance the other's leaving starts, and those messages come again (at least
    // once), which is not what this test is about.
    await sleep(1_000);
    await Promise.all([first.close(), second.close()]);
    // All acked and committed (or, for a revoked partition, redelivered to its new
    // owner, which acked it): a fresh member finds nothing left.
    const third = source(url, group);
    const thirdRun = await receive(third, true);
    await sleep(2_000);
    expect(thirdRun.deliveries).toEqual([]);
  });

  it('withdraws what a member had not done of the partitions a rebalance took: out of its bound, left to the new owner', async () => {
    const { url, group } = target('&partitions=4');
    const publishRound = roundsOf(await publisher(url));
    // The first round done and committed: only a partition committed on is withdrawn.
    const sent = await publishRound(0);
    const first = source(url, group, AGGREGATES.length);
    const firstRun = await receive(first, true);
    await waitFor('the first round', () => firstRun.deliveries.length === sent.length, {
      timeoutMs: 30_000,
    });
    await sleep(1_000);
    // The next one held un-acked: its bound full, it fetches nothing more.
    firstRun.autoAck = false;
    sent.push(...(await publishRound(1)));
    await waitFor('the second round', () => firstRun.deliveries.length === sent.length, {
      timeoutMs: 30_000,
    });
    const held = firstRun.deliveries.slice(AGGREGATES.length);
    const second = source(url, group);
    const secondRun = await receive(second, true);
    const withdrawn = () => held.filter((d) => d.withdrawn?.());
    await waitFor('the first member to lose partitions', () => withdrawn().length > 0, {
      timeoutMs: 30_000,
    });
    const partition = (d: Delivery) => d.origin.split('@')[0];
    const lost = new Set(withdrawn().map(partition));
    // Whole partitions, and the new owner receives what was withdrawn.
    for (const d of held) expect(d.withdrawn?.()).toBe(lost.has(partition(d)));
    await waitFor(
      'the new owner receiving what was withdrawn',
      () => {
        const theirs = new Set(ids(secondRun.deliveries));
        return withdrawn().every((d) => theirs.has(d.headers.ce_id));
      },
      { timeoutMs: 30_000 },
    );
    // Withdrawn messages left the bound: with the rest still un-acked, the first member
    // receives the next round's messages of the partitions it kept.
    const next = await publishRound(2);
    await waitFor(
      'the first member receiving again',
      () => firstRun.deliveries.length > sent.length,
      { timeoutMs: 30_000 },
    );
    expect(firstRun.deliveries.length - sent.length).toBeLessThanOrEqual(withdrawn().length);
    // Their acks change nothing; the others' are committed as before.
    for (const delivery of firstRun.deliveries) await delivery.ack();
    firstRun.autoAck = true;
    const seen = () => new Set(ids([...firstRun.deliveries, ...secondRun.deliveries]));
    await waitFor('every message', () => [...sent, ...next].every((m) => seen().has(m.id)), {
      timeoutMs: 30_000,
    });
    expect(firstRun.lost).toEqual([]);
    // The new owner leaves: the withdrawn partitions come back to the first member, which
    // reads them afresh from the commit, the next round included.
    await second.close();
    const last = await publishRound(3);
    await waitFor(
      'the first member receiving the last round, given-back partitions too',
      () => last.every((m) => ids(firstRun.deliveries).includes(m.id)),
      { timeoutMs: 30_000 },
    );
    expect(firstRun.deliveries.filter((d) => lost.has(partition(d))).length).toBeGreaterThan(
      withdrawn().length,
    );
    expect(firstRun.lost).toEqual([]);
    await first.close();
    const third = source(url, group);
    const thirdRun = await receive(third, true);
    await sleep(2_000);
    expect(thirdRun.deliveries).toEqual([]);
  });

  it('reports a consumer lost for good once; a new source then starts afresh', async () => {
    const { name, url, group } = target('&partitions=1');
    const broker = await publisher(url);
    await publishSeries(broker, 2);
    const doomed = source(url, group);
    const run = await receive(doomed, true);
    await waitFor('two messages', () => run.deliveries.length === 2, { timeoutMs: 30_000 });
    // The topic deleted under the consumer: its fetches fail for good.
    const admin = testAdmin(bootstrap);
    try {
      await admin.deleteTopics({ topics: [`${name}.lesson`] });
    } finally {
      await admin.close();
    }
    await waitFor('onLost', () => run.lost.length > 0, { timeoutMs: 30_000 });
    await sleep(1_000);
    expect(run.lost).toHaveLength(1);
    expect(run.lost[0]).toBeInstanceOf(BrokerUnavailableError);
    await doomed.close();
    // What the caller does next: a new source, which creates the topic again.
    const again = source(url, group);
    const againRun = await receive(again, true);
    const sent = await publishSeries(broker, 1);
    await waitFor('the new message', () => againRun.deliveries.length === 1, { timeoutMs: 30_000 });
    expect(ids(againRun.deliveries)).toEqual(sent.map((m) => m.id));
  });

  it('from=earliest: each partition it reads has an offset in the group from the start, before any ack', async () => {
    // Without one, a partition that moved to another member and came back was read on from
    // this member's old fetch position, and its old progress committed over the other's.
    const { name, url, group } = target('&partitions=3');
    const broker = await publisher(url);
    await publishSeries(broker, 4);
    const member = source(url, group);
    const run = await receive(member);
    await waitFor('the messages', () => run.deliveries.length === 4, { timeoutMs: 30_000 });
    const client = (member as unknown as { consumer: Consumer }).consumer;
    const committed = await client.listCommittedOffsets({
      topics: [{ topic: `${name}.lesson`, partitions: [0, 1, 2] }],
    });
    // Nothing acked: each at the start of its partition.
    expect(committed.get(`${name}.lesson`)).toEqual([0n, 0n, 0n]);
  });

  it('from=latest: a new group starts after what was published before it', async () => {
    const { url, group } = target('&partitions=1');
    const broker = await publisher(url);
    await publishSeries(broker, 3);
    const late = source(`${url}&from=latest`, group);
    const run = await receive(late, true);
    const sent = await publishSeries(broker, 2);
    await waitFor('the two new messages', () => run.deliveries.length >= 2, { timeoutMs: 30_000 });
    await sleep(500);
    expect(ids(run.deliveries)).toEqual(sent.map((m) => m.id));
  });

  it('from=latest: the start position holds for the next start, before anything was committed', async () => {
    // Three partitions, so that some have nothing to read at the first start.
    const { url, group } = target('&partitions=3');
    const broker = await publisher(url);
    await publishSeries(broker, 2);
    // Received and never acked (a process stopped, or killed, in its handlers).
    const first = await receive(source(`${url}&from=latest`, group));
    const unacked = await publishSeries(broker, 2);
    await waitFor('the first start to receive', () => first.deliveries.length === 2, {
      timeoutMs: 30_000,
    });
    await (sources.pop() as MessageSource).close();
    // Published while no process of the consumer ran.
    const whileDown = await roundsOf(broker)(0);
    const again = await receive(source(`${url}&from=latest`, group), true);
    const expected = [...unacked, ...whileDown].map((m) => m.id);
    await waitFor('the next start to receive them', () => again.deliveries.length >= 10, {
      timeoutMs: 30_000,
    });
    await sleep(500);
    expect(ids(again.deliveries).sort()).toEqual(expected.sort());
  });

  it('from=latest: a partition first given to it at a rebalance is pinned before it is read', {
    timeout: 90_000,
  }, async () => {
    const { name, url, group } = target('&partitions=1');
    const broker = await publisher(url);
    await publishSeries(broker, 1);
    // A member that commits nothing (an earlier release's) holds the only partition: it
    // joins first, so it leads the group and assigns every partition to itself.
    const earlier = new Consumer({
      clientId: 'a-earlier',
      groupId: group,
      bootstrapBrokers: [bootstrap],
      autocommit: false,
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      partitionAssigner: (leader, members, topics, metadata) =>
        [...members.keys()].map((memberId) => ({
          memberId,
          assignments: new Map(
            memberId !== leader
              ? []
              : [...topics].map((topic) => [
                  topic,
                  {
                    topic,
                    partitions: Array.from(
                      { length: metadata.topics.get(topic)?.partitionsCount ?? 0 },
                      (_, i) => i,
                    ),
                  },
                ]),
          ),
        })),
    });
    try {
      await earlier.consume({
        topics: [`${name}.lesson`],
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.LATEST,
        autocommit: false,
      });
      const member = source(`${url}&from=latest`, group);
      const first = await receive(member);
      const client = (member as unknown as { consumer: Consumer }).consumer;
      const assigned = () => client.assignments?.flatMap((a) => a.partitions) ?? [];
      expect(assigned()).toEqual([]);
      // It leaves: the partition is this member's at the rebalance, the group with no offset.
      await leave(earlier);
      await waitFor('the partition', () => assigned().length === 1, { timeoutMs: 30_000 });
      // Its start in the group: the stream pins at its 'offsets', which may come after the
      // assignment shows (a message published before would be before `latest`).
      const topic = `${name}.lesson`;
      await waitFor(
        'the start pinned',
        async () => {
          const committed = await client.listCommittedOffsets({
            topics: [{ topic, partitions: assigned() }],
          });
          return (committed.get(topic)?.[0] ?? -1n) >= 0n;
        },
        { timeoutMs: 30_000 },
      );
      await (member as unknown as { pinning: Promise<void> }).pinning;
      const unacked = await publishSeries(broker, 2);
      await waitFor('the messages', () => first.deliveries.length === 2, { timeoutMs: 30_000 });
      await (sources.pop() as MessageSource).close();
      const again = await receive(source(`${url}&from=latest`, group), true);
      await waitFor('them again', () => again.deliveries.length >= 2, { timeoutMs: 30_000 });
      expect(ids(again.deliveries)).toEqual(unacked.map((m) => m.id));
    } finally {
      await leave(earlier);
    }
  });

  it('goes on heartbeating after a heartbeat failed on the network: the group keeps the member', {
    timeout: 60_000,
  }, async () => {
    // The smallest session the broker allows: without heartbeats it is evicted in 6 s.
    const { url, group } = target();
    const member = source(`${url}&session_timeout_ms=6000`, group);
    const run = await receive(member, true);
    const broker = await publisher(url);
    // Heartbeats fail as when their connection drops (the client's own error for that),
    // through the client's retries, until it gives the heartbeat up: it stopped
    // heartbeating after such an error, for good.
    let failed = false;
    (member as unknown as { consumer: Consumer }).consumer.once('consumer:heartbeat:error', () => {
      failed = true;
    });
    const send = Connection.prototype.send;
    vi.spyOn(Connection.prototype, 'send').mockImplementation(function (
      this: Connection,
      ...args: Parameters<Connection['send']>
    ) {
      if (args[0] !== HEARTBEAT || failed) return send.apply(this, args);
      (args[6] as (error: Error) => void)(new NetworkError('connection closed (injected)'));
    });
    await waitFor('a heartbeat to fail', () => failed, { timeoutMs: 30_000 });
    vi.restoreAllMocks();
    // Two sessions on, the member is still in the group, and still receives.
    await sleep(12_000);
    const admin = testAdmin(bootstrap);
    try {
      const described = (await admin.describeGroups({ groups: [group] })).get(group);
      expect(described?.state).toBe('STABLE');
      expect(described?.members.size).toBe(1);
    } finally {
      await admin.close();
    }
    const sent = await publishSeries(broker, 1);
    await waitFor('the next message', () => run.deliveries.length === 1, { timeoutMs: 30_000 });
    expect(ids(run.deliveries)).toEqual(sent.map((m) => m.id));
    expect(run.lost).toEqual([]);
  });

  describe('group_instance_id (static membership)', () => {
    /** Ends a source's connections without leaving the group, as a killed process does. */
    async function vanish(member: MessageSource) {
      const client = (member as unknown as { consumer: Consumer }).consumer;
      // Without a member id the client skips its LeaveGroup.
      client.memberId = null;
      await client.close(true);
    }

    it('a member back under the same name takes its partitions at once, not after its session', async () => {
      // A dynamic member would wait for the vanished one's 60 s session to end.
      const { url, group } = target();
      const member = `${url}&group_instance_id=pod-0&session_timeout_ms=60000`;
      const first = await receive(source(member, group), true);
      const broker = await publisher(url);
      await publishSeries(broker, 3);
      await waitFor('the first member to receive', () => first.deliveries.length === 3, {
        timeoutMs: 30_000,
      });
      await vanish(sources[0] as MessageSource);
      const sent = await publishSeries(broker, 3);
      const began = Date.now();
      const again = await receive(source(member, group), true);
      await waitFor(
        'the member started again to receive',
        () => sent.every((m) => ids(again.deliveries).includes(m.id)),
        { timeoutMs: 40_000 },
      );
      expect(Date.now() - began).toBeLessThan(15_000);
      expect(again.lost).toEqual([]);
    });

    // Which of the two the group fences is the broker's choice: usually the first, but
    // when the first is told its member id is unknown (its rejoin raced the second's
    // join) the client joins again under the name and the second is fenced instead,
    // sometimes before its start has finished. On a loaded machine they can take the name
    // from each other a few times first; answers to requests made under a member id given
    // up since must not stop the process.
    it('a second live member under the same name: the group fences one out, lost with a ConfigError; the other goes on', {
      timeout: 120_000,
    }, async () => {
      const { url, group } = target();
      const member = `${url}&group_instance_id=pod-0`;
      const first = source(member, group);
      const firstRun = await receive(first, true);
      const broker = await publisher(url);
      await publishSeries(broker, 1);
      await waitFor('the first member to receive', () => firstRun.deliveries.length === 1, {
        timeoutMs: 30_000,
      });
      const second = source(member, group);
      // The first can take the name back between the second's join and its sync: then the
      // second's start is refused, as its loss would be.
      const secondRun = await receive(second, true).catch((error: Error) => ({
        deliveries: [] as Delivery[],
        lost: [error],
        autoAck: true,
      }));
      await publishSeries(broker, 1);
      const lostOne = () => firstRun.lost.length + secondRun.lost.length > 0;
      await waitFor('one of the two members to be lost', lostOne, { timeoutMs: 45_000 });
      const [fenced, fencedRun, otherRun] =
        firstRun.lost.length > 0 ? [first, firstRun, secondRun] : [second, secondRun, firstRun];
      expect(fencedRun.lost).toHaveLength(1);
      expect(fencedRun.lost[0]).toBeInstanceOf(ConfigError);
      expect(fencedRun.lost[0]?.message).toBe(
        `broker: group_instance_id="pod-0": another process joined consumer group "${group}" under the same name and the group fenced this one out; give each process its own group_instance_id`,
      );
      // The consumer closes a lost source; the other member keeps the partitions.
      await fenced.close();
      const later = await publishSeries(broker, 2);
      await waitFor(
        'the other member to receive what came after',
        () => later.every((m) => ids(otherRun.deliveries).includes(m.id)),
        { timeoutMs: 30_000 },
      );
      await sleep(3_000);
      expect(otherRun.lost).toEqual([]);
      expect(fencedRun.lost).toHaveLength(1);
    });

    // What the test above meets on a loaded machine now and then, made to happen: another
    // process takes the name while this one's start is between its join and its sync.
    it('a start fenced between its join and its sync is refused with the ConfigError, not retried as the broker away', {
      timeout: 60_000,
    }, async () => {
      const { url, group } = target();
      const starting = source(`${url}&group_instance_id=pod-0`, group);
      let rival = '';
      // Published before the request is written: the other process joins in between.
      const onRequest = (message: unknown) => {
        const { apiKey } = message as { apiKey: number };
        if (apiKey !== SYNC_GROUP || rival) return;
        rival = execFileSync(
          process.execPath,
          [
            fileURLToPath(new URL('../helpers/kafka-static-join.mjs', import.meta.url)),
            bootstrap,
            group,
            'pod-0',
          ],
          { encoding: 'utf8', timeout: 30_000 },
        );
      };
      diagnostics.subscribe(API_START, onRequest);
      const refused = await receive(starting).then(
        () => undefined,
        (error: unknown) => error,
      );
      diagnostics.unsubscribe(API_START, onRequest);
      expect(rival).not.toBe('');
      expect(refused).toBeInstanceOf(ConfigError);
      expect((refused as Error).message).toBe(
        `broker: group_instance_id="pod-0": another process joined consumer group "${group}" under the same name and the group fenced this one out; give each process its own group_instance_id`,
      );
    });

    it('refuses a name Kafka would refuse, naming the parameter', () => {
      expect(() => source(target('&group_instance_id=pod%200').url, 'g')).toThrow(
        new ConfigError(
          'broker',
          'group_instance_id="pod 0" is not valid (one to 249 letters, digits, ".", "_" or "-")',
        ),
      );
      expect(() => source(target('&group_instance_id=').url, 'g')).toThrow(ConfigError);
    });
  });

  it('start() rejects with BrokerUnavailableError when nothing listens', async () => {
    const unreachable = source('kafka://127.0.0.1:1/?timeout_ms=3000', 'nobody');
    const began = Date.now();
    await expect(receive(unreachable)).rejects.toBeInstanceOf(BrokerUnavailableError);
    expect(Date.now() - began).toBeLessThan(3_000 + 2_000);
    await expect(unreachable.check()).rejects.toBeInstanceOf(BrokerUnavailableError);
  });

  it('start() rejects with BrokerUnavailableError within timeout_ms when the server never answers', async () => {
    const silent: Server = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const mute = source(`kafka://127.0.0.1:${port}/?timeout_ms=2000`, 'nobody');
      const began = Date.now();
      const error = await receive(mute).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BrokerUnavailableError);
      expect((error as Error).message).toMatch(/^kafka:\/\/127\.0\.0\.1:\d+: /);
      expect(Date.now() - began).toBeLessThan(2_000 + 3_000);
    } finally {
      silent.close();
      // The client's sockets to it are closed by close(), in afterEach.
    }
  });

  it('subscribes one topic per aggregate type, or per event when the template names it', () => {
    const events = [
      { type: 'lesson-published', aggregateType: 'lesson' },
      { type: 'lesson-archived', aggregateType: 'lesson' },
      { type: 'quiz.graded', aggregateType: 'Course Module' },
    ];
    expect(sourceTopics('edupulse.{aggregate_type}', events)).toEqual([
      'edupulse.lesson',
      'edupulse.Course_Module',
    ]);
    expect(sourceTopics('e.{aggregate_type}.{event_type}', events)).toEqual([
      'e.lesson.lesson-published',
      'e.lesson.lesson-archived',
      'e.Course_Module.quiz.graded',
    ]);
  });

  it("tells a topic's aggregate type where only one aggregate type fills the template in to it", () => {
    const events = [
      { type: 'created', aggregateType: 'course' },
      { type: 'enrolled', aggregateType: 'student' },
      { type: 'a', aggregateType: 'x/y' },
      { type: 'b', aggregateType: 'x_y' },
    ];
    expect(Object.fromEntries(topicAggregateTypes('e.{aggregate_type}', events))).toEqual({
      'e.course': 'course',
      'e.student': 'student',
    });
    expect(topicAggregateTypes('events', events).size).toBe(0);
  });
});

describe('kafka partition offsets', () => {
  it('commits after the done prefix only, whatever order the acks come in', () => {
    const offsets = new PartitionOffsets('t', 0);
    for (const offset of [0n, 1n, 2n, 3n, 4n]) expect(offsets.deliver(offset)).toBe(true);
    offsets.ack(1n);
    offsets.ack(3n);
    expect(offsets.toCommit()).toBeUndefined();
    offsets.ack(0n);
    expect(offsets.toCommit()).toBe(2n);
    offsets.ack(2n);
    expect(offsets.toCommit()).toBe(4n);
    offsets.committedUpTo(4n);
    expect(offsets.toCommit()).toBeUndefined();
    offsets.ack(4n);
    expect(offsets.toCommit()).toBe(5n);
  });

  it('follows the offsets delivered, across gaps (compaction, transaction markers)', () => {
    const offsets = new PartitionOffsets('t', 0);
    for (const offset of [10n, 12n, 15n]) offsets.deliver(offset);
    offsets.ack(15n);
    offsets.ack(12n);
    expect(offsets.toCommit()).toBeUndefined();
    offsets.ack(10n);
    expect(offsets.toCommit()).toBe(16n);
  });

  it('refuses an offset delivered before (a fetch again from the committed offset)', () => {
    const offsets = new PartitionOffsets('t', 0);
    offsets.deliver(5n);
    offsets.deliver(6n);
    expect(offsets.deliver(5n)).toBe(false);
    expect(offsets.deliver(6n)).toBe(false);
    expect(offsets.deliver(7n)).toBe(true);
  });

  it('keeps its place over a long run of acks', () => {
    const offsets = new PartitionOffsets('t', 0);
    for (let n = 0n; n < 5_000n; n++) offsets.deliver(n);
    // Everything but the first done: nothing to commit until it is.
    for (let n = 1n; n < 5_000n; n++) offsets.ack(n);
    expect(offsets.toCommit()).toBeUndefined();
    offsets.ack(0n);
    expect(offsets.toCommit()).toBe(5_000n);
    for (let n = 5_000n; n < 7_000n; n++) {
      offsets.deliver(n);
      offsets.ack(n);
    }
    expect(offsets.toCommit()).toBe(7_000n);
  });
});
