/**
 * RabbitMQ over TLS with a client certificate and a password from a file, as production
 * clusters run it: a private RabbitMQ node (test/helpers/rabbitmq-node.ts) with an AMQPS
 * listener that requires a client certificate from a CA this test makes with openssl, and
 * a plain listener for the test's own reading client. The CLI publishes events enqueued in
 * a fresh schema; an independent amqplib consumer reads them back from a queue bound to
 * the test's own exchange. A wrong CA, a missing client certificate, a wrong password, an
 * unreadable password_file and heartbeat / frame_max out of range are exit 2 with one
 * line naming what to fix; a URL listing a dead server first reaches the next one; a
 * dispatcher whose server goes away mid-drain goes on with the next listed, losing
 * nothing and keeping each aggregate's order; no output ever holds the password.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/free-port.mjs';
import { ConfigError } from '../../src/common/errors.js';
import { type AmqpConsumer, consumeExchange, testExchange } from '../helpers/amqp.js';
import { createTestCa, type Issued, type TestCa } from '../helpers/certs.js';
import { expectNoSecretIn, killChildren, lines, spawnCli } from '../helpers/cli.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import {
  consumeRefused,
  consumeWhileRunPublishes,
  errorLine,
  recordedCli,
  runArgs,
} from '../helpers/network-cli.js';
import { enqueueNumbered } from '../helpers/outbox.js';
import { type RabbitNode, startRabbitNode } from '../helpers/rabbitmq-node.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

afterEach(killChildren);

const USER = 'outbox';
const PASSWORD = 'Rabbit-Secret-7c41d9';
const WRONG_PASSWORD = 'Not-The-Rabbit-Password-3e';

let ca: TestCa;
let otherCa: TestCa;
let client: Issued;
let node: RabbitNode;
let t: TestSchema;
let passwordFile: string;
const recorded = recordedCli();
const { outputs, cli, stopCleanly } = recorded;
const cleanups: (() => Promise<void>)[] = [];

/**
 * An amqps:// URL to the node's TLS listener (or `servers`), as `userinfo`, with the
 * password file, the CA and the client certificate unless `params` empties them.
 */
function amqpsUrl(params: Record<string, string>, servers?: string, userinfo = USER): string {
  const query = new URLSearchParams({
    password_file: passwordFile,
    ca_file: ca.certFile,
    cert_file: client.certFile,
    key_file: client.keyFile,
    ...params,
  });
  for (const [name, value] of [...query]) if (value === '') query.delete(name);
  return `amqps://${userinfo}@${servers ?? `localhost:${node.tlsPort}`}/?${query}`;
}

/**
 * A fresh exchange, an independent reader of everything routed to it (on the node's plain
 * listener), and `count` numbered events enqueued for aggregates named after it.
 */
async function readerAndEvents(count: number) {
  const exchange = testExchange();
  const reader = await consumeExchange(exchange, '#', node.url);
  cleanups.push(() => reader.close());
  const prefix = exchange.replace(/\./g, '-');
  await enqueueNumbered(t, prefix, 0, count);
  return { exchange, reader, prefix };
}

/** Each aggregate's `n`s in the order `reader` received them. */
function perAggregate(reader: AmqpConsumer): Map<string, number[]> {
  const seen = new Map<string, number[]>();
  for (const m of reader.received) {
    const subject = m.attributes.subject ?? '';
    const list = seen.get(subject) ?? [];
    list.push((JSON.parse(m.body) as { n: number }).n);
    seen.set(subject, list);
  }
  return seen;
}

/** What the node says of its client connections (`rabbitmqctl list_connections`). */
async function serverConnections(columns: string[]): Promise<string[][]> {
  const stdout = await node.ctl(['-q', 'list_connections', '--no-table-headers', ...columns]);
  return lines(stdout).map((line) => line.split('\t'));
}

beforeAll(async () => {
  ca = createTestCa();
  otherCa = createTestCa('Another CA');
  client = ca.issue('rabbitmq-client', 'edupulse-outbox');
  const server = ca.issue('rabbitmq', 'localhost', ['DNS:localhost', 'IP:127.0.0.1']);
  passwordFile = join(ca.dir, 'rabbitmq-password');
  writeFileSync(passwordFile, `${PASSWORD}\n`);
  t = await createPgTestSchema('amqp_tls');
  node = await startRabbitNode({
    user: USER,
    password: PASSWORD,
    tls: {
      caFile: ca.certFile,
      certFile: server.certFile,
      keyFile: server.keyFile,
      requireClientCertificate: true,
    },
  });
}, 180_000);

