/**
 * A service bundled into files of its own (as esbuild, rollup or webpack make them for a
 * container image) runs where no node_modules is: the migrations travel inside the code,
 * the broker client bundled with it is found though nothing of it is on disk, and a
 * CommonJS bundle (no import.meta) loads. Bundled here with rolldown, as ESM (with the
 * broker client in a chunk of its own, imported on connect) and as CommonJS, from the
 * built dist/ (`npm test` builds first); run from a directory outside the repository.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { deleteStream } from './helpers/nats-consumer.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const NATS = 'nats://127.0.0.1:4222';
const dir = mkdtempSync(join(tmpdir(), 'edupulse-bundle-'));
const streams: string[] = [];
let t: TestSchema;

beforeAll(async () => {
  t = await createPgTestSchema('bundle', { migrate: false });
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  for (const stream of streams) await deleteStream(NATS, stream);
  await t?.drop();
});

/** The service: migrates, enqueues, publishes to NATS; loads the consumer and metrics entries. */
const service = (dist: string) => `
import { brokerFromUrl, createDispatcher, createOutbox, LessonPublished, migrate, pgDatabase } from ${JSON.stringify(`${dist}/index.js`)};
import { consume } from ${JSON.stringify(`${dist}/consumer/index.js`)};
import { dispatcherMetrics } from ${JSON.stringify(`${dist}/ops/index.js`)};

async function main() {
  const { DATABASE_URL, SCHEMA, STREAM } = process.env;
  const db = pgDatabase({ connectionString: DATABASE_URL });
  await migrate(db, SCHEMA);
  const outbox = createOutbox({ schema: SCHEMA });
  await db.transaction((tx) =>
    outbox.enqueue(tx, LessonPublished.create({
      lesson_id: crypto.randomUUID(), author_id: crypto.randomUUID(), title: 'Cells',
      published_at: '2026-12-07T09:30:00Z',
    })),
  );
  const broker = brokerFromUrl(${JSON.stringify(NATS)} + '?stream=' + STREAM + '&subject_prefix=' + STREAM.toLowerCase(), { source: 'bundle' });
  const dispatcher = createDispatcher({ db, schema: SCHEMA, broker, logger: false });
  const published = await dispatcher.drain();
  await dispatcher.stop();
  await db.close();
  console.log(JSON.stringify({ published, entries: [typeof consume, typeof dispatcherMetrics] }));
}
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
`;

it.each(['esm', 'cjs'] as const)(
  'a %s bundle runs with no node_modules beside it',
  async (format) => {
    expect(existsSync(join(ROOT, 'dist/index.js')), 'dist/ is built (npm run build)').toBe(true);
    const entry = join(dir, `service-${format}.mjs`);
    writeFileSync(entry, service(join(ROOT, 'dist')));
    const out = join(dir, `out-${format}`);
    const ext = format === 'cjs' ? 'cjs' : 'mjs';
    const bundle = await rolldown({ input: entry, platform: 'node', logLevel: 'silent' });
    try {
      await bundle.write({
        dir: out,
        format,
        entryFileNames: `main.${ext}`,
        chunkFileNames: `[name]-[hash].${ext}`,
      });
    } finally {
      await bundle.close();
    }
    const stream = `BUNDLE_${format.toUpperCase()}_${randomBytes(4).toString('hex').toUpperCase()}`;
    streams.push(stream);
    const run = spawnSync(process.execPath, [join(out, `main.${ext}`)], {
      cwd: dir,
      env: { PATH: process.env.PATH, DATABASE_URL: PG_URL, SCHEMA: t.schema, STREAM: stream },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ published: 1, entries: ['function', 'function'] });
    const { rows } = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${t.schema}".outbox`,
    );
    expect(rows[0]?.n).toBe(0);
  },
);
