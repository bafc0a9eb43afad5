/**
 * Secrets are never printed: a secret is planted in every form a URL setting can carry it
 * (password, password containing an unencoded `/`, `?password=`, a NATS token as the
 * user, a password the server refuses, a secret query parameter, the environment, a file
 * named by `password_file`/`token_file`, the console's token), and the whole output of
 * every command and endpoint is swept for it, `--verbose` included.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pgDriver from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, killChildren, runCli, spawnCli } from './helpers/cli.js';
import { startConsole } from './helpers/console.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

afterEach(killChildren);

const SECRET = `Sx${randomBytes(8).toString('hex')}`;
const FORMS = [SECRET, encodeURIComponent(SECRET), Buffer.from(SECRET).toString('base64')];

const pg = new URL(PG_URL);
/** The test database with the secret as its password (trust auth ignores it). */
const dbWithPassword = () => {
  const url = new URL(PG_URL);
  url.password = SECRET;
  return url.href;
};
const dbWithPasswordParameter = () => {
  const url = new URL(PG_URL);
  url.searchParams.set('password', SECRET);
  return url.href;
};
/** A password holding an unencoded `/`: the URL parser would split it at the slash. */
const dbMalformed = `postgres://${pg.username || 'postgres'}:pa/${SECRET}@${pg.host}${pg.pathname}`;
const dbUnreachable = `postgres://postgres:${SECRET}@127.0.0.1:1/test`;

const BROKERS = {
  natsToken: `nats://${SECRET}@127.0.0.1:4222`,
  natsPassword: `nats://edupulse:${SECRET}@127.0.0.1:4222`,
  amqpRefused: `amqp://guest:${SECRET}@127.0.0.1:5672`,
  amqpMalformed: `amqp://guest:pa/${SECRET}@127.0.0.1:5672`,
  kafkaSasl: `kafka://edupulse:${SECRET}@127.0.0.1:9092`,
  natsSecretParameter: `nats://127.0.0.1:4222?token=${SECRET}`,
};

function expectNoSecret(what: string, text: string): void {
  for (const form of FORMS) {
    expect(text.includes(form), `${what} shows the secret (${form}):\n${text}`).toBe(false);
  }
}

const sweep = (what: string, result: CliResult) =>
  expectNoSecret(what, `${result.stdout}\n${result.stderr}`);

let t: TestSchema;
beforeAll(async () => {
  t = await createPgTestSchema('secrets');
});
afterAll(async () => {
  await t.drop();
});