afterAll(async () => {
  await killChildren();
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await node?.stop();
  await t?.drop();
  ca?.remove();
  otherCa?.remove();
}, 120_000);

describe('RabbitMQ over TLS', () => {
  it('run publishes over amqps (CA verified, client certificate, password_file, heartbeat, frame_max)', async () => {
    const { exchange, reader, prefix } = await readerAndEvents(12);
    const run = spawnCli(
      runArgs(t.schema, amqpsUrl({ exchange, heartbeat: '7', frame_max: '8192' })),
    );
    await run.waitFor('12 events read back', () => reader.received.length >= 12, 60_000);
    // The server's view of the dispatcher's connection: TLS, the user, what it asked for.
    const connections = await serverConnections(['user', 'ssl', 'frame_max', 'timeout']);
    expect(connections).toContainEqual([USER, 'true', '8192', '7']);
    await stopCleanly(run);
    const seen = perAggregate(reader);
    for (let a = 0; a < 3; a++) {
      expect(seen.get(`${prefix}-${a}`)).toEqual([0, 1, 2, 3].map((i) => i * 3 + a));
    }
  });

  it('refuses a server whose certificate another CA signed: exit 2 naming ca_file', async () => {
    const result = await cli(runArgs(t.schema, amqpsUrl({ ca_file: otherCa.certFile })));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: cannot connect to amqps:\/\/outbox:\*\*\*@localhost:\d+\/: TLS: the server's certificate does not verify against the CA of ca_file: /,
    );
  });

  it('without a client certificate: exit 2 saying the server wants one', async () => {
    const result = await cli(runArgs(t.schema, amqpsUrl({ cert_file: '', key_file: '' })));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: cannot connect to amqps:\/\/outbox:\*\*\*@localhost:\d+\/: TLS: the server refuses the client certificate \(give one with cert_file and key_file\): \S/,
    );
  });

  it('a wrong password is exit 2 naming the user, and shows neither password', async () => {
    const wrong = join(ca.dir, 'wrong-password');
    writeFileSync(wrong, WRONG_PASSWORD);
    const result = await cli(runArgs(t.schema, amqpsUrl({ password_file: wrong })));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: cannot connect to amqps:\/\/outbox:\*\*\*@localhost:\d+\/: the server refused user "outbox" \(check the user, and the password or password_file\): .*ACCESS_REFUSED/,
    );
    expect(`${result.stdout}${result.stderr}`).not.toContain(WRONG_PASSWORD);
  });

  it('consume() receives over amqps, and refuses a wrong password with a ConfigError', async () => {
    const exchange = testExchange();
    const broker = amqpsUrl({ exchange });
    await consumeWhileRunPublishes(t, broker, 'grades', recorded);

    const refused = consumeRefused(
      t,
      amqpsUrl({ exchange, password_file: '' }, undefined, `${USER}:${WRONG_PASSWORD}`),
    );
    await expect(refused).rejects.toBeInstanceOf(ConfigError);
    await expect(refused).rejects.toThrow(/^broker: .*the server refused user "outbox"/);
    await expect(refused).rejects.not.toThrow(WRONG_PASSWORD);
  });
});

