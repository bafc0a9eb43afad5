// The worker thread of a latency measurement (see latency.ts): starts the publisher the
// main thread named, records when each event was acknowledged, and on the main thread's
// word waits for the last acknowledgements, stops the publisher and sends the record.
import { parentPort, workerData } from 'node:worker_threads';
import { nowMs, type PublisherSpec, type StartLatencyPublisher } from './latency.js';

const port = parentPort;
if (!port) throw new Error('latency-worker.js runs as a worker thread');
const spec = workerData as PublisherSpec<unknown>;

const ids: string[] = [];
const times: number[] = [];
const seen = new Set<string>();
let onAck = () => {};

const { startLatencyPublisher } = (await import(spec.module)) as {
  startLatencyPublisher: StartLatencyPublisher<unknown>;
};
const stop = await startLatencyPublisher(spec.options, (id) => {
  times.push(nowMs());
  ids.push(id);
  seen.add(id);
  onAck();
});
port.postMessage({ type: 'ready' });

port.once('message', async ({ expected, graceMs }: { expected: number; graceMs: number }) => {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, graceMs);
    onAck = () => {
      if (seen.size < expected) return;
      clearTimeout(timer);
      resolve();
    };
    onAck();
  });
  await stop();
  port.postMessage({ type: 'acks', ids, times });
});