describe('secrets in database URLs', () => {
  it.each([
    ['a password', dbWithPassword],
    ['a password parameter', dbWithPasswordParameter],
  ])('with %s: no command prints it, verbose or not', async (_, url) => {
    const database = url();
    const commands = [
      ['migrate'],
      ['migrate', '--check'],
      ['status'],
      ['status', '--json'],
      ['dead', 'list'],
      ['dead', 'list', '--since', '100000000d'],
      ['purge', '--older-than', '1d'],
      ['dead', 'show', '00000000-0000-4000-8000-000000000000'],
      ['migrate', '--partitions', '7'],
    ];
    // --verbose prints the most: debug logs and stack traces.
    for (const command of commands) {
      const args = [...command, '--database-url', database, '--schema', t.schema, '--verbose'];
      sweep(args.join(' '), await runCli(args));
    }
    // From the environment too.
    sweep(
      'status with DATABASE_URL',
      await runCli(['status', '--schema', t.schema, '--verbose'], {
        env: { DATABASE_URL: database },
      }),
    );
  });

  it('a URL that does not parse is named, not quoted', async () => {
    for (const verbose of [[], ['--verbose']]) {
      const result = await runCli([
        'status',
        '--database-url',
        dbMalformed,
        '--schema',
        t.schema,
        ...verbose,
      ]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^edupulse-outbox: database-url: is not a valid URL/);
      sweep('a malformed database URL', result);
      expect(result.stderr).not.toContain('pa/');
    }
  });

  it('an unreachable database is reported without the password, in either form', async () => {
    const result = await runCli(['status', '--database-url', dbUnreachable, '--verbose']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('postgres:***@127.0.0.1:1');
    sweep('an unreachable database', result);
    const parameter = await runCli([
      'run',
      '--database-url',
      `postgres://postgres@127.0.0.1:1/test?password=${SECRET}`,
      '--verbose',
    ]);
    expect(parameter.code).toBe(2);
    expect(parameter.stderr).toContain('password=***');
    sweep('an unreachable database, password as a parameter', parameter);
    const hosts = await runCli([
      'status',
      '--database-url',
      dbUnreachable.replace('127.0.0.1:1', '127.0.0.1:1,127.0.0.1:2'),
      '--verbose',
    ]);
    expect(hosts.code).toBe(2);
    expect(hosts.stderr).toContain('postgres:***@127.0.0.1:1,127.0.0.1:2');
    sweep('an unreachable list of database hosts', hosts);
  });

  it('a running dispatcher logs the database URL without a password parameter', async () => {
    const run = spawnCli([
      'run',
      '--database-url',
      dbWithPasswordParameter(),
      '--schema',
      t.schema,
      '--verbose',
    ]);
    await run.waitFor('the dispatcher to start', () => run.stderr.includes('dispatcher started'));
    run.child.kill('SIGTERM');
    const result = await run.exited;
    expect(result.stderr).toContain('password=***');
    sweep('run with ?password=', result);
  });

  it("status shows a lock holder's application_name swept of the secret", async () => {
    // A dispatcher's ownership locks, then held by a session whose application_name is
    // anyone's text (through a pooler, the last client's): here the password.
    const run = spawnCli(['run', '--database-url', dbWithPassword(), '--schema', t.schema]);
    await run.waitFor('the dispatcher to start', () => run.stderr.includes('dispatcher started'));
    const before = await runCli(['status', '--schema', t.schema, '--json'], {
      env: { DATABASE_URL: PG_URL },
    });
    const [holder] = (JSON.parse(before.stdout) as { dispatchers: { pid: number }[] }).dispatchers;
    const { rows: locks } = await t.db.query<{ classid: string; objid: string }>(
      `SELECT classid::bigint::text AS classid, objid::bigint::text AS objid FROM pg_locks
       WHERE locktype = 'advisory' AND objsubid = 2 AND pid = $1`,
      [holder?.pid],
    );
    run.child.kill('SIGTERM');
    await run.exited;
    const session = new pgDriver.Client({
      connectionString: PG_URL,
      application_name: `dispatcher ${SECRET}`,
    });
    await session.connect();
    try {
      for (const { classid, objid } of locks) {
        await session.query(
          'SELECT pg_advisory_lock($1::bigint::bit(32)::int, $2::bigint::bit(32)::int)',
          [classid, objid],
        );
      }
      for (const json of [[], ['--json']]) {
        const status = await runCli([
          'status',
          '--database-url',
          dbWithPassword(),
          '--schema',
          t.schema,
          ...json,
        ]);
        expect(status.code).toBe(0);
        expect(status.stdout).toContain('dispatcher ***');
        sweep('status of a lock holder named with the secret', status);
      }
    } finally {
      await session.end();
    }
  });
});

describe('secrets in broker URLs', () => {
  it.each(Object.entries(BROKERS))(
    '%s: run and demo print no part of it, nor do the endpoints',
    async (_, broker) => {
      const run = spawnCli([
        'run',
        '--database-url',
        dbWithPassword(),
        '--schema',
        t.schema,
        '--broker',
        broker,
        '--metrics-port',
        '0',
        '--retry-base-delay-ms',
        '100',
        '--verbose',
      ]);
      let bodies = '';
      const port = await new Promise<number | undefined>((resolve) => {
        const timer = setInterval(() => {
          const line = run.stderr.split('\n').find((l) => l.includes('serving /metrics'));
          if (line) {
            clearInterval(timer);
            resolve((JSON.parse(line) as { port: number }).port);
          }
        }, 20);
        void run.exited.then(() => {
          clearInterval(timer);
          resolve(undefined);
        });
      });
      if (port !== undefined) {
        // Long enough for a broker that refuses the credentials to be tried twice.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        for (const path of ['/metrics', '/healthz', '/readyz']) {
          try {
            const response = await fetch(`http://127.0.0.1:${port}${path}`);
            bodies += `${path}: ${await response.text()}\n`;
          } catch (error) {
            // A broker that refuses the credentials as a setting (Kafka's SASL, asked by the
            // readiness check) ends `run` with exit 2, endpoints and all: what it printed is
            // still swept below.
            expect((await run.exited).code, String(error)).toBe(2);
            break;
          }
        }
        run.child.kill('SIGTERM');
      }
      const result = await run.exited;
      sweep('run', result);
      expectNoSecret('the endpoints', bodies);

      // A broker that refuses the credentials keeps the demo retrying: it is cut short.
      const demo = await runCli(['demo', '--events', '3', '--broker', broker, '--verbose'], {
        timeoutMs: 4000,
      });
      sweep('demo', demo);
    },
  );

  it('shows a NATS token as *** where it shows the server, also from the environment', async () => {
    const demo = await runCli(['demo', '--events', '3', '--verbose'], {
      env: { OUTBOX_BROKER_URL: BROKERS.natsToken },
      timeoutMs: 15_000,
    });
    expect(demo.code).toBe(0);
    expect(demo.stderr).toContain('nats://***@127.0.0.1:4222');
    sweep('demo', demo);
  });
});

