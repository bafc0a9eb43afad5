/**
 * A NATS cluster that loses a node mid-drain: three private nats-servers in one JetStream
 * cluster, `run` given all three addresses and creating its stream with three replicas. The server that
 * leads the stream is killed (SIGKILL: nothing handed over) while the dispatcher publishes; a new leader takes over, the
 * client reconnects to a live member, and the batches in flight are published again under
 * their Nats-Msg-Id. Read back afterwards with an independent ordered consumer: every
 * event once, each walk's steps in order.
 */
import { randomUUID } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { expect, it } from 'vitest';
import {
  clusterDrainFixture,
  DRAIN_EVENTS,
  finishDrain,
  pauseAfterAThird,
  printDrainSummary,
  startDrain,
  summarizeDrain,
} from '../helpers/cluster-drain.js';
import { consumeStream, withConnection } from '../helpers/nats-consumer.js';
import { startNatsCluster } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';

const fixture = clusterDrainFixture('nats_cluster', () => startNatsCluster(3));

/** The stream's leader (n1, n2, n3) and how many messages it holds, as the cluster says. */
async function streamState(url: string, stream: string) {
  return withConnection(url, async (nc) => {
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    return {
      leader: info.cluster?.leader,
      messages: info.state.messages,
      replicas: info.config.num_replicas,
    };
  });
}

it('loses the stream leader mid-drain: 0 lost, 0 out of order, 0 duplicates past the dedup', async () => {
  const { t, cluster } = fixture;
  const stream = `CLUSTER_${randomUUID().slice(0, 8).toUpperCase()}`;
  const prefix = `cl${randomUUID().slice(0, 8)}`;
  // JetStream places a replicated stream once the cluster has elected its meta leader and
  // every member has joined: asked with a stream of the test's own, removed after.
  await waitFor(
    'a JetStream cluster that places a stream of 3 replicas',
    () =>
      withConnection(cluster.url, async (nc) => {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({
          name: `${stream}_READY`,
          subjects: [`${prefix}-ready`],
          num_replicas: 3,
        });
        await jsm.streams.delete(`${stream}_READY`);
        return true;
      }).catch(() => false),
    { timeoutMs: 30_000, intervalMs: 500 },
  );

  // The dispatcher creates the stream, with three replicas.
  const broker = `${cluster.url}?stream=${stream}&subject_prefix=${prefix}&replicas=3&timeout_ms=2000`;
  const run = await startDrain(t, broker);
  await pauseAfterAThird(run, t);
  const before = await streamState(cluster.url, stream);
  expect(before.replicas).toBe(3);
  expect(before.messages, 'events left to publish when the leader dies').toBeLessThan(DRAIN_EVENTS);
  const leader = cluster.byName(before.leader ?? '');
  expect(leader, `leader ${before.leader}`).toBeDefined();
  const stoppedAt = Date.now();
  await leader?.kill();
  run.child.kill('SIGCONT');
  const live = cluster.servers.filter((server) => server !== leader);
  const liveUrl = `nats://${live.map((server) => `127.0.0.1:${server.port}`).join(',')}`;

  // Recovery: from the stop until the stream grows again under a new leader. Usually
  // 5-20 s; but while there is no leader every PubAck times out (timeout_ms=2000) and each
  // event waits a longer retry delay after each failed attempt (1, 2, 4, 8, 16 … s), so an
  // election slowed by a busy machine can stretch it to a minute or more.
  let recoveredAt = 0;
  await run.waitFor(
    'the stream growing again under a new leader',
    async () => {
      const state = await streamState(liveUrl, stream).catch(() => undefined);
      if (state && state.leader !== before.leader && state.messages > before.messages) {
        recoveredAt = Date.now();
        return true;
      }
      return false;
    },
    180_000,
  );
  await finishDrain(run, t);

  // JetStream's API may still be settling after the election: ask until it answers.
  let reader: Awaited<ReturnType<typeof consumeStream>> | undefined;
  let stored = 0;
  await waitFor(
    'a reader of the stream',
    async () => {
      stored = (await streamState(liveUrl, stream).catch(() => undefined))?.messages ?? 0;
      reader = stored > 0 ? await consumeStream(liveUrl, stream).catch(() => undefined) : undefined;
      return reader !== undefined;
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  );
  if (!reader) throw new Error('no reader');
  await waitFor('the whole stream read back', () => (reader?.received.length ?? 0) >= stored, {
    timeoutMs: 30_000,
  });
  await reader.close();

  const summary = summarizeDrain(
    reader.received.map((message) => ({ id: message.attributes.id ?? '', body: message.body })),
    recoveredAt - stoppedAt,
  );
  printDrainSummary(summary);
  expect(summary).toMatchObject({ received: DRAIN_EVENTS, lost: 0, outOfOrder: 0, duplicates: 0 });
}, 300_000);
