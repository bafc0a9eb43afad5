/**
 * A RabbitMQ cluster that loses a node mid-drain: three private nodes in one cluster
 * (test/helpers/rabbitmq-cluster.ts), `run` given all three addresses, and the test's
 * reader on a quorum queue, which keeps a replica on every node and confirms a publish
 * only once a majority has it. The first listed node, which the dispatcher connects to and
 * which leads the queue, is killed (SIGKILL: nothing handed over) a third of the way
 * through the drain, the dispatcher paused meanwhile with batches in flight and resumed
 * at once; the two left elect a new leader, the dispatcher connects to a node still
 * listed alive, and the batches whose confirms did not arrive are published again. The
 * reader, on the second node, stays connected through it all: every event arrives, each
 * walk's steps in order.
 *
 * The dispatcher retries and reconnects after 5–10 ms (`--retry-base-delay-ms 10`), so its
 * new channel publishes to the queue before the cluster has recorded the new leader. On
 * RabbitMQ up to 3.12 such a channel has every publish to the queue nacked for as long as
 * it stays open; the dispatcher replaces a channel after a nack, and this test failed (the
 * outbox stopped shrinking) while it did not. Retries stay at most a second apart and
 * many (`--retry-max-delay-ms 1000 --max-attempts 100`): until the new leader is recorded,
 * each is nacked again.
 *
 * Duplicates are counted and printed, not required to be 0: what the killed node had taken
 * into the queue without its confirm reaching the dispatcher is published again
 * (at-least-once; a consumer's inbox drops it by event id).
 */
import { expect, it } from 'vitest';
import { consumeExchange, testExchange } from '../helpers/amqp.js';
import {
  clusterDrainFixture,
  DRAIN_EVENTS,
  finishDrain,
  outboxRows,
  pauseAfterAThird,
  printDrainSummary,
  startDrain,
  summarizeDrain,
} from '../helpers/cluster-drain.js';
import { startRabbitCluster } from '../helpers/rabbitmq-cluster.js';
import type { RabbitNode } from '../helpers/rabbitmq-node.js';
import { waitFor } from '../helpers/wait.js';

const USER = 'outbox';
const PASSWORD = 'Rabbit-Cluster-5b8e21';
/**
 * The most events that can settle after the kill without a publish after it: startDrain's
 * batches of 200, times the dispatcher's default 2 batches in flight.
 */
const SETTLING_AT_KILL = 200 * 2;

// Three Erlang VMs booting at once on 2 cores, then two joins one after the other.
const fixture = clusterDrainFixture(
  'amqp_cluster',
  () => startRabbitCluster(3, { user: USER, password: PASSWORD }),
  300_000,
);

/** The queue's type, leader and members, as `node` says. */
async function queueState(node: RabbitNode, queue: string) {
  const queues = JSON.parse(
    await node.ctl(['list_queues', 'name', 'type', 'leader', 'members', '--formatter', 'json']),
  ) as { name: string; type: string; leader: string; members: string[] }[];
  const state = queues.find((q) => q.name === queue);
  if (!state) throw new Error(`queue ${queue} not listed`);
  return state;
}

/** The listener ports the dispatcher's connections are on, cluster-wide, as `node` says. */
async function dispatcherPorts(node: RabbitNode): Promise<number[]> {
  const connections = JSON.parse(
    await node.ctl(['list_connections', 'port', 'client_properties', '--formatter', 'json']),
  ) as { port: number; client_properties: [string, string, unknown][] }[];
  return connections
    .filter((connection) =>
      connection.client_properties.some(
        ([key, , value]) =>
          key === 'connection_name' && String(value).startsWith('edupulse-outbox'),
      ),
    )
    .map((connection) => connection.port);
}

it('loses the node the dispatcher publishes through, the quorum queue leader, mid-drain: 0 lost, 0 out of order', async () => {
  const { t, cluster } = fixture;
  const [first, second, third] = cluster.nodes as [RabbitNode, RabbitNode, RabbitNode];
  const exchange = testExchange();
  const reader = await consumeExchange(exchange, '#', second.url, {
    quorum: { leaderUrl: first.url },
  });
  try {
    const queue = `${exchange}.quorum`;
    const before = await queueState(second, queue);
    expect(before).toMatchObject({ type: 'quorum', leader: first.name });
    expect(before.members).toHaveLength(3);

    const run = await startDrain(t, `amqp://${cluster.hosts}/?exchange=${exchange}`, [
      '--retry-base-delay-ms',
      '10',
      '--retry-max-delay-ms',
      '1000',
      '--max-attempts',
      '100',
    ]);
    // Paused a third of the way: rabbitmqctl takes seconds to answer, in which the
    // dispatcher would otherwise publish nearly all the rest through the first node.
    await pauseAfterAThird(run, t);
    // The first listed node answers first.
    expect(await dispatcherPorts(second)).toEqual([first.port]);
    const left = await outboxRows(t);
    expect(left).toBeGreaterThan(SETTLING_AT_KILL);
    const stoppedAt = Date.now();
    await first.kill();
    run.child.kill('SIGCONT');

    // Recovery: from the kill until the outbox shrinks by more than could have been
    // confirmed before it, so through another node.
    let recoveredAt = 0;
    await run.waitFor(
      'the outbox shrinking through another node',
      async () => {
        if ((await outboxRows(t)) < left - SETTLING_AT_KILL) {
          recoveredAt = Date.now();
          return true;
        }
        return false;
      },
      60_000,
    );
    const [now] = await dispatcherPorts(second);
    expect([second.port, third.port]).toContain(now);
    await finishDrain(run, t);

    const distinct = () => new Set(reader.received.map((message) => message.dedupId)).size;
    await waitFor('every event read back', () => distinct() >= DRAIN_EVENTS, {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    const after = await queueState(second, queue);
    expect(after.leader).not.toBe(first.name);
    expect(after.members).toContain(after.leader);

    // In the order the queue delivered them (a walk's events all go to the one queue).
    const summary = summarizeDrain(
      reader.received.map((message) => ({ id: message.dedupId, body: message.body })),
      recoveredAt - stoppedAt,
    );
    printDrainSummary(summary);
    const nacked = run.stderr.split('\n').filter((line) => line.includes('nacked by the server'));
    console.log(`publish rounds with nacks after the kill: ${nacked.length}`);
    expect(summary).toMatchObject({ lost: 0, outOfOrder: 0 });
  } finally {
    await reader.close();
  }
}, 300_000);
