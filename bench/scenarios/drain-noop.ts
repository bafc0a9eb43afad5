import { createDispatcher } from 'edupulse-outbox';
import pg from 'pg';
import { noopBroker, per1000, round, type Scenario, secondsSince } from '../context.js';
import { cpuMeter } from '../cpu.js';
import { quoteSchema } from '../schema.js';

/** The reference: one connection, DELETE … FOR UPDATE SKIP LOCKED … RETURNING, batch 1000. */
async function rawDrain(url: string, schema: string) {
  const client = new pg.Client({ connectionString: url, application_name: 'edupulse-bench-raw' });
  await client.connect();
  const table = `${quoteSchema(schema)}.outbox`;
  try {
    const cpu = await cpuMeter(url, 'edupulse-bench-raw');
    const started = process.hrtime.bigint();
    let drained = 0;
    for (;;) {
      const { rowCount } = await client.query(
        `DELETE FROM ${table} WHERE seq IN (
           SELECT seq FROM ${table} ORDER BY seq LIMIT 1000 FOR UPDATE SKIP LOCKED)
         RETURNING id, aggregate_type, aggregate_id, event_type, payload::text, headers::text, occurred_at`,
      );
      if (!rowCount) break;
      drained += rowCount;
    }
    const seconds = secondsSince(started);
    return { drained, seconds, cpu: await cpu.stop() };
  } finally {
    await client.end();
  }
}

/**
 * Drains a backlog with a started dispatcher (as `run` drives it, batch 1000) into a
 * broker that does nothing, and measures in the same run a raw SQL drain of the same
 * backlog: the dispatcher's own cost against the database's limit.
 */
export const drainNoop: Scenario = {
  names: ['drain-noop'],
  async run(bench) {
    const backlog = bench.backlog;
    bench.log(`drain-noop: raw SQL drain of ${backlog}`);
    const reference = await bench.withSchema(async (db, schema) => {
      await bench.fill(db, schema, backlog);
      return rawDrain(bench.settings.databaseUrl, schema);
    });
    bench.log(`drain-noop: dispatcher drain of ${backlog}`);
    const ours = await bench.withSchema(async (db, schema) => {
      await bench.fill(db, schema, backlog);
      const dispatcher = createDispatcher({
        db,
        schema,
        broker: noopBroker(),
        batchSize: 1000,
        logger: false,
      });
      const done = new Promise<void>((resolve) =>
        dispatcher.on('batch', () => dispatcher.stats.published >= backlog && resolve()),
      );
      const cpu = await cpuMeter(bench.settings.databaseUrl, 'edupulse-bench');
      const started = process.hrtime.bigint();
      await dispatcher.start();
      await done;
      const seconds = secondsSince(started);
      const used = await cpu.stop();
      await dispatcher.stop();
      return { drained: dispatcher.stats.published, seconds, cpu: used };
    });
    if (ours.drained !== backlog || reference.drained !== backlog) {
      throw new Error(`drain-noop drained ${ours.drained} and ${reference.drained} of ${backlog}`);
    }
    const events_per_s = Math.round(backlog / ours.seconds);
    const reference_events_per_s = Math.round(backlog / reference.seconds);
    const ratio = round(events_per_s / reference_events_per_s);
    const postgresMs = per1000(ours.cpu.postgres_cpu_ms, backlog);
    // Where the cycles go: CPU per 1,000 events in this process and in the server.
    return [
      {
        name: 'drain-noop',
        backlog,
        batch_size: 1000,
        events_per_s,
        reference_events_per_s,
        ratio,
        node_cpu_ms_per_1000: per1000(ours.cpu.node_cpu_ms, backlog),
        postgres_cpu_ms_per_1000: postgresMs,
        reference_node_cpu_ms_per_1000: per1000(reference.cpu.node_cpu_ms, backlog),
        reference_postgres_cpu_ms_per_1000: per1000(reference.cpu.postgres_cpu_ms, backlog),
        target: 'ratio ≥ 0.6, postgres_cpu_ms_per_1000 ≤ 10',
        met: ratio >= 0.6 && postgresMs !== undefined && postgresMs <= 10,
      },
    ];
  },
};
