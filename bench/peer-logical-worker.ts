// The peer's logical-replication listener for peer-logical, in a worker thread of its own
// (see scenarios/peer.ts): it reads the slot faster than it publishes and keeps what it
// has read on its heap, so it runs under a heap limit that ends this worker, not the run.
// Posts {type: 'progress'} while it drains and {type: 'done'} once every event is
// acknowledged or its time is up.
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { secondsSince } from './context.js';
import { type PeerReplicationWork, startPeerReplication } from './scenarios/peer.js';

const port = parentPort;
if (!port) throw new Error('peer-logical-worker.js runs as a worker thread');
const work = workerData as PeerReplicationWork;

/** How often the main thread hears how far the peer got (all it has if the worker dies). */
const PROGRESS_MS = 250;

// A rejection the peer leaves unhandled is counted, as the main thread counts them.
let unhandled = 0;
process.on('unhandledRejection', () => {
  unhandled++;
});

let heapMb = 0;
const acked = new Set<string>();
const status = () => {
  heapMb = Math.max(heapMb, getHeapStatistics().used_heap_size / 2 ** 20);
  return { acked: acked.size, heapMb: Math.round(heapMb) };
};
const started = process.hrtime.bigint();
port.postMessage({ type: 'started' });
const progress = setInterval(
  () => port.postMessage({ type: 'progress', ...status() }),
  PROGRESS_MS,
);
let stopListener: (() => Promise<void>) | undefined;
// A listener that fails to start ends the worker with its error, which the main thread reports.
const seconds = await new Promise<number>((resolve, reject) => {
  const timer = setTimeout(() => resolve(secondsSince(started)), work.limitS * 1000);
  startPeerReplication(work, (id) => {
    acked.add(id);
    if (acked.size !== work.count) return;
    clearTimeout(timer);
    resolve(secondsSince(started));
  }).then((stop) => {
    stopListener = stop;
  }, reject);
});
clearInterval(progress);
port.postMessage({ type: 'done', seconds, unhandled, ...status() });
await stopListener?.();
