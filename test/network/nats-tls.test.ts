/**
 * NATS over TLS, with every form of authentication nats-server knows, as production
 * clusters run it: private nats-servers (JetStream on, TLS required) with certificates
 * from a CA this test makes with openssl. The dispatcher (`run`, a separate process)
 * publishes events enqueued in a fresh schema, and an independent NATS client reads them
 * back; consume() receives over TLS with an NKey. A wrong CA or wrong credentials stop
 * `run` with exit 2 and one line naming the setting; a server that is down is retried;
 * no output ever holds a secret.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type NodeConnectionOptions, nkeys } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/free-port.mjs';
import { consume } from '../../src/consumer/index.js';
import { brokerFromUrl, ConfigError, LessonPublished } from '../../src/index.js';
import { createTestCa, type Issued, type TestCa } from '../helpers/certs.js';
import { type CliResult, killChildren, runCli, spawnCli } from '../helpers/cli.js';
import { consumeIds } from '../helpers/consume.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { consumeStream } from '../helpers/nats-consumer.js';
import { mintOperator, type NatsOperator } from '../helpers/nats-jwt.js';
import {
  type PrivateNatsServer,
  startNatsCluster,
  startNatsServer,
} from '../helpers/nats-server.js';
import { lesson } from '../helpers/outbox.js';
import { waitFor } from '../helpers/wait.js';

afterEach(killChildren);

const PASSWORD = 'Nats-Pass-5e81d2c7f0';
const TOKEN = 'nats-token-9b3f0a61d4e2';
const WRONG_PASSWORD = 'Wrong-Pass-0c7e13a9';
const WRONG_TOKEN = 'wrong-token-77a1f3c2';
const EVENTS = 20;
const AGGREGATES = 4;

const decoder = new TextDecoder();
const seedOf = (pair: ReturnType<typeof nkeys.createUser>) => decoder.decode(pair.getSeed());
const user = nkeys.createUser();
const stranger = nkeys.createUser();

let ca: TestCa;
let otherCa: TestCa;
let client: Issued;
let operator: NatsOperator;
/** TLS; user `outbox` with PASSWORD, or the NKey `user`. */
let users: PrivateNatsServer;
/** TLS; TOKEN. */
let tokens: PrivateNatsServer;
/** TLS with `verify: true`: a client certificate from `ca`, no other credentials. */
let mutual: PrivateNatsServer;
/** TLS; operator mode, a user of `operator`'s account by its .creds. */
let jwts: PrivateNatsServer;
/** Errors checked against a migrated schema of their own. */
let errorsSchema: TestSchema;
const files: Record<string, string> = {};
const outputs: string[] = [];

function file(name: string, content: string): string {
  const path = join(ca.dir, name);
  writeFileSync(path, content);
  return path;
}

/** The CLI to completion, its output kept for the secret sweep at the end. */
async function cli(args: string[], timeoutMs = 30_000): Promise<CliResult> {
  const result = await runCli(args, { timeoutMs });
  outputs.push(result.stdout, result.stderr);
  return result;
}

/** `nats://[userinfo@]localhost:<port>?<params>`. */
function natsUrl(
  server: PrivateNatsServer | number,
  params: Record<string, string>,
  userinfo = '',
): string {
  const port = typeof server === 'number' ? server : server.port;
  const query = new URLSearchParams(params).toString();
  return `nats://${userinfo}localhost:${port}${query ? `?${query}` : ''}`;
}

beforeAll(async () => {
  ca = createTestCa();
  otherCa = createTestCa('Another CA');
  const serverCert = ca.issue('nats-server', 'localhost', ['DNS:localhost', 'IP:127.0.0.1']);
  client = ca.issue('nats-client', 'edupulse-outbox');
  operator = mintOperator();
  const tls = { certFile: serverCert.certFile, keyFile: serverCert.keyFile };
  // One at a time, so that afterAll stops those that started should one fail.
  users = await startNatsServer({
    tls,
    user: { name: 'outbox', password: PASSWORD },
    nkeys: [user.getPublicKey()],
  });
  tokens = await startNatsServer({ tls, token: TOKEN });
  mutual = await startNatsServer({ tls: { ...tls, caFile: ca.certFile, verify: true } });
  jwts = await startNatsServer({
    tls,
    operator: {
      jwt: operator.operatorJwt,
      accounts: operator.accounts,
      systemAccount: operator.systemAccount,
    },
  });
  Object.assign(files, {
    password: file('password', `${PASSWORD}\n`),
    wrongPassword: file('wrong-password', `${WRONG_PASSWORD}\n`),
    token: file('token', `${TOKEN}\n`),
    wrongToken: file('wrong-token', WRONG_TOKEN),
    nkey: file('user.nk', `${seedOf(user)}\n`),
    strangerNkey: file('stranger.nk', `${seedOf(stranger)}\n`),
    creds: file('user.creds', operator.creds),
    strangerCreds: file('stranger.creds', operator.strangerCreds),
  });
  errorsSchema = await createPgTestSchema('nats_tls_errors');
});

