/**
 * The CLI's surface as a separate process: help texts, and how bad settings are reported
 * (exit 2, one line naming the setting, no stack unless --verbose, no password), and the
 * flag → environment → default order of settings.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { killChildren, lines, runCli, spawnCli, stackLines } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

const UNREACHABLE = 'postgres://u:secret@127.0.0.1:1/x';

afterEach(killChildren);

describe('--help', () => {
  it('lists the commands and where settings come from', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['migrate', 'run', 'demo']) expect(result.stdout).toContain(command);
    expect(result.stdout).toContain('DATABASE_URL');
    expect(result.stdout).toContain('OUTBOX_BROKER_URL');
  });

  it('migrate --help lists its settings and exit codes', async () => {
    const result = await runCli(['migrate', '--help']);
    expect(result.code).toBe(0);
    for (const text of ['--database-url', 'DATABASE_URL', '--schema', '--print', '--check']) {
      expect(result.stdout).toContain(text);
    }
    expect(result.stdout).toMatch(/exit codes/i);
  });

  it('run --help lists the dispatcher settings and their environment variables', async () => {
    const result = await runCli(['run', '--help']);
    expect(result.code).toBe(0);
    for (const text of [
      '--database-url',
      'DATABASE_URL',
      '--broker',
      'OUTBOX_BROKER_URL',
      '--schema',
      '--batch-size',
      '--poll-interval-ms',
      '--max-attempts',
      '--dead-letter-retention',
      '--verbose',
      'SIGTERM',
    ]) {
      expect(result.stdout).toContain(text);
    }
    // Each number's range, as its refusal gives it (commander wraps the lines).
    const flat = result.stdout.replace(/\s+/g, ' ');
    expect(flat).toContain('(from 10, at most 3600000) (default: "1000")');
    expect(flat).toContain('(at least --retry-base-delay-ms, at most 86400000)');
    expect(flat).toContain('memory:');
  });

  it('demo --help lists --events and --rate', async () => {
    const result = await runCli(['demo', '--help']);
    expect(result.code).toBe(0);
    for (const text of ['--events', '--rate', '--database-url', '--broker', '--batch-size']) {
      expect(result.stdout).toContain(text);
    }
  });

  it('--version prints the package version', async () => {
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('the compiled module run as a script says where the command is, instead of exiting 0 having done nothing', async () => {
    const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve) => {
        execFile(process.execPath, [main, 'run', '--help'], (error, stdout, stderr) =>
          resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
        );
      },
    );
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'edupulse-outbox: dist/cli/main.js is not the command; run bin/edupulse-outbox (`npx edupulse-outbox`) with the same arguments\n',
    );
  });
});

describe('a bad setting', () => {
  /** Exit 2, exactly one stderr line that names the setting, no stack trace, nothing on stdout. */
  async function expectBadSetting(
    args: string[],
    setting: string,
    env: Record<string, string> = {},
  ): Promise<string> {
    const result = await runCli(args, { env });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toBe('');
    expect(stackLines(result.stderr)).toEqual([]);
    const errorLines = lines(result.stderr);
    expect(errorLines, result.stderr).toHaveLength(1);
    expect(errorLines[0]).toContain(setting);
    return result.stderr;
  }

  it('--batch-size banana', async () => {
    const stderr = await expectBadSetting(
      ['run', '--database-url', PG_URL, '--batch-size', 'banana'],
      'batch-size',
    );
    expect(stderr).toContain('banana');
  });

  it('a maximum under the setting it pairs with names both', async () => {
    const stderr = await expectBadSetting(
      [
        'run',
        '--database-url',
        PG_URL,
        '--retry-base-delay-ms',
        '5000',
        '--retry-max-delay-ms',
        '1000',
      ],
      'retry-max-delay-ms',
    );
    expect(stderr).toContain(
      'retry-max-delay-ms: "1000" is below retry-base-delay-ms (5000), which it must be at least',
    );
  });

  it('an out-of-range number', async () => {
    await expectBadSetting(['run', '--database-url', PG_URL, '--batch-size', '0'], 'batch-size');
    await expectBadSetting(
      ['run', '--database-url', PG_URL, '--poll-interval-ms', '-5'],
      'poll-interval-ms',
    );
    await expectBadSetting(
      ['run', '--database-url', PG_URL, '--batches-in-flight', '17'],
      'batches-in-flight',
    );
  });

  it('an unknown broker scheme', async () => {
    await expectBadSetting(['run', '--database-url', PG_URL, '--broker', 'kafka2://x'], 'broker');
  });

  it('an unreachable database, without showing its password', async () => {
    const stderr = await expectBadSetting(['run', '--database-url', UNREACHABLE], 'database-url');
    expect(stderr).not.toContain('secret');
    const migrate = await expectBadSetting(
      ['migrate', '--database-url', UNREACHABLE],
      'database-url',
    );
    expect(migrate).not.toContain('secret');
  });

  it('the password stays hidden with --verbose too', async () => {
    const result = await runCli(['run', '--database-url', UNREACHABLE, '--verbose']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('database-url');
    expect(result.stdout + result.stderr).not.toContain('secret');
  });

  it('a database URL that is not postgres://', async () => {
    await expectBadSetting(['run', '--database-url', 'mysql://root@localhost/x'], 'database-url');
    await expectBadSetting(['migrate', '--database-url', 'not a url'], 'database-url');
  });

  it('no database URL for run or migrate', async () => {
    const stderr = await expectBadSetting(['run'], 'database-url');
    expect(stderr).toContain('DATABASE_URL');
    await expectBadSetting(['migrate'], 'database-url');
  });

  it('an invalid --schema', async () => {
    await expectBadSetting(['run', '--database-url', PG_URL, '--schema', 'Bad-Name'], 'schema');
    await expectBadSetting(['migrate', '--database-url', PG_URL, '--schema', 'Bad-Name'], 'schema');
    await expectBadSetting(['migrate', '--print', '--schema', 'x; DROP TABLE y'], 'schema');
  });

  it('an --on-dead-letter policy that is neither continue nor hold', async () => {
    const result = await runCli(['run', '--database-url', PG_URL, '--on-dead-letter', 'maybe']);
    expect(result.code).toBe(2);
    expect(stackLines(result.stderr)).toEqual([]);
    expect(lines(result.stderr)[0]).toContain('--on-dead-letter');
    expect(lines(result.stderr)[0]).toContain('continue, hold');
  });

  it('an unknown flag exits 2 naming it, without a stack', async () => {
    const result = await runCli(['run', '--frobnicate']);
    expect(result.code).toBe(2);
    expect(stackLines(result.stderr)).toEqual([]);
    expect(lines(result.stderr)[0]).toContain('--frobnicate');
  });

  it('a flag commander refuses is one line too, its suggestion on it', async () => {
    for (const [args, line] of [
      [
        ['ui', '--ui-port', '1'],
        "edupulse-outbox: unknown option '--ui-port' (Did you mean --port?) (add --help for the list of settings)",
      ],
      [
        ['run', '--on-dead-letter', 'drop'],
        "edupulse-outbox: option '--on-dead-letter <policy>' argument 'drop' is invalid. Allowed choices are continue, hold. (add --help for the list of settings)",
      ],
    ] as const) {
      const result = await runCli([...args]);
      expect(result.code, args.join(' ')).toBe(2);
      expect(lines(result.stderr)).toEqual([line]);
    }
  });

  it('an unknown command exits 2 naming it, with --help too', async () => {
    for (const args of [
      ['frobnicate'],
      ['frobnicate', '--help'],
      ['frobnicate', '-h'],
      ['help', 'frobnicate'],
    ]) {
      const result = await runCli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(stackLines(result.stderr)).toEqual([]);
      // One line, as every refusal (the pointer to --help was a second).
      expect(lines(result.stderr)).toEqual([
        "edupulse-outbox: unknown command 'frobnicate' (add --help for the list of settings)",
      ]);
      expect(result.stdout, args.join(' ')).toBe('');
    }
    // The web console answers to its name too.
    const alias = await runCli(['console', '--help']);
    expect(alias.code).toBe(0);
    expect(alias.stdout).toContain('Usage: edupulse-outbox ui|console [options]');
  });

  it('--verbose adds the stack trace', async () => {
    const result = await runCli([
      'run',
      '--database-url',
      PG_URL,
      '--batch-size',
      'banana',
      '--verbose',
    ]);
    expect(result.code).toBe(2);
    expect(lines(result.stderr)[0]).toContain('batch-size');
    expect(stackLines(result.stderr).length).toBeGreaterThan(0);
  });
});

