/**
 * The package as npm users get it: `npm pack`, installed into a new app with only the
 * peers that app needs (zod, pg and the NATS client, at the versions the CLI and the
 * README give for this Node), type-checked strictly against the shipped declarations
 * (exactOptionalPropertyTypes, skipLibCheck off), and run: test/package/producer.ts
 * enqueues, its embedded dispatcher publishes to NATS JetStream on a stream of the test's
 * own, and a JetStream consumer reads the event back. Packs the built dist/ (`npm test`
 * builds first).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { optionalPeers } from '../src/common/peers.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { consumeStream, deleteStream, type NatsReceived } from './helpers/nats-consumer.js';
import { waitFor } from './helpers/wait.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const NATS_SERVER = '127.0.0.1:4222';

const dir = mkdtempSync(join(tmpdir(), 'edupulse-package-'));
const tag = randomBytes(4).toString('hex');
const stream = `PKG_${tag}`;
const subjectPrefix = `pkg_${tag}`;
let pg: TestSchema | undefined;

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await deleteStream(`nats://${NATS_SERVER}`, stream);
  await pg?.drop();
});

/** The child's environment without what a surrounding `npm test` exports about this package. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^npm_(package|lifecycle)_/.test(name)) env[name] = value;
  }
  return { ...env, ...extra };
}

/** Runs a command to its end; never rejects on a failing exit code. */
function sh(command: string, args: readonly string[], cwd: string, env = childEnv()) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

it('installs with only the peers a NATS producer needs, type-checks strictly, and publishes', async () => {
  expect(existsSync(join(ROOT, 'dist/index.js')), 'dist/ is built (npm run build)').toBe(true);
  pg = await createPgTestSchema('package', { migrate: false });

  // The tarball: the compiled package, its migrations, the console page, docs and examples;
  // nothing else (the README's screenshots stay in the repository).
  const pack = await sh(
    'npm',
    ['pack', '--json', '--ignore-scripts', '--pack-destination', dir],
    ROOT,
  );
  expect(pack.code, pack.stderr).toBe(0);
  const [packed] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
  const files = (packed?.files ?? []).map((file) => file.path);
  expect(files).toEqual(
    expect.arrayContaining([
      'README.md',
      'LICENSE',
      'CHANGELOG.md',
      'docs/operations.md',
      'examples/consume.mjs',
      'bin/edupulse-outbox',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/db/migrations/0001_outbox.sql',
      'dist/ui/index.html',
    ]),
  );
  expect(files.filter((path) => /^dist\/ui\/assets\/index-[\w-]+\.js$/.test(path))).toHaveLength(1);
  expect(
    files.filter(
      (path) =>
        /^(src|test|bench|ui|dist\/bench|docs\/screenshots)\/|\.map$/.test(path) &&
        path !== 'bench/README.md' &&
        path !== 'docs/screenshots/overview.png',
    ),
  ).toEqual([]);
  // Every file the shipped documents link to is shipped with them.
  for (const document of files.filter((path) => path.endsWith('.md'))) {
    const text = readFileSync(join(ROOT, document), 'utf8');
    for (const [, target] of text.matchAll(/\]\((?!https?:|#|mailto:)([^)#\s]+)/g)) {
      const linked = posix.normalize(posix.join(posix.dirname(document), target as string));
      expect(files, `${document} links to ${target}`).toContain(linked);
    }
  }

  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'outbox-app', private: true, type: 'module' }),
  );
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  const install = await sh(
    'npm',
    [
      'install',
      join(dir, packed?.filename ?? ''),
      'zod',
      'pg',
      ...optionalPeers.nats.install(nodeMajor),
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--loglevel=warn',
    ],
    app,
  );
  expect(install.code, install.stderr).toBe(0);
  expect(`${install.stdout}${install.stderr}`).not.toContain('EBADENGINE');
  // No script of ours runs at install, nor asks the user to allow one (npm's allowScripts).
  expect(`${install.stdout}${install.stderr}`).not.toContain('install-scripts');
  const installed = JSON.parse(
    readFileSync(join(app, 'node_modules/edupulse-outbox/package.json'), 'utf8'),
  ) as { scripts?: Record<string, string> };
  for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) {
    expect(installed.scripts?.[hook], hook).toBeUndefined();
  }
  // The optional peers the app did not ask for stay out.
  for (const name of ['amqplib', '@platformatic/kafka', '@electric-sql/pglite', 'prom-client']) {
    expect(existsSync(join(app, 'node_modules', name)), name).toBe(false);
  }

  copyFileSync(join(ROOT, 'test/package/producer.ts'), join(app, 'producer.ts'));
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        exactOptionalPropertyTypes: true,
        noUncheckedIndexedAccess: true,
        skipLibCheck: false,
        types: ['node'],
        // Node's types from the repository: the app would have @types/node of its own.
        typeRoots: [join(ROOT, 'node_modules/@types')],
        outDir: 'dist',
      },
      files: ['producer.ts'],
    }),
  );
  const tsc = await sh(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc')], app);
  expect(tsc.code, tsc.stdout).toBe(0);

  const run = await sh(
    process.execPath,
    ['dist/producer.js'],
    app,
    childEnv({
      DATABASE_URL: PG_URL,
      OUTBOX_SCHEMA: pg.schema,
      OUTBOX_BROKER_URL: `nats://${NATS_SERVER}?stream=${stream}&subject_prefix=${subjectPrefix}`,
    }),
  );
  expect(run.code, run.stderr).toBe(0);
  const sent = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '') as {
    id: string;
    payload: unknown;
  };

  // The dispatcher created the stream; read everything on it with the NATS client.
  const consumer = await consumeStream(`nats://${NATS_SERVER}`, stream);
  try {
    await waitFor('the event on the stream', () => consumer.received.length > 0);
    expect(
      (consumer.received as NatsReceived[]).map((m) => ({
        id: m.attributes.id,
        type: m.attributes.type,
        subject: m.subject,
        payload: JSON.parse(m.body) as unknown,
      })),
    ).toEqual([
      {
        id: sent.id,
        type: 'certificate-issued',
        subject: `${subjectPrefix}.student.certificate-issued`,
        payload: sent.payload,
      },
    ]);
  } finally {
    await consumer.close();
  }
}, 120_000);