describe('secrets in flags the command does not take', () => {
  it('a flag it does not know is named without its value; a URL typed as a command shows no credentials', async () => {
    const cases: [string[], string][] = [
      // run's broker given to status, a misspelt token, a misspelt database flag.
      [['status', `--broker=${BROKERS.natsPassword}`], "unknown option '--broker'"],
      [
        ['run', '--metrics-port', '0', `--metrics-tokn=${SECRET}`],
        '(Did you mean --metrics-token?)',
      ],
      [['status', `--database-uri=${dbWithPassword()}`], '(Did you mean --database-url?)'],
      [[dbWithPassword()], "unknown command 'postgres://"],
    ];
    for (const [args, shown] of cases) {
      const result = await runCli(args);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(shown);
      sweep(args.join(' '), result);
    }
  });
});

describe('secrets in files, and the console token', () => {
  let dir: string;
  let file: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'secrets-'));
    file = join(dir, 'secret');
    writeFileSync(file, `${SECRET}\n`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const FROM_FILES = {
    database: () => ['--database-url', `${PG_URL}?password_file=${file}`, '--broker', 'log:'],
    amqpRefused: () => [
      '--database-url',
      PG_URL,
      '--broker',
      `amqp://guest@127.0.0.1:5672?password_file=${file}`,
    ],
    natsPassword: () => [
      '--database-url',
      PG_URL,
      '--broker',
      `nats://edupulse@127.0.0.1:4222?password_file=${file}`,
    ],
    natsToken: () => [
      '--database-url',
      PG_URL,
      '--broker',
      `nats://127.0.0.1:4222?token_file=${file}`,
    ],
    kafkaSasl: () => [
      '--database-url',
      PG_URL,
      '--broker',
      `kafka://edupulse@127.0.0.1:9092?sasl_mechanism=scram-sha-512&password_file=${file}`,
    ],
  };

  it.each(Object.keys(FROM_FILES) as (keyof typeof FROM_FILES)[])(
    '%s: run prints no part of what the file holds',
    async (name) => {
      const result = await runCli(
        [
          'run',
          '--schema',
          t.schema,
          '--retry-base-delay-ms',
          '100',
          '--verbose',
          ...FROM_FILES[name](),
        ],
        { timeoutMs: 4000 },
      );
      sweep(`run (${name})`, result);
    },
  );

  it('the console prints no part of its token, nor do its refusals', async () => {
    const { cli: ui, port } = await startConsole(t.schema, [
      '--host',
      '0.0.0.0',
      '--ui-token-file',
      file,
      '--verbose',
    ]);
    let bodies = '';
    for (const authorization of [undefined, `Bearer ${SECRET.slice(0, -1)}`, `Bearer ${SECRET}`]) {
      const response = await fetch(`http://127.0.0.1:${port}/api/overview`, {
        headers: authorization ? { authorization } : {},
      });
      bodies += `${response.status} ${await response.text()}\n`;
    }
    expect(bodies).toMatch(/^401 .*\n401 .*\n200 /s);
    ui.child.kill('SIGTERM');
    sweep('ui', await ui.exited);
    expectNoSecret('the console', bodies);
    // Too short a token is refused without being shown.
    const short = await runCli(
      ['ui', '--schema', t.schema, '--ui-token', SECRET.slice(0, 12), '--verbose'],
      {
        env: { DATABASE_URL: PG_URL },
      },
    );
    expect(short.code).toBe(2);
    expect(`${short.stdout}${short.stderr}`).not.toContain(SECRET.slice(0, 12));
  });
});

