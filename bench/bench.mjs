#!/usr/bin/env node
// Benchmarks, measured side by side in one run on this machine. Prints a table and writes
// bench/results/latest.json. Scenarios so far: drain-noop (the dispatcher draining a
// backlog to a broker that does nothing, against a raw SQL drain of the same backlog).
//
//   npm run bench              full: 200,000 events
//   npm run bench -- --quick   50,000 events
//
// Needs a PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test);
// each scenario works in a schema of its own, dropped afterwards.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import pg from 'pg';
import { createDispatcher, migrate, pgDatabase } from '../dist/index.js';

const quick = process.argv.includes('--quick');
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const backlog = quick ? 50_000 : 200_000;

/** A broker that accepts everything and sends nothing: the dispatcher's own cost. */
const noopBroker = {
  name: 'noop',
  async connect() {},
  async publish(batch) {
    return batch.map(() => ({ ok: true }));
  },
  async close() {},
};

async function withSchema(run) {
  const schema = `bench_${randomBytes(4).toString('hex')}`;
  const db = pgDatabase({ connectionString: url, applicationName: 'edupulse-bench' });
  try {
    await migrate(db, schema);
    return await run(db, schema);
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.close();
  }
}

async function fill(db, schema, count) {
  await db.query(
    `INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT 'lesson', 'lesson-' || (i % 10000), 'lesson-published',
            json_build_object('lesson_id', 'lesson-' || (i % 10000), 'title', 'Fractions', 'n', i)
     FROM generate_series(1, $1) AS i`,
    [count],
  );
  await db.query(`VACUUM ANALYZE "${schema}".outbox`);
}

/** The reference: one connection, DELETE … FOR UPDATE SKIP LOCKED … RETURNING, batch 1000. */
async function rawDrain(schema) {
  const client = new pg.Client(url);
  await client.connect();
  const started = process.hrtime.bigint();
  let drained = 0;
  for (;;) {
    const { rowCount } = await client.query(
      `DELETE FROM "${schema}".outbox WHERE seq IN (
         SELECT seq FROM "${schema}".outbox ORDER BY seq LIMIT 1000 FOR UPDATE SKIP LOCKED)
       RETURNING id, aggregate_type, aggregate_id, event_type, payload::text, headers::text, occurred_at`,
    );
    if (!rowCount) break;
    drained += rowCount;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await client.end();
  return { drained, seconds };
}

async function drainNoop() {
  const reference = await withSchema(async (db, schema) => {
    await fill(db, schema, backlog);
    return rawDrain(schema);
  });
  const ours = await withSchema(async (db, schema) => {
    await fill(db, schema, backlog);
    // The running loop, as `run` drives it (start() includes joining the partitions).
    const dispatcher = createDispatcher({ db, schema, broker: noopBroker, batchSize: 1000 });
    const started = process.hrtime.bigint();
    const done = new Promise((resolve) =>
      dispatcher.on('batch', () => dispatcher.stats.published >= backlog && resolve()),
    );
    await dispatcher.start();
    await done;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await dispatcher.stop();
    return { drained: dispatcher.stats.published, seconds };
  });
  if (ours.drained !== backlog || reference.drained !== backlog) {
    throw new Error(`drained ${ours.drained} and ${reference.drained} of ${backlog}`);
  }
  const events_per_s = Math.round(backlog / ours.seconds);
  const reference_events_per_s = Math.round(backlog / reference.seconds);
  return {
    name: 'drain-noop',
    backlog,
    batch_size: 1000,
    events_per_s,
    reference_events_per_s,
    ratio: Number((events_per_s / reference_events_per_s).toFixed(2)),
    target_ratio: 0.5,
  };
}

async function versions() {
  const client = new pg.Client(url);
  await client.connect();
  const { rows } = await client.query('SHOW server_version');
  await client.end();
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return {
    'edupulse-outbox': pkg.version,
    node: process.versions.node,
    postgresql: rows[0].server_version,
  };
}

const scenarios = [await drainNoop()];
const result = {
  machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB`,
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
  versions: await versions(),
  scenarios,
};
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('./results/latest.json', import.meta.url),
  `${JSON.stringify(result, null, 2)}\n`,
);
console.log(`| scenario | backlog | events/s | reference events/s | ratio | target |`);
console.log(`| --- | --- | --- | --- | --- | --- |`);
for (const s of scenarios) {
  console.log(
    `| ${s.name} | ${s.backlog} | ${s.events_per_s} | ${s.reference_events_per_s} | ${s.ratio} | ≥ ${s.target_ratio} |`,
  );
}
