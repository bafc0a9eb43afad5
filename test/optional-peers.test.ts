/**
 * The broker clients, PGlite and the Prometheus client are optional peer dependencies:
 * importing the package loads none of them, and a feature used without its packages is a
 * bad setting naming what to install (ConfigError; exit code 2 from the CLI). Absence is
 * simulated with loader hooks in a child process (test/helpers/hide-packages.mjs): the
 * packages stay installed for the other test files running meanwhile.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { optionalPeers } from '../src/common/peers.js';
import { killChildren, runCli, stackLines } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const HIDE = pathToFileURL(fileURLToPath(new URL('helpers/hide-packages.mjs', import.meta.url)));
const RECORD = pathToFileURL(fileURLToPath(new URL('helpers/record-imports.mjs', import.meta.url)));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};

const OPTIONAL = [
  '@electric-sql/pglite',
  '@nats-io',
  'amqplib',
  '@platformatic/kafka',
  'prom-client',
];

afterEach(killChildren);

/** Runs an ES module snippet in the repository (the package resolves by its own name). */
function evalModule(code: string, env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(result.stderr).toBe('');
  return result.stdout;
}

/** The packages (by node_modules directory) whose modules an import of `entry` loads. */
function packagesLoadedBy(entry: string): Set<string> {
  const dir = mkdtempSync(join(tmpdir(), 'imports-'));
  try {
    const log = join(dir, 'loaded.txt');
    evalModule(`await import(${JSON.stringify(entry)});`, {
      NODE_OPTIONS: `--import ${RECORD.href}`,
      IMPORTS_LOG: log,
    });
    const names = new Set<string>();
    for (const url of readFileSync(log, 'utf8').split('\n')) {
      const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
      if (match?.[1]) names.add(match[1]);
    }
    return names;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const optionalAmong = (names: Set<string>) =>
  [...names].filter((name) => OPTIONAL.some((prefix) => name.startsWith(prefix)));

describe('importing the package', () => {
  it('loads no optional peer for the producer API, the dispatcher or the consumer', () => {
    const root = packagesLoadedBy('edupulse-outbox');
    // The recording sees the packages the entry does import.
    expect(root).toContain('zod');
    expect(root).toContain('pg');
    expect(optionalAmong(root)).toEqual([]);
    expect(optionalAmong(packagesLoadedBy('edupulse-outbox/consumer'))).toEqual([]);
  });

  it('loads no optional peer for edupulse-outbox/metrics until a registry is built', () => {
    expect(optionalAmong(packagesLoadedBy('edupulse-outbox/metrics'))).toEqual([]);
  });

  it('names optional peers of package.json, each with its install command', () => {
    // Other optional peers (the ORMs the adapters fit) are never imported: not listed.
    for (const peer of Object.values(optionalPeers)) {
      for (const name of peer.packages) {
        expect(pkg.peerDependencies[name], name).toBeDefined();
        expect(pkg.peerDependenciesMeta[name]?.optional, name).toBe(true);
      }
      for (const spec of [...peer.install(20), ...peer.install(22)]) {
        expect(peer.packages).toContain(spec.replace(/(?<=.)@.*$/, ''));
      }
    }
    const listed = Object.values(optionalPeers).flatMap((peer) => [...peer.packages]);
    for (const prefix of OPTIONAL) {
      expect(
        listed.some((name) => name.startsWith(prefix)),
        prefix,
      ).toBe(true);
    }
  });
});

describe('brokerFromUrl without the client installed', () => {
  const cases = [
    { url: 'nats://127.0.0.1:4222', hidden: '@nats-io/jetstream', install: '@nats-io/jetstream' },
    { url: 'amqp://guest:guest@127.0.0.1:5672', hidden: 'amqplib', install: 'amqplib' },
    {
      url: 'kafka://127.0.0.1:9092',
      hidden: '@platformatic/kafka',
      install: '@platformatic/kafka',
    },
  ];

  it.each(cases)('$url: a ConfigError naming $hidden and the install command', (c) => {
    const out = evalModule(
      `import { brokerFromUrl, ConfigError } from 'edupulse-outbox';
       try {
         brokerFromUrl(${JSON.stringify(c.url)}, { source: 'test' });
         console.log('{}');
       } catch (e) {
         console.log(JSON.stringify({ config: e instanceof ConfigError, setting: e.setting, message: e.message }));
       }`,
      { NODE_OPTIONS: `--import ${HIDE.href}`, HIDDEN_PACKAGES: c.hidden },
    );
    const thrown = JSON.parse(out) as { config?: boolean; setting?: string; message?: string };
    expect(thrown.config).toBe(true);
    expect(thrown.setting).toBe('broker');
    expect(thrown.message).toContain(`needs ${c.hidden}, which is not installed`);
    expect(thrown.message).toMatch(new RegExp(`npm install .*${c.install}`));
  });

  it('the consumer: consume() rejects with the same ConfigError', async () => {
    // A migrated schema: consume() checks it before it reaches for the broker's package.
    const migrated = await createPgTestSchema('optional_consumer');
    const out = evalModule(
      `import { pgDatabase, LessonPublished, ConfigError } from 'edupulse-outbox';
       import { consume } from 'edupulse-outbox/consumer';
       const database = pgDatabase({ connectionString: ${JSON.stringify(PG_URL)} });
       try {
         await consume({ broker: 'nats://127.0.0.1:4222', consumer: 'c', database,
           schema: ${JSON.stringify(migrated.schema)},
           events: [LessonPublished], handler: () => {} });
         console.log('{}');
       } catch (e) {
         console.log(JSON.stringify({ config: e instanceof ConfigError, message: e.message }));
       } finally {
         await database.close();
       }`,
      { NODE_OPTIONS: `--import ${HIDE.href}`, HIDDEN_PACKAGES: '@nats-io/transport-node' },
    );
    await migrated.drop();
    const thrown = JSON.parse(out) as { config?: boolean; message?: string };
    expect(thrown.config).toBe(true);
    expect(thrown.message).toContain('npm install @nats-io/transport-node');
  });
});

describe('edupulse-outbox/metrics without prom-client', () => {
  it.each([
    ['dispatcherMetrics', { dispatcher: {}, db: {}, schema: 'public' }],
    ['consumerMetrics', { consumer: {}, name: 'c' }],
  ])('%s: a ConfigError naming prom-client and the install command', (fn, options) => {
    const out = evalModule(
      `import { ConfigError } from 'edupulse-outbox';
       import * as metrics from 'edupulse-outbox/metrics';
       try {
         metrics[${JSON.stringify(fn)}](${JSON.stringify(options)});
         console.log('{}');
       } catch (e) {
         console.log(JSON.stringify({ config: e instanceof ConfigError, setting: e.setting, message: e.message }));
       }`,
      { NODE_OPTIONS: `--import ${HIDE.href}`, HIDDEN_PACKAGES: 'prom-client' },
    );
    const thrown = JSON.parse(out) as { config?: boolean; setting?: string; message?: string };
    expect(thrown).toEqual({
      config: true,
      setting: fn,
      message: `${fn}: the metrics endpoint (Prometheus) needs prom-client, which is not installed: npm install prom-client@15`,
    });
  });
});

describe('the CLI without an optional package', () => {
  const hide = (packages: string, variable = 'HIDDEN_PACKAGES') => ({
    env: { NODE_OPTIONS: `--import ${HIDE.href}`, [variable]: packages },
  });

  it.each([
    ['nats://127.0.0.1:4222', '@nats-io/transport-node', 'npm install @nats-io/transport-node'],
    ['amqp://guest:guest@127.0.0.1:5672', 'amqplib', 'npm install amqplib'],
    ['kafka://127.0.0.1:9092', '@platformatic/kafka', 'npm install @platformatic/kafka'],
  ])('run --broker %s: exit 2, naming what to install', async (url, hidden, install) => {
    const result = await runCli(['run', '--broker', url, '--database-url', PG_URL], hide(hidden));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`broker: `);
    expect(result.stderr).toContain(install);
    expect(stackLines(result.stderr)).toEqual([]);
  });

  it('run --metrics-port without prom-client: exit 2, naming it', async () => {
    const result = await runCli(
      ['run', '--broker', 'log:', '--database-url', PG_URL, '--metrics-port', '0'],
      hide('prom-client'),
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('metrics-port: ');
    expect(result.stderr).toContain('npm install prom-client');
    // A port that is none is said first: installing prom-client would not mend it.
    const bad = await runCli(
      ['run', '--broker', 'log:', '--database-url', PG_URL, '--metrics-port', 'abc'],
      hide('prom-client'),
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('metrics-port: "abc" is not a whole number');
    expect(bad.stderr).not.toContain('prom-client');
  });

  it('demo without a database URL and without PGlite: exit 2, naming it', async () => {
    const result = await runCli(['demo', '--events', '1'], hide('@electric-sql/pglite'));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('database-url: ');
    expect(result.stderr).toContain('npm install @electric-sql/pglite');
    // Nothing claims it is starting what it cannot load.
    expect(result.stderr).not.toContain('starting the embedded PostgreSQL');
  });

  describe('a client that resolves but cannot be loaded', () => {
    let t: TestSchema;
    beforeAll(async () => {
      t = await createPgTestSchema('peers');
    });
    afterAll(async () => {
      await killChildren();
      await t?.drop();
    });

    it('run stops at the first connect with exit 2, naming what to install', async () => {
      const result = await runCli(
        [
          'run',
          '--broker',
          'nats://127.0.0.1:4222',
          '--database-url',
          PG_URL,
          '--schema',
          t.schema,
        ],
        hide('@nats-io/transport-node', 'BROKEN_PACKAGES'),
      );
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('could not be loaded');
      expect(result.stderr).toContain('npm install @nats-io/transport-node');
    });
  });
});