afterAll(async () => {
  await killChildren();
  await Promise.all([users, tokens, mutual, jwts].map((server) => server?.destroy()));
  await errorsSchema?.drop();
  ca?.remove();
  otherCa?.remove();
});

/** A private server's TLS files: `issued`'s certificate and key. */
const tlsOf = (issued: Issued) => ({ certFile: issued.certFile, keyFile: issued.keyFile });

/** The CA, and what the independent reader logs in with on each server. */
const readerTls = () => ({ tls: { ca: ca.cert } });

interface Inserted {
  id: string;
  aggregate_id: string;
  n: number;
}

/**
 * Enqueues EVENTS lesson events with plain SQL in a fresh schema, runs the dispatcher with
 * `broker` (plus a stream of its own) until the outbox is empty, and reads the stream back
 * with the NATS client: every event once, each aggregate's in order. Returns the URL used.
 */
async function dispatchAndReadBack(
  broker: string,
  server: PrivateNatsServer,
  reader: NodeConnectionOptions,
): Promise<{ url: string; schema: TestSchema; inserted: Inserted[] }> {
  const pg = await createPgTestSchema('nats_tls');
  const id = randomBytes(5).toString('hex');
  const stream = `TLS_${id}`;
  const url = `${broker}${broker.includes('?') ? '&' : '?'}stream=${stream}&subject_prefix=t${id}`;
  try {
    const { rows: inserted } = await pg.db.query<Inserted>(
      `INSERT INTO "${pg.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
       SELECT 'lesson', 'agg-' || (i % ${AGGREGATES}), 'lesson-published', $1::jsonb || jsonb_build_object('n', i)
       FROM generate_series(1, ${EVENTS}) i
       RETURNING id::text, aggregate_id, (payload->>'n')::int AS n`,
      [JSON.stringify(lesson())],
    );
    const run = spawnCli(['run', '--database-url', PG_URL, '--schema', pg.schema, '--broker', url]);
    await run.waitFor('the outbox to be drained', async () => {
      const { rows } = await pg.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${pg.schema}".outbox`,
      );
      return rows[0]?.n === 0;
    });
    run.child.kill('SIGTERM');
    const result = await run.exited;
    outputs.push(result.stdout, result.stderr);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('broker connected');

    const consumer = await consumeStream(server.url, stream, reader);
    try {
      await waitFor('every event read back', () => consumer.received.length >= EVENTS);
      const ids = consumer.received.map((message) => message.attributes.id);
      expect(new Set(ids)).toEqual(new Set(inserted.map((row) => row.id)));
      expect(ids).toHaveLength(EVENTS);
      const byId = new Map(inserted.map((row) => [row.id, row]));
      for (let a = 0; a < AGGREGATES; a++) {
        const ns = ids
          .map((eventId) => byId.get(eventId ?? ''))
          .filter((row) => row?.aggregate_id === `agg-${a}`)
          .map((row) => row?.n);
        expect(ns).toHaveLength(EVENTS / AGGREGATES);
        expect(ns).toEqual([...ns].sort((x = 0, y = 0) => x - y));
      }
    } finally {
      await consumer.close();
    }
    return { url, schema: pg, inserted };
  } catch (error) {
    await pg.drop();
    throw error;
  }
}

/** `run` with `broker` against the errors schema. */
const runArgs = (broker: string) => [
  'run',
  '--database-url',
  PG_URL,
  '--schema',
  errorsSchema.schema,
  '--broker',
  broker,
];

