/**
 * A Kafka cluster that loses a node mid-drain: three private KRaft nodes (each broker and
 * controller), a topic of three replicas with `min.insync.replicas=2`, `run` given all
 * three addresses. The node that leads the busiest partition is killed (SIGKILL: nothing
 * handed over) while the dispatcher publishes; the controllers elect new leaders from the
 * in-sync replicas, and the dispatcher's failed batches are published again. Read back
 * afterwards with an independent consumer: every event there, each walk's steps in order.
 *
 * Duplicates are counted and printed, not required to be 0 (measured: 60 to 380 in a
 * run, in every partition). A batch goes to all its partitions' leaders in one send,
 * which fails whole when one leader dies, and the dispatcher publishes the whole batch
 * again: what the live leaders had taken is written twice. And after a failed send the
 * dispatcher takes a new producer id (broker.ts, restartSequences), so records the dead
 * leader's followers had taken without an acknowledgement are written again under an id
 * the idempotence check cannot match. At-least-once allows both; a consumer's inbox drops
 * them by event id.
 */
import { expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { kafkaPartition } from '../../src/brokers/kafka/records.js';
import {
  clusterDrainFixture,
  DRAIN_EVENTS,
  finishDrain,
  pauseAfterAThird,
  printDrainSummary,
  startDrain,
  summarizeDrain,
} from '../helpers/cluster-drain.js';
import { consumeTestTopics, testAdmin, uniqueName } from '../helpers/kafka.js';
import { startKafkaCluster } from '../helpers/kafka-cluster.js';
import { outboxMessage } from '../helpers/messages.js';
import { waitFor } from '../helpers/wait.js';

const PARTITIONS = 6;

const fixture = clusterDrainFixture('kafka_cluster', () => startKafkaCluster(3), 240_000);

/** Each partition's leader and high watermark, as the cluster says (through `bootstrap`). */
async function topicState(bootstrap: string, topic: string) {
  const admin = testAdmin(bootstrap);
  try {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    const partitions = metadata.topics.get(topic)?.partitions ?? [];
    const [offsets] = await admin.listOffsets({
      topics: [
        {
          name: topic,
          partitions: partitions.map((_, partitionIndex) => ({ partitionIndex, timestamp: -1n })),
        },
      ],
    });
    const ends = new Map(
      (offsets?.partitions ?? []).map((p) => [p.partitionIndex, Number(p.offset)]),
    );
    return partitions.map((partition, index) => ({
      leader: partition.leader,
      replicas: partition.replicas.length,
      end: ends.get(index) ?? 0,
    }));
  } finally {
    await admin.close();
  }
}

const total = (state: { end: number }[]) => state.reduce((sum, p) => sum + p.end, 0);

it('loses the leader of the busiest partition mid-drain: 0 lost, 0 out of order', async () => {
  const { t, cluster } = fixture;
  const topic = uniqueName('cluster');
  const admin = testAdmin(cluster.bootstrap);
  try {
    await admin.createTopics({
      topics: [topic],
      partitions: PARTITIONS,
      replicas: 3,
      configs: [{ name: 'min.insync.replicas', value: '2' }],
    });
  } finally {
    await admin.close();
  }
  const broker = `kafka://${cluster.bootstrap}/?topic=${topic}&timeout_ms=5000`;
  const run = await startDrain(t, broker);
  await pauseAfterAThird(run, t);
  const before = await topicState(cluster.bootstrap, topic);
  expect(before.map((p) => p.replicas)).toEqual(Array(PARTITIONS).fill(3));
  expect(total(before), 'events left to publish when the leader dies').toBeLessThan(DRAIN_EVENTS);
  const busiest = before.reduce(
    (best, p, index) => (p.end > (before[best]?.end ?? -1) ? index : best),
    0,
  );
  const leaderId = before[busiest]?.leader ?? -1;
  const leader = cluster.byId(leaderId);
  expect(leader, `leader ${leaderId}`).toBeDefined();
  const stoppedAt = Date.now();
  await leader?.kill();
  run.child.kill('SIGCONT');
  const live = cluster.nodes
    .filter((node) => node !== leader)
    .map((node) => node.bootstrap)
    .join(',');

  // Recovery: from the kill until the busiest partition grows again under a new leader.
  let recoveredAt = 0;
  await run.waitFor(
    'the busiest partition growing again under a new leader',
    async () => {
      const state = await topicState(live, topic).catch(() => undefined);
      const partition = state?.[busiest];
      if (
        partition &&
        partition.leader !== leaderId &&
        partition.end > (before[busiest]?.end ?? 0)
      ) {
        recoveredAt = Date.now();
        return true;
      }
      return false;
    },
    60_000,
  );
  await finishDrain(run, t);

  const stored = total(await topicState(live, topic));
  const reader = consumeTestTopics([topic], uniqueName('cluster-reader'), live);
  // A reader that restarts reads some records again: each (partition, offset) counts once.
  const records = () => {
    const unique = new Map(reader.records.map((r) => [`${r.partition}:${r.offset}`, r]));
    return [...unique.values()];
  };
  await waitFor('the whole topic read back', () => records().length >= stored, {
    timeoutMs: 60_000,
    intervalMs: 200,
  });
  await reader.close();

  // In each partition's order (a walk stays in one partition: its key is the walk).
  const ordered = records().sort((a, b) =>
    a.partition !== b.partition ? a.partition - b.partition : Number(a.offset - b.offset),
  );
  const summary = summarizeDrain(
    ordered.map((record) => ({ id: record.headers.ce_id ?? '', body: record.value })),
    recoveredAt - stoppedAt,
  );
  printDrainSummary(summary);
  expect(summary.received).toBe(stored);
  expect(summary).toMatchObject({ lost: 0, outOfOrder: 0 });
}, 300_000);

// A send goes to every partition's leader at once; when one leader refuses its records,
// the client's error holds that leader's answer only, the others' written records in its
// `produced`. Those were reported failed and published again (duplicates, under a new
// producer id), and for as long as the leader kept refusing, dead-lettered in the end.
it("a record one leader refuses fails alone: the other leaders' records are published once", async () => {
  const { cluster } = fixture;
  const topic = uniqueName('refused');
  const partitions = 3;
  const admin = testAdmin(cluster.bootstrap);
  let leaders: number[];
  try {
    await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    leaders = (metadata.topics.get(topic)?.partitions ?? []).map((p) => p.leader);
  } finally {
    await admin.close();
  }
  // Two aggregates per partition; the oversized event is the first one's of partition 0.
  const ids: string[][] = Array.from({ length: partitions }, () => []);
  for (let n = 0; ids.some((list) => list.length < 2); n++) {
    const id = `walk-${n}`;
    const list = ids[kafkaPartition(id, partitions)];
    if (list && list.length < 2) list.push(id);
  }
  const bigLeader = leaders[0];
  expect(leaders.filter((leader) => leader !== bigLeader).length, 'leaders').toBeGreaterThan(0);
  const batch = ids.flat().map((aggregateId) =>
    outboxMessage({
      aggregateId,
      // Over the topic's max.message.bytes (1 MiB + 12 by default).
      payload: JSON.stringify({ blob: aggregateId === ids[0]?.[0] ? 'x'.repeat(1_100_000) : '' }),
    }),
  );
  const broker = brokerFromUrl(`kafka://${cluster.bootstrap}/?topic=${topic}&timeout_ms=5000`, {
    source: '/edupulse/test',
  });
  await broker.connect();
  try {
    const results = await broker.publish(batch);
    const refused = results.flatMap((result, i) => (result.ok ? [] : [batch[i]?.aggregateId]));
    expect(refused).toEqual([ids[0]?.[0]]);
  } finally {
    await broker.close();
  }
  const reader = consumeTestTopics([topic], uniqueName('refused-reader'), cluster.bootstrap);
  await waitFor('the published records', () => reader.records.length >= batch.length - 1, {
    timeoutMs: 30_000,
    intervalMs: 200,
  });
  await new Promise((resolve) => setTimeout(resolve, 500));
  await reader.close();
  expect(reader.records.map((record) => record.key).sort()).toEqual(
    ids
      .flat()
      .filter((id) => id !== ids[0]?.[0])
      .sort(),
  );
}, 120_000);
