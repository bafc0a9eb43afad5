import { setTimeout as sleep } from 'node:timers/promises';
import { type BenchContext, round, type Scenario, secondsSince } from '../context.js';
import { DispatcherProcess, waitUntilEmpty } from '../process.js';

interface MemoryDrain {
  backlog: number;
  /** VmHWM of the dispatcher process: its resident set at its largest, start-up included. */
  peakRssMb: number;
  /** From spawning the process until the outbox is empty. */
  seconds: number;
}

/** One `run` process drains `backlog` events; its memory is sampled every 100 ms. */
async function drainMeasured(bench: BenchContext, backlog: number): Promise<MemoryDrain> {
  return bench.withSchema(async (db, schema) => {
    await bench.fill(db, schema, backlog);
    const started = process.hrtime.bigint();
    const dispatcher = new DispatcherProcess(bench.settings.databaseUrl, schema);
    let peakRssMb = 0;
    let draining = true;
    const sample = async () => {
      const memory = await dispatcher.memory();
      // VmHWM is the kernel's own high-water mark, so a peak between samples counts too.
      if (memory) peakRssMb = Math.max(peakRssMb, memory.peakMb, memory.rssMb);
    };
    const sampler = (async () => {
      while (draining) {
        await sample();
        await sleep(100);
      }
    })();
    try {
      // Counting a million rows is a scan: every 500 ms keeps it out of the way.
      await waitUntilEmpty(db, schema, backlog, {
        intervalMs: 500,
        onPoll: () => dispatcher.assertRunning(),
      });
      const seconds = secondsSince(started);
      draining = false;
      await sampler;
      await sample();
      await dispatcher.stop();
      return { backlog, peakRssMb, seconds };
    } finally {
      draining = false;
      dispatcher.kill();
    }
  });
}

/**
 * Peak resident memory of a `run` process (log broker into /dev/null) draining a large
 * backlog, and a backlog 4× smaller in the same run: the dispatcher holds one batch at a
 * time, so its memory must not depend on how much waits in the outbox.
 */
export const memoryDrain: Scenario = {
  names: ['memory-drain'],
  async run(bench) {
    const backlog = bench.settings.quick ? 200_000 : 1_000_000;
    const smallBacklog = backlog / 4;
    const results: MemoryDrain[] = [];
    for (const size of [smallBacklog, backlog]) {
      bench.log(`memory-drain: one dispatcher process draining ${size}`);
      const result = await drainMeasured(bench, size);
      bench.log(
        `memory-drain: ${size} in ${result.seconds.toFixed(1)} s, peak RSS ${result.peakRssMb.toFixed(1)} MB`,
      );
      results.push(result);
    }
    const [small, large] = results as [MemoryDrain, MemoryDrain];
    // "Not growing": 4× the backlog may cost at most a quarter more, plus 10 MB for the
    // heap's own jitter (V8 sizes its generations by allocation rate, not by need). A
    // dispatcher that kept per-event state would grow about 4×. The heap keeps growing
    // towards its steady size over the first 100,000–150,000 events, so with --quick
    // (50,000 against 200,000) the check sits at the edge; the full run's pair is past it.
    const growthLimitMb = small.peakRssMb * 1.25 + 10;
    return [
      {
        name: 'memory-drain',
        backlog,
        peak_rss_mb: round(large.peakRssMb, 1),
        small_backlog: smallBacklog,
        peak_rss_mb_small_backlog: round(small.peakRssMb, 1),
        // From spawning the process: start-up included.
        seconds_to_empty: round(large.seconds, 1),
        target: 'peak_rss_mb ≤ 200 and ≤ 1.25 × peak_rss_mb_small_backlog + 10',
        met: large.peakRssMb <= 200 && large.peakRssMb <= growthLimitMb,
      },
    ];
  },
};