/** `run` with `broker` against the errors schema, to its end: it must stop by itself. */
async function runWith(
  broker: string,
  extra: string[] = [],
  timeoutMs = 30_000,
): Promise<CliResult> {
  return cli([...runArgs(broker), ...extra], timeoutMs);
}

/** The one error line of a run that stopped on a bad setting. */
function errorLines(result: CliResult): string[] {
  return result.stderr.split('\n').filter((line) => line.startsWith('edupulse-outbox:'));
}

describe('NATS over TLS with authentication', () => {
  it('run publishes over TLS verified with ca_file, as a user whose password is in password_file', async () => {
    const { schema } = await dispatchAndReadBack(
      natsUrl(users, { ca_file: ca.certFile, password_file: files.password ?? '' }, 'outbox@'),
      users,
      { ...readerTls(), user: 'outbox', pass: PASSWORD },
    );
    await schema.drop();
  });

  it('run publishes with a token from token_file', async () => {
    const { schema } = await dispatchAndReadBack(
      natsUrl(tokens, { ca_file: ca.certFile, token_file: files.token ?? '' }),
      tokens,
      { ...readerTls(), token: TOKEN },
    );
    await schema.drop();
  });

  it('run publishes with an NKey from nkey_file, and consume() receives the events with it', async () => {
    const seed = new TextEncoder().encode(seedOf(user));
    const reader = {
      ...readerTls(),
      authenticator: (await import('@nats-io/transport-node')).nkeyAuthenticator(seed),
    };
    const { url, schema, inserted } = await dispatchAndReadBack(
      natsUrl(users, { ca_file: ca.certFile, nkey_file: files.nkey ?? '' }),
      users,
      reader,
    );
    try {
      const received: string[] = [];
      const consumer = await consumeIds(
        {
          broker: url,
          consumer: 'tls-consumer',
          database: schema.db,
          schema: schema.schema,
          events: [LessonPublished],
        },
        received,
      );
      try {
        await waitFor('consume() to receive every event', () => received.length >= EVENTS, {
          timeoutMs: 20_000,
        });
        expect(new Set(received)).toEqual(new Set(inserted.map((row) => row.id)));
      } finally {
        await consumer.stop();
      }

      // The same refusal as the dispatcher's: a ConfigError, not a retry.
      await expect(
        consume({
          broker: natsUrl(users, { ca_file: ca.certFile, nkey_file: files.strangerNkey ?? '' }),
          consumer: 'tls-consumer-refused',
          database: schema.db,
          schema: schema.schema,
          events: [LessonPublished],
          handler: () => {},
        }),
      ).rejects.toThrow(ConfigError);
    } finally {
      await schema.drop();
    }
  });

  it('run publishes with a .creds file (user JWT + seed) to a server in operator mode', async () => {
    const reader = {
      ...readerTls(),
      authenticator: (await import('@nats-io/transport-node')).credsAuthenticator(
        new TextEncoder().encode(operator.creds),
      ),
    };
    const { schema } = await dispatchAndReadBack(
      natsUrl(jwts, { ca_file: ca.certFile, creds_file: files.creds ?? '' }),
      jwts,
      reader,
    );
    await schema.drop();
  });

  it('run publishes with a client certificate to a server that verifies clients; without one it exits 2', async () => {
    const { schema } = await dispatchAndReadBack(
      natsUrl(mutual, {
        ca_file: ca.certFile,
        cert_file: client.certFile,
        key_file: client.keyFile,
      }),
      mutual,
      { tls: { ca: ca.cert, cert: client.cert, key: client.key } },
    );
    await schema.drop();

    const without = await runWith(natsUrl(mutual, { ca_file: ca.certFile }));
    expect(without.code).toBe(2);
    expect(errorLines(without)).toEqual([
      expect.stringMatching(/^edupulse-outbox: broker: cannot connect to NATS at .*: TLS: /),
    ]);
  });

  it('a cluster that wants a client certificate, none given: exit 2, not a start that never ends', async () => {
    // The servers tell the client of each other (their cluster's client addresses), which
    // kept its first connect going round them for ever.
    const serverCert = ca.issue('nats-cluster', 'localhost', ['DNS:localhost', 'IP:127.0.0.1']);
    const cluster = await startNatsCluster(2, {
      certFile: serverCert.certFile,
      keyFile: serverCert.keyFile,
      caFile: ca.certFile,
      verify: true,
    });
    try {
      // It gives up the first connect after 10 s (twice timeout_ms), then asks the first
      // server for its verdict: well within the minute, even on a busy machine.
      const without = await runWith(
        `${cluster.url}?ca_file=${encodeURIComponent(ca.certFile)}`,
        [],
        60_000,
      );
      expect(without.code, without.stderr).toBe(2);
      expect(errorLines(without)).toEqual([
        expect.stringMatching(/^edupulse-outbox: broker: cannot connect to NATS at .*: TLS: /),
      ]);
    } finally {
      await cluster.destroy();
    }
  });

  it('a server list whose first server is down: the client connects to one that answers', async () => {
    const down = await freePort();
    const list = `nats://outbox@localhost:${down},localhost:${users.port}?ca_file=${encodeURIComponent(ca.certFile)}&password_file=${encodeURIComponent(files.password ?? '')}`;
    const { schema } = await dispatchAndReadBack(list, users, {
      ...readerTls(),
      user: 'outbox',
      pass: PASSWORD,
    });
    await schema.drop();
  });

  it('a server whose certificate another CA signed: exit 2, one line naming the setting', async () => {
    for (const params of [
      { ca_file: otherCa.certFile, password_file: files.password ?? '' },
      // Without ca_file the client upgrades to TLS (the server requires it) and trusts
      // only the system's CAs, which do not know the test CA.
      { password_file: files.password ?? '' },
    ]) {
      const result = await runWith(natsUrl(users, params, 'outbox@'), ['--verbose']);
      expect({ params, code: result.code }).toEqual({ params, code: 2 });
      expect(errorLines(result)).toEqual([
        expect.stringMatching(
          /^edupulse-outbox: broker: cannot connect to NATS at nats:\/\/\*\*\*@localhost:\d+: TLS: the server's certificate is not trusted/,
        ),
      ]);
    }
  });

  it('wrong credentials of every form: exit 2 naming the setting and the form refused', async () => {
    const cases: [string, RegExp][] = [
      [
        natsUrl(
          users,
          { ca_file: ca.certFile, password_file: files.wrongPassword ?? '' },
          'outbox@',
        ),
        /the server refused a user and password: .*Authorization Violation/i,
      ],
      [
        natsUrl(users, { ca_file: ca.certFile }, `outbox:${WRONG_PASSWORD}@`),
        /the server refused a user and password/,
      ],
      [
        natsUrl(tokens, { ca_file: ca.certFile, token_file: files.wrongToken ?? '' }),
        /the server refused a token/,
      ],
      [natsUrl(tokens, { ca_file: ca.certFile }, `${WRONG_TOKEN}@`), /the server refused a token/],
      [
        natsUrl(users, { ca_file: ca.certFile, nkey_file: files.strangerNkey ?? '' }),
        /the server refused the NKey of nkey_file/,
      ],
      [
        natsUrl(jwts, { ca_file: ca.certFile, creds_file: files.strangerCreds ?? '' }),
        /the server refused the user JWT of creds_file/,
      ],
      [
        natsUrl(users, { ca_file: ca.certFile }),
        /the server refused a connection without credentials/,
      ],
    ];
    const results = await Promise.all(cases.map(([url]) => runWith(url, ['--verbose'])));
    results.forEach((result, i) => {
      const [url, reason] = cases[i] ?? ['', /$^/];
      expect({ url, code: result.code }).toEqual({ url, code: 2 });
      const lines = errorLines(result);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^edupulse-outbox: broker: cannot connect to NATS at /);
      expect(lines[0]).toMatch(reason);
    });
  });

  it('checks the server certificate against the address or name the URL gives', async () => {
    const servers = await Promise.all([
      startNatsServer({ tls: tlsOf(ca.issue('by-address', '127.0.0.1', ['IP:127.0.0.1'])) }),
      startNatsServer({ tls: tlsOf(ca.issue('by-name', 'localhost', ['DNS:localhost'])) }),
    ]);
    const [byAddress, byName] = servers;
    try {
      const connects = async (host: string, server: PrivateNatsServer | undefined) => {
        const broker = brokerFromUrl(
          `nats://${host}:${server?.port}?ca_file=${encodeURIComponent(ca.certFile)}`,
          { source: '/edupulse-test' },
        );
        try {
          await broker.connect();
          return 'connected';
        } catch (error) {
          return error instanceof ConfigError ? error.message : `not refused: ${error}`;
        } finally {
          await broker.close();
        }
      };
      expect(await connects('127.0.0.1', byAddress)).toBe('connected');
      expect(await connects('localhost', byName)).toBe('connected');
      // A certificate for localhost is not one for the address, though the address is
      // the loopback's; nor the reverse.
      expect(await connects('127.0.0.1', byName)).toMatch(
        /^broker: cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: TLS: the server's certificate does not name the host the URL gives \(.*127\.0\.0\.1/,
      );
      expect(await connects('localhost', byAddress)).toMatch(
        /TLS: the server's certificate does not name the host the URL gives \(.*localhost/,
      );
    } finally {
      await Promise.all(servers.map((server) => server.destroy()));
    }
  });

  it('tls=true to a server without TLS: exit 2', async () => {
    // The machine's NATS speaks plain text; the client refuses before sending anything.
    const result = await runWith('nats://127.0.0.1:4222?tls=true');
    expect(result.code).toBe(2);
    expect(errorLines(result)).toEqual([
      expect.stringMatching(/^edupulse-outbox: broker: .*does not offer TLS/),
    ]);
  });

  it('a server that is down is retried, not refused', async () => {
    const down = await freePort();
    const run = spawnCli(
      runArgs(
        natsUrl(down, { ca_file: ca.certFile, password_file: files.password ?? '' }, 'outbox@'),
      ),
    );
    await run.waitFor('two retries', () => run.stderr.split('broker unavailable').length > 2);
    run.child.kill('SIGTERM');
    const result = await run.exited;
    outputs.push(result.stdout, result.stderr);
    expect(result.code).toBe(0);
  });

  it('names the parameter of a file that cannot be read or does not hold what it should', async () => {
    const missing = join(ca.dir, 'missing');
    const garbage = file('garbage.txt', 'not a certificate, key, seed or creds\n');
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ ca_file: missing }, '', /broker: ca_file: cannot read .*missing/],
      [{ ca_file: garbage }, '', /broker: ca_file: /],
      [{ cert_file: client.certFile }, '', /broker: cert_file and key_file go together/],
      [
        { cert_file: client.certFile, key_file: otherCa.certFile },
        '',
        /broker: cert_file, key_file: /,
      ],
      [{ password_file: missing }, 'outbox@', /broker: password_file: cannot read .*missing/],
      [{ password_file: files.password ?? '' }, '', /broker: password_file needs the user/],
      [{ token_file: missing }, '', /broker: token_file: cannot read/],
      [{ nkey_file: garbage }, '', /broker: nkey_file: .* holds no user NKey seed/],
      [{ creds_file: garbage }, '', /broker: creds_file: .* is not a \.creds file/],
      [
        { nkey_file: files.nkey ?? '', token_file: files.token ?? '' },
        '',
        /broker: token_file and nkey_file are both given: keep one/,
      ],
      [{ tls: 'false', ca_file: ca.certFile }, '', /broker: tls=false with ca_file/],
    ];
    for (const [params, userinfo, message] of cases) {
      const result = await runWith(natsUrl(users, params, userinfo));
      expect({ params, code: result.code }).toEqual({ params, code: 2 });
      expect(errorLines(result)).toEqual([expect.stringMatching(message)]);
    }
  });

  it('no output of any of these commands held a secret', () => {
    expect(outputs.length).toBeGreaterThan(30);
    const secrets = [
      PASSWORD,
      TOKEN,
      WRONG_PASSWORD,
      WRONG_TOKEN,
      seedOf(user),
      seedOf(stranger),
      operator.userJwt,
      operator.userSeed,
      // A line of the client's private key.
      client.key.split('\n')[1] ?? '',
    ];
    for (const output of outputs) {
      for (const secret of secrets) {
        expect(secret.length).toBeGreaterThan(8);
        expect(output).not.toContain(secret);
        expect(output).not.toContain(encodeURIComponent(secret));
      }
    }
  });
});
