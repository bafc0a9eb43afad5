/**
 * PostgreSQL over TLS, with passwords and client certificates, as managed databases run
 * it: a private server (scripts/pg/logical-postgres.mjs) with `ssl = on`, certificates
 * from a CA this test makes with openssl, and a pg_hba.conf that refuses plain text. The
 * CLI connects with libpq's URL parameters; every refusal is one line naming the setting,
 * exit 2, and no output ever holds the password.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type LogicalPostgres, startLogicalPostgres } from '../../scripts/pg/logical-postgres.mjs';
import { createTestCa, type TestCa } from '../helpers/certs.js';
import {
  type CliResult,
  expectNoSecretIn,
  jsonLines,
  killChildren,
  runCli,
  spawnCli,
} from '../helpers/cli.js';

afterEach(killChildren);

const PASSWORD = 'Tls-Secret-7f3a9c';
const SCHEMA = 'tls_outbox';

let ca: TestCa;
let otherCa: TestCa;
let server: LogicalPostgres;
const outputs: string[] = [];

/** The CLI, its output kept for the secret sweep at the end. */
async function cli(args: string[]): Promise<CliResult> {
  const result = await runCli(args);
  outputs.push(result.stdout, result.stderr);
  return result;
}

function file(name: string, content: string): string {
  const path = join(ca.dir, name);
  writeFileSync(path, content);
  return path;
}

/** A URL to the private server; `params` are its query parameters. */
function url(host: string, params: Record<string, string>, user = 'postgres'): string {
  const query = new URLSearchParams(params).toString();
  return `postgres://${user}@${host}:${server.port}/postgres?${query}`;
}

let passwordFile: string;

/** `status` of the test's schema through a URL to the private server (see `url`). */
const status = (host: string, params: Record<string, string>, user?: string) =>
  cli(['status', '--database-url', url(host, params, user), '--schema', SCHEMA]);

beforeAll(async () => {
  ca = createTestCa();
  otherCa = createTestCa('Another CA');
  // Named for localhost only: verify-full to 127.0.0.1 must fail on the name.
  const serverCert = ca.issue('server', 'localhost', ['DNS:localhost']);
  server = await startLogicalPostgres({
    password: PASSWORD,
    files: { 'server.crt': serverCert.cert, 'server.key': serverCert.key, 'ca.crt': ca.cert },
    settings: {
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      ssl_ca_file: 'ca.crt',
    },
    hba: [
      'hostnossl all all 127.0.0.1/32 reject',
      'hostssl all certuser 127.0.0.1/32 cert',
      'hostssl all all 127.0.0.1/32 scram-sha-256',
    ],
  });
  passwordFile = file('password', `${PASSWORD}\n`);
  // The role that logs in by certificate alone (its certificate's CN names it).
  const admin = new pg.Client({
    host: 'localhost',
    port: server.port,
    user: 'postgres',
    password: PASSWORD,
    database: 'postgres',
    ssl: { ca: ca.cert },
  });
  await admin.connect();
  try {
    await admin.query('CREATE ROLE certuser LOGIN SUPERUSER');
  } finally {
    await admin.end();
  }
});

afterAll(async () => {
  await killChildren();
  await server?.stop();
  ca?.remove();
  otherCa?.remove();
});