describe('settings from the environment', () => {
  let target: TestSchema;

  beforeAll(async () => {
    target = await createPgTestSchema('cli_env', { migrate: false });
  });

  afterAll(async () => {
    await killChildren();
    await target?.drop();
  });

  it('DATABASE_URL and OUTBOX_SCHEMA are used when the flags are absent', async () => {
    const result = await runCli(['migrate'], {
      env: { DATABASE_URL: PG_URL, OUTBOX_SCHEMA: target.schema },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(target.schema);
    const { rows } = await target.db.query<{ present: boolean }>(
      'SELECT to_regclass($1) IS NOT NULL AS present',
      [`"${target.schema}".outbox`],
    );
    expect(rows[0]?.present).toBe(true);
  });

  it('a bad DATABASE_URL is reported as database-url, password hidden', async () => {
    const result = await runCli(['migrate', '--check', '--schema', target.schema], {
      env: { DATABASE_URL: UNREACHABLE },
    });
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toContain('database-url');
    expect(result.stdout + result.stderr).not.toContain('secret');
  });

  it('--database-url wins over DATABASE_URL', async () => {
    const result = await runCli(
      ['migrate', '--check', '--database-url', PG_URL, '--schema', target.schema],
      { env: { DATABASE_URL: UNREACHABLE } },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('current');
  });

  it('--schema wins over OUTBOX_SCHEMA', async () => {
    const result = await runCli(['migrate', '--check', '--schema', target.schema], {
      env: { DATABASE_URL: PG_URL, OUTBOX_SCHEMA: 'Bad-Name' },
    });
    expect(result.code, result.stderr).toBe(0);
  });

  it('OUTBOX_BROKER_URL is used when --broker is absent', async () => {
    const result = await runCli(['run', '--schema', target.schema], {
      env: { DATABASE_URL: PG_URL, OUTBOX_BROKER_URL: 'kafka2://x' },
    });
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toHaveLength(1);
    // Named by the variable it came from, as a person would look for it.
    expect(result.stderr).toContain('edupulse-outbox: broker (from OUTBOX_BROKER_URL): ');
  });

  it('--broker wins over OUTBOX_BROKER_URL, both ways', async () => {
    const refused = await runCli(['run', '--schema', target.schema, '--broker', 'kafka2://x'], {
      env: { DATABASE_URL: PG_URL, OUTBOX_BROKER_URL: 'log:' },
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('edupulse-outbox: broker: ');

    const cli = spawnCli(['run', '--schema', target.schema, '--broker', 'log:'], {
      env: { DATABASE_URL: PG_URL, OUTBOX_BROKER_URL: 'kafka2://x' },
    });
    await cli.waitFor('the dispatcher to start', () => cli.stderr.includes('dispatcher started'));
    cli.child.kill('SIGTERM');
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(stackLines(result.stderr)).toEqual([]);
  });

  it('the logs of a running dispatcher show no password of either URL', async () => {
    // Trust authentication ignores a password, so one can be added to the test server's URL.
    const url = new URL(PG_URL);
    if (!url.password) url.password = 'dbsecret';
    const cli = spawnCli(['run', '--schema', target.schema, '--verbose'], {
      env: { DATABASE_URL: url.toString(), OUTBOX_BROKER_URL: 'log://bob:brokersecret@x' },
    });
    await cli.waitFor('the dispatcher to start', () => cli.stderr.includes('dispatcher started'));
    cli.child.kill('SIGTERM');
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('bob:***@x');
    expect(result.stderr).not.toContain(decodeURIComponent(url.password));
    expect(result.stderr).not.toContain('brokersecret');
  });
});

/**
 * The benchmark runner lives beside the package (bench/), built here from its sources
 * so the tests run the current code; it reaches the package by its name, as users do.
 */
describe('bench', () => {
  const benchDir = fileURLToPath(new URL('../bench/', import.meta.url));

  beforeAll(async () => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const built = await runProcess(
      process.execPath,
      [tsc, '-p', join(benchDir, 'tsconfig.json')],
      60_000,
    );
    expect(built.code, built.stdout + built.stderr).toBe(0);
  });

  /** `node bench/dist/run.js <args>` to completion, without the CLI's environment settings. */
  function runBench(args: readonly string[]) {
    return runProcess(process.execPath, [join(benchDir, 'dist/run.js'), ...args], 30_000);
  }

  it('an unknown scenario exits 2 naming the setting', async () => {
    const result = await runBench(['--only', 'drain-noop,drain-fast']);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toBe('');
    expect(stackLines(result.stderr)).toEqual([]);
    const errorLines = lines(result.stderr);
    expect(errorLines, result.stderr).toHaveLength(1);
    expect(errorLines[0]).toContain('only');
    expect(errorLines[0]).toContain('drain-fast');
  });

  it.each([
    [
      'a steady rate that is not a whole number of events a second',
      '--steady-rate',
      '0.5',
      'a whole number of events a second',
    ],
    ['a steady broker it does not know', '--steady-broker', 'redis', 'nats, amqp, kafka'],
  ])('%s exits 2 naming the setting and what it takes', async (_, flag, value, takes) => {
    const result = await runBench(['--only', 'steady-latency', flag, value]);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toBe('');
    expect(stackLines(result.stderr)).toEqual([]);
    expect(lines(result.stderr)[0]).toContain(flag);
    expect(lines(result.stderr)[0]).toContain(takes);
  });

  it('writes the report the README describes, and leaves no schema behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edupulse-bench-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'latest.json');
    const schemasBefore = await benchSchemas();
    const result = await runBench([
      '--quick',
      '--only',
      'drain-noop',
      '--database-url',
      PG_URL,
      '--out',
      out,
    ]);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as {
      complete: boolean;
      machine: string;
      date: string;
      versions: Record<string, string>;
      scenarios: {
        name: string;
        events_per_s: number;
        reference_events_per_s: number;
        ratio: number;
        met: boolean;
      }[];
    };
    expect(report.complete).toBe(true);
    expect(report.machine).toMatch(/GiB/);
    expect(Number.isNaN(Date.parse(report.date))).toBe(false);
    expect(report.versions).toMatchObject({ node: process.versions.node });
    expect(report.versions.postgresql).toMatch(/^\d+/);
    expect(report.versions['edupulse-outbox']).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.versions.pg).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.scenarios.map((s) => s.name)).toEqual(['drain-noop']);
    const [noop] = report.scenarios;
    expect(noop?.events_per_s).toBeGreaterThan(0);
    expect(noop?.ratio).toBeCloseTo(
      (noop?.events_per_s ?? 0) / (noop?.reference_events_per_s ?? 1),
      1,
    );
    expect(typeof noop?.met).toBe('boolean');
    expect(result.stdout).toContain('| drain-noop |');
    expect(await benchSchemas()).toEqual(schemasBefore);
  });

  it('is no command of the CLI, and no part of the package', async () => {
    const cli = await runCli(['bench', '--only', 'drain-noop']);
    expect(cli.code).toBe(2);
    // What `npm pack` would ship from the dist/ this test run built (no scripts: a pack
    // would rebuild dist/ under the other test files).
    const pack = await runProcess(
      'npm',
      ['pack', '--dry-run', '--json', '--ignore-scripts'],
      30_000,
    );
    expect(pack.code, pack.stderr).toBe(0);
    const [packed] = JSON.parse(pack.stdout) as { files: { path: string }[] }[];
    const paths = packed?.files.map((file) => file.path) ?? [];
    expect(paths).toContain('dist/index.js');
    // Its figures (bench/README.md, which the README links to), none of its code.
    expect(paths).toContain('bench/README.md');
    expect(
      paths.filter((path) => /(^|\/)bench(\/|\.)/.test(path) && path !== 'bench/README.md'),
    ).toEqual([]);
  });
});

async function benchSchemas(): Promise<string[]> {
  const t = await createPgTestSchema('cli_bench_probe');
  try {
    const { rows } = await t.db.query<{ name: string }>(
      "SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE 'bench\\_%' ORDER BY 1",
    );
    return rows.map((row) => row.name);
  } finally {
    await t.drop();
  }
}

/** `file <args>` from the repository root to completion; SIGKILLed after `timeoutMs`. */
function runProcess(
  file: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['DATABASE_URL', 'OUTBOX_BROKER_URL', 'OUTBOX_SCHEMA']) delete env[name];
  const cwd = fileURLToPath(new URL('../', import.meta.url));
  return new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        if (error && code === null) reject(new Error(`${file}: ${error.message}\n${stderr}`));
        else resolve({ code, stdout, stderr });
      },
    );
  });
}
