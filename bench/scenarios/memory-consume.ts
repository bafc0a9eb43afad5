import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { brokerFromUrl, redactUrl } from 'edupulse-outbox';
import {
  type BenchContext,
  errorMessage,
  perTarget,
  round,
  type ScenarioResult,
} from '../context.js';
import { type ConsumeTarget, consumeTargets, publishBacklog } from './consume-inbox.js';

const worker = fileURLToPath(new URL('../consume-worker.js', import.meta.url));
/** A worker that has not received its backlog by then has stalled. */
const workerTimeoutMs = 10 * 60_000;

interface WorkerRun {
  seconds: number;
  peakMb: number;
}

/** One consume() process receiving `count` events from `url`, its memory measured by itself. */
function runWorker(
  bench: BenchContext,
  url: string,
  consumer: string,
  count: number,
  schema: string,
): Promise<WorkerRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [worker, url, consumer, String(count), bench.settings.databaseUrl, schema],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-4096);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), workerTimeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`consume worker exited with ${code ?? signal}: ${stderr.trim()}`));
        return;
      }
      resolve(JSON.parse(stdout) as WorkerRun);
    });
  });
}

/** A backlog of `count` published to names of its own, then received by one worker. */
async function oneBacklog(
  bench: BenchContext,
  target: ConsumeTarget,
  name: string,
  count: number,
): Promise<WorkerRun | { skipped: string }> {
  const tag = randomBytes(4).toString('hex');
  const consumer = `bench-${tag}-memory`;
  const baseUrl = target.baseUrl(bench);
  const url = `${baseUrl}${baseUrl.includes('?') ? '&' : '?'}${target.query(tag)}`;
  const broker = brokerFromUrl(url, { source: '/edupulse-bench' });
  try {
    await broker.connect();
    await target.prepare?.(baseUrl, tag, [consumer]);
  } catch (error) {
    await broker.close().catch(() => {});
    await target.cleanup(baseUrl, tag, [consumer]).catch(() => {});
    return { skipped: `${redactUrl(baseUrl)} not reachable: ${errorMessage(error)}` };
  }
  try {
    bench.log(`${name}: publishing ${count} events`);
    await publishBacklog(broker, count);
    bench.log(`${name}: one consume() process receiving them`);
    return await bench.withSchema((_db, schema) => runWorker(bench, url, consumer, count, schema));
  } finally {
    await target
      .cleanup(baseUrl, tag, [consumer])
      .catch((error) => bench.log(`${name}: cleanup failed: ${errorMessage(error)}`));
  }
}

/**
 * Peak resident memory of a process receiving a large backlog through `consume()`, and a
 * backlog 4× smaller in the same run: `maxInFlight` bounds what it holds, so its memory
 * should not follow what waits at the broker. The handler does nothing, so what is
 * measured is the consumer and its broker client.
 */
export const memoryConsume = perTarget(
  consumeTargets.map((target) => ({
    ...target,
    name: target.name.replace('consume-inbox', 'memory-consume'),
  })),
  async (bench, target): Promise<ScenarioResult> => {
    const backlog = bench.settings.quick ? 100_000 : 400_000;
    const small = await oneBacklog(bench, target, target.name, backlog / 4);
    if ('skipped' in small) return { name: target.name, skipped: small.skipped };
    const large = await oneBacklog(bench, target, target.name, backlog);
    if ('skipped' in large) return { name: target.name, skipped: large.skipped };
    return {
      name: target.name,
      backlog,
      peak_rss_mb: round(large.peakMb),
      events_per_s: Math.round(backlog / large.seconds),
      reference_backlog: backlog / 4,
      reference_peak_rss_mb: round(small.peakMb),
      reference_events_per_s: Math.round(backlog / 4 / small.seconds),
      // As memory-drain's "not growing".
      target: 'peak_rss_mb ≤ 1.25 × reference_peak_rss_mb + 10',
      met: large.peakMb <= 1.25 * small.peakMb + 10,
    };
  },
);