describe("the events' own data where a secret's text occurs in it", () => {
  it('is shown as stored by the CLI and the console, while error texts are swept', async () => {
    // A password as common as RabbitMQ's default `guest` occurs in data by chance: an
    // aggregate id, a payload. Masking those showed operators ids that do not exist.
    const data = await createPgTestSchema('secrets_data');
    try {
      const id = randomUUID();
      await data.db.query(
        `INSERT INTO "${data.schema}".outbox_dead_letter
           (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
            occurred_at, attempts, last_error)
         VALUES (1, $1, 'lesson', $2, 'lesson-published', $3, '{}', 0, now(), 3, $4)`,
        [id, `${SECRET}-lesson-1`, JSON.stringify({ note: SECRET }), `refused: ${SECRET}`],
      );
      const cli = (args: string[]) =>
        runCli([...args, '--database-url', dbWithPassword(), '--schema', data.schema]);
      const shown = await cli(['dead', 'show', id]);
      expect(shown.code).toBe(0);
      const detail = JSON.parse(shown.stdout) as Record<string, unknown>;
      expect(detail).toMatchObject({
        aggregateId: `${SECRET}-lesson-1`,
        payload: { note: SECRET },
        lastError: 'refused: ***',
      });
      const listed = await cli(['dead', 'list']);
      expect(listed.stdout).toContain(`lesson/${SECRET}-lesson-1`);
      expect(listed.stdout).toContain('refused: ***');
      expect(listed.stdout).not.toContain(`refused: ${SECRET}`);
      // Grouped by error, in text: masked too, and `--error` takes the error as shown.
      const groups = await cli(['dead', 'groups']);
      expect(groups.stdout).toContain('refused: ***');
      expect(groups.stdout).not.toContain(`refused: ${SECRET}`);
      const byShownError = await cli(['dead', 'list', '--json', '--error', 'refused: ***']);
      expect((JSON.parse(byShownError.stdout) as unknown[]).length).toBe(1);

      const { cli: ui, base } = await startConsole(data.schema, [
        '--database-url',
        dbWithPassword(),
      ]);
      const answer = (await (await fetch(`${base}/api/dead-letters/${id}`)).json()) as Record<
        string,
        unknown
      >;
      expect(answer).toMatchObject({
        aggregateId: `${SECRET}-lesson-1`,
        payload: JSON.stringify({ note: SECRET }),
        lastError: 'refused: ***',
      });
      ui.child.kill('SIGTERM');
      await ui.exited;
    } finally {
      await data.drop();
    }
  });
});