describe('PostgreSQL over TLS', () => {
  it('migrates and dispatches with verify-full, a CA file and a password file; every connection is encrypted', async () => {
    const verified = url('localhost', {
      sslmode: 'verify-full',
      sslrootcert: ca.certFile,
      password_file: passwordFile,
    });
    const migrated = await cli(['migrate', '--database-url', verified, '--schema', SCHEMA]);
    expect(migrated.stderr).toBe('');
    expect(migrated.code).toBe(0);

    const producer = new pg.Client({
      host: 'localhost',
      port: server.port,
      user: 'postgres',
      password: PASSWORD,
      database: 'postgres',
      ssl: { ca: ca.cert },
    });
    await producer.connect();
    try {
      for (let n = 0; n < 20; n++) {
        await producer.query(
          `INSERT INTO ${SCHEMA}.outbox (aggregate_type, aggregate_id, event_type, payload)
           VALUES ('lesson', $1, 'lesson-published', $2)`,
          [`lesson-${n % 4}`, { n }],
        );
      }
      const run = spawnCli([
        'run',
        '--database-url',
        verified,
        '--schema',
        SCHEMA,
        '--broker',
        'log:',
      ]);
      await run.waitFor('20 events on stdout', () => run.lineCount() >= 20, 30_000);

      // The pool, the partition-lock session and the LISTEN connection: all TLS.
      const { rows } = await producer.query<{ application_name: string; ssl: boolean }>(
        `SELECT a.application_name, s.ssl
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name LIKE 'edupulse-outbox%'`,
      );
      expect(rows.length).toBeGreaterThanOrEqual(2);
      expect(rows.every((row) => row.ssl)).toBe(true);

      run.child.kill('SIGTERM');
      const result = await run.exited;
      outputs.push(result.stdout, result.stderr);
      expect(result.code).toBe(0);
      const events = jsonLines(result.stdout);
      expect(events).toHaveLength(20);
      // Per aggregate, in the order written.
      for (let a = 0; a < 4; a++) {
        const ns = events
          .filter((event) => event.subject === `lesson-${a}`)
          .map((event) => (event.data as { n: number }).n);
        expect(ns).toEqual([0, 1, 2, 3, 4].map((i) => i * 4 + a));
      }
    } finally {
      await producer.end();
    }
  });

  it('refuses a server whose certificate another CA signed: exit 2, one line naming the setting', async () => {
    const result = await status('localhost', {
      sslmode: 'verify-full',
      sslrootcert: otherCa.certFile,
      password_file: passwordFile,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^edupulse-outbox: database-url: cannot connect to .*certificate.* \(the server certificate does not chain to a CA this URL trusts: sslrootcert names the CA file\)$/m,
    );
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('verify-full checks the host name, verify-ca only the chain, require only encrypts', async () => {
    const byIp = await status('127.0.0.1', {
      sslmode: 'verify-full',
      sslrootcert: ca.certFile,
      password_file: passwordFile,
    });
    expect(byIp.code).toBe(2);
    expect(byIp.stderr).toMatch(
      /database-url: cannot connect to .*Hostname\/IP does not match certificate's altnames.* \(the server certificate does not name the host of the URL: connect by a name or address it carries, or sslmode=verify-ca checks the chain alone\)$/m,
    );

    for (const params of [
      { sslmode: 'verify-ca', sslrootcert: ca.certFile },
      // libpq: require with a CA file verifies the chain; without one it only encrypts.
      { sslmode: 'require', sslrootcert: ca.certFile },
      { sslmode: 'require' },
    ]) {
      const result = await status('127.0.0.1', { ...params, password_file: passwordFile });
      expect({ params, stderr: result.stderr, code: result.code }).toEqual({
        params,
        stderr: '',
        code: 0,
      });
    }

    const wrongChain = await status('127.0.0.1', {
      sslmode: 'require',
      sslrootcert: otherCa.certFile,
      password_file: passwordFile,
    });
    expect(wrongChain.code).toBe(2);
  });

  it('target_session_attrs=read-write logs in with the password of the URL or of its file', async () => {
    const tls = { sslmode: 'verify-full', sslrootcert: ca.certFile };
    const params = { ...tls, target_session_attrs: 'read-write' };
    const fromFile = await status('localhost', { ...params, password_file: passwordFile });
    expect(fromFile.stderr).toBe('');
    expect(fromFile.code).toBe(0);
    const query = new URLSearchParams(params).toString();
    const inUrl = await cli([
      'status',
      '--database-url',
      `postgres://postgres:${PASSWORD}@localhost:${server.port}/postgres?${query}`,
      '--schema',
      SCHEMA,
    ]);
    expect(inUrl.stderr).toBe('');
    expect(inUrl.code).toBe(0);
  });

  it('a wrong password is exit 2 and shows neither password', async () => {
    const wrong = file('wrong-password', 'Not-The-Password-42\n');
    const result = await cli([
      'status',
      '--database-url',
      url('localhost', { sslmode: 'verify-full', sslrootcert: ca.certFile, password_file: wrong }),
      '--schema',
      SCHEMA,
      '--verbose',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/password authentication failed for user "postgres"/);
    expect(result.stderr).not.toContain('Not-The-Password-42');
  });

  it('plain text is refused by the server, and said so', async () => {
    const result = await status('localhost', { sslmode: 'disable', password_file: passwordFile });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/no encryption/);
  });

  it('logs in with a client certificate, and not without one', async () => {
    const client = ca.issue('client', 'certuser');
    const withCert = await status(
      'localhost',
      {
        sslmode: 'verify-full',
        sslrootcert: ca.certFile,
        sslcert: client.certFile,
        sslkey: client.keyFile,
      },
      'certuser',
    );
    expect(withCert.stderr).toBe('');
    expect(withCert.code).toBe(0);

    const without = await status(
      'localhost',
      { sslmode: 'verify-full', sslrootcert: ca.certFile },
      'certuser',
    );
    expect(without.code).toBe(2);
    expect(without.stderr).toMatch(/database-url: cannot connect/);
  });

  it('names the parameter of a file that cannot be read, and an sslmode that would fall back to plain text', async () => {
    for (const [params, message] of [
      [
        { sslmode: 'verify-full', sslrootcert: join(ca.dir, 'missing.crt') },
        /^edupulse-outbox: database-url: sslrootcert: cannot read .*missing\.crt/,
      ],
      [
        { sslmode: 'verify-full', password_file: join(ca.dir, 'missing-password') },
        /^edupulse-outbox: database-url: password_file: cannot read .*missing-password/,
      ],
      [{ sslmode: 'prefer' }, /^edupulse-outbox: database-url: sslmode="prefer" is not supported/],
      [
        { sslmode: 'verify-ca' },
        /^edupulse-outbox: database-url: sslmode=verify-ca needs sslrootcert/,
      ],
    ] as const) {
      const result = await status('localhost', params);
      expect({ params, code: result.code }).toEqual({ params, code: 2 });
      expect(result.stderr).toMatch(message);
    }
  });

  it('no output of any of these commands held the password', () => {
    expect(outputs.length).toBeGreaterThan(10);
    expectNoSecretIn(outputs, PASSWORD);
  });
});