describe('the URL parameters', () => {
  it('name the parameter that is wrong, in one line, before connecting', async () => {
    const missing = join(ca.dir, 'missing.pem');
    for (const [params, message] of [
      [
        { password_file: missing },
        /^edupulse-outbox: broker: password_file: cannot read .*missing\.pem/,
      ],
      [{ ca_file: missing }, /^edupulse-outbox: broker: ca_file: cannot read .*missing\.pem/],
      [{ key_file: '' }, /^edupulse-outbox: broker: cert_file and key_file go together/],
      [{ key_file: otherCa.certFile }, /^edupulse-outbox: broker: cert_file, key_file: /],
      [
        { heartbeat: '0' },
        /^edupulse-outbox: broker: heartbeat="0" is not a whole number from 1 to 3600/,
      ],
      [{ heartbeat: '86400' }, /^edupulse-outbox: broker: heartbeat="86400" is not a whole/],
      [
        { frame_max: '1000' },
        /^edupulse-outbox: broker: frame_max="1000" is not a whole number from 4096 to 1048576/,
      ],
      [{ frame_max: '4194304' }, /^edupulse-outbox: broker: frame_max="4194304" is not a whole/],
    ] as const) {
      const result = await cli(runArgs(t.schema, amqpsUrl(params), { verbose: false }));
      expect({ params, code: result.code }).toEqual({ params, code: 2 });
      expect(lines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toMatch(message);
    }
    const plain = await cli(
      runArgs(t.schema, `amqp://${USER}@127.0.0.1:${node.port}/?ca_file=${ca.certFile}`, {
        verbose: false,
      }),
    );
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(
      /broker: ca_file given with amqp:\/\/, which is plain text: use amqps:\/\//,
    );
  });
});

describe('several servers', () => {
  it('a URL listing a dead server first: run connects to the next one', async () => {
    const { exchange, reader } = await readerAndEvents(9);
    const dead = `127.0.0.1:${await freePort()}`;
    const run = spawnCli(
      runArgs(t.schema, amqpsUrl({ exchange }, `${dead},localhost:${node.tlsPort}`)),
    );
    await run.waitFor('9 events read back', () => reader.received.length >= 9, 60_000);
    await stopCleanly(run);
    expect(reader.received).toHaveLength(9);
  });

  it('the server in use goes away mid-drain: the rest arrive through the next, none lost, each aggregate in order', async () => {
    // Two nodes; the dispatcher reaches the first through a proxy, whose stop cuts its
    // connection and refuses new ones, while the node itself (and what it confirmed) stays
    // for the readers, which connect to each node directly.
    const second = await startRabbitNode({ user: USER, password: PASSWORD });
    cleanups.push(() => second.stop());
    const proxy: TcpProxy = await startTcpProxy({ host: '127.0.0.1', port: node.port });
    cleanups.push(() => proxy.stop());
    const exchange = testExchange();
    const readers = [
      await consumeExchange(exchange, '#', node.url),
      await consumeExchange(exchange, '#', second.url),
    ] as const;
    cleanups.push(async () => {
      for (const reader of readers) await reader.close();
    });
    const prefix = exchange.replace(/\./g, '-');
    const total = 3000;
    const aggregates = 10;
    const broker = `amqp://${USER}@127.0.0.1:${proxy.port},127.0.0.1:${second.port}/?${new URLSearchParams({ password_file: passwordFile, exchange })}`;
    const run = spawnCli(
      runArgs(t.schema, broker, { verbose: false, extra: ['--batch-size', '20'] }),
    );
    // Events keep coming while the first server goes, so the cut falls mid-drain.
    for (let from = 0; from < total; from += 100) {
      await enqueueNumbered(t, prefix, from, from + 100, aggregates);
      if (from === 1000) {
        await run.waitFor(
          'events through the first server',
          () => readers[0].received.length > 0,
          30_000,
        );
        await proxy.stop();
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const distinct = () =>
      new Set(readers.flatMap((reader) => reader.received.map((m) => m.dedupId))).size;
    await run.waitFor(`${total} events read back`, () => distinct() >= total, 90_000);
    await stopCleanly(run);

    const [first, next] = readers.map(perAggregate) as [
      Map<string, number[]>,
      Map<string, number[]>,
    ];
    expect(first.size).toBeGreaterThan(0);
    expect(next.size).toBe(aggregates);
    for (let a = 0; a < aggregates; a++) {
      const subject = `${prefix}-${a}`;
      const before = first.get(subject) ?? [];
      const after = next.get(subject) ?? [];
      // Each server got the aggregate's events in order; the second may repeat the last
      // ones the first had confirmed (at-least-once), and together they hold them all.
      expect(before).toEqual([...before].sort((x, y) => x - y));
      expect(after).toEqual([...after].sort((x, y) => x - y));
      expect(new Set(before).size).toBe(before.length);
      expect(new Set(after).size).toBe(after.length);
      const expected = [...Array(total).keys()].filter((n) => n % aggregates === a);
      expect([...new Set([...before, ...after])].sort((x, y) => x - y)).toEqual(expected);
    }
  });
});

describe('secrets', () => {
  it('no output of any of these commands held the password', () => {
    expect(outputs.length).toBeGreaterThan(10);
    expectNoSecretIn(outputs, PASSWORD);
  });
});
