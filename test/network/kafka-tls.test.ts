/**
 * Kafka over TLS with SASL, as managed clusters run it: a private Kafka from this
 * repository's script (test/helpers/secure-kafka.ts) with a SASL_SSL listener (PLAIN,
 * SCRAM-SHA-256, SCRAM-SHA-512) and an SSL listener that requires a client certificate,
 * both with certificates from a CA this test makes with openssl. The CLI publishes events
 * enqueued in a fresh schema, an independent client reads them back (over the private
 * Kafka's plain listener), consume() receives over SASL_SSL; a wrong CA, a wrong password
 * or a missing client certificate is exit 2 with one line naming the setting, while a
 * broker that is merely down is waited for; no output ever holds the password.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/free-port.mjs';
import { ConfigError } from '../../src/common/errors.js';
import { createTestCa, type TestCa } from '../helpers/certs.js';
import { expectNoSecretIn, killChildren, lines, spawnCli } from '../helpers/cli.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { consumeTestTopics, uniqueName } from '../helpers/kafka.js';
import {
  consumeRefused,
  consumeWhileRunPublishes,
  errorLine,
  recordedCli,
  runArgs,
} from '../helpers/network-cli.js';
import { enqueueNumbered } from '../helpers/outbox.js';
import { type SecureKafka, startSecureKafka } from '../helpers/secure-kafka.js';

afterEach(killChildren);

const USER = 'outbox';
const PASSWORD = 'Kafka-Secret-5d2e8b';
const WRONG_PASSWORD = 'Not-The-Kafka-Password-61';

let ca: TestCa;
let otherCa: TestCa;
let kafka: SecureKafka;
let t: TestSchema;
let passwordFile: string;
const recorded = recordedCli();
const { outputs, cli, stopCleanly } = recorded;

function file(name: string, content: string): string {
  const path = join(ca.dir, name);
  writeFileSync(path, content);
  return path;
}

/** A kafka:// URL to `server`, as `user` unless it is empty; `params` are its query. */
function kafkaUrl(server: string, params: Record<string, string>, user = USER): string {
  const query = new URLSearchParams(params).toString();
  return `kafka://${user ? `${user}@` : ''}${server}/?${query}`;
}

/**
 * Runs the dispatcher with `broker` until an independent client has read the `count`
 * events of `prefix` from the topic `<prefix>.lesson`, then stops it (exit 0), and checks
 * that each aggregate's events arrived in the order written.
 */
async function publishAndReadBack(broker: string, prefix: string, count: number): Promise<void> {
  const reader = consumeTestTopics([`${prefix}.lesson`], `${prefix}-read`, kafka.plaintext);
  try {
    await enqueueNumbered(t, prefix, 0, count);
    const run = spawnCli(runArgs(t.schema, broker));
    await run.waitFor(
      `${count} events read back`,
      () => reader.received.filter((m) => m.attributes.subject?.startsWith(prefix)).length >= count,
      90_000,
    );
    await stopCleanly(run);
  } finally {
    await reader.close();
  }
  for (let a = 0; a < 3; a++) {
    const ns = reader.received
      .filter((m) => m.attributes.subject === `${prefix}-${a}`)
      .map((m) => (JSON.parse(m.body) as { n: number }).n);
    expect(ns).toEqual([...Array(count).keys()].filter((n) => n % 3 === a));
  }
}

beforeAll(async () => {
  ca = createTestCa();
  otherCa = createTestCa('Another CA');
  passwordFile = file('kafka-password', `${PASSWORD}\n`);
  t = await createPgTestSchema('kafka_tls');
  kafka = await startSecureKafka({ ca, user: USER, password: PASSWORD });
}, 240_000);

afterAll(async () => {
  await killChildren();
  await kafka?.stop();
  await t?.drop();
  ca?.remove();
  otherCa?.remove();
}, 120_000);

describe('Kafka over SASL_SSL', () => {
  it.each(['scram-sha-512', 'scram-sha-256', 'plain'])(
    'run publishes with sasl_mechanism=%s, ca_file and password_file',
    async (mechanism) => {
      const prefix = uniqueName('s');
      const broker = kafkaUrl(kafka.saslSsl, {
        sasl_mechanism: mechanism,
        password_file: passwordFile,
        ca_file: ca.certFile,
        topic: `${prefix}.{aggregate_type}`,
      });
      await publishAndReadBack(broker, prefix, 9);
    },
  );

  it('refuses a server whose certificate another CA signed: exit 2, one line naming the broker', async () => {
    const result = await cli(
      runArgs(
        t.schema,
        kafkaUrl(kafka.saslSsl, {
          sasl_mechanism: 'scram-sha-512',
          password_file: passwordFile,
          ca_file: otherCa.certFile,
        }),
      ),
    );
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: kafka:\/\/outbox:\*\*\*@127\.0\.0\.1:\d+: TLS: the server's certificate does not verify against the CA of ca_file/,
    );
  });

  it.each(['scram-sha-512', 'plain'])(
    'a wrong password (%s) is exit 2 naming the broker, and shows neither password',
    async (mechanism) => {
      const wrong = file('wrong-password', `${WRONG_PASSWORD}\n`);
      const result = await cli(
        runArgs(
          t.schema,
          kafkaUrl(kafka.saslSsl, {
            sasl_mechanism: mechanism,
            password_file: wrong,
            ca_file: ca.certFile,
          }),
        ),
      );
      expect(result.code).toBe(2);
      expect(errorLine(result)).toMatch(
        new RegExp(
          `^edupulse-outbox: broker: kafka://outbox:\\*\\*\\*@127\\.0\\.0\\.1:\\d+: SASL ${mechanism.toUpperCase()} authentication of user "outbox" failed`,
        ),
      );
      expect(`${result.stdout}${result.stderr}`).not.toContain(WRONG_PASSWORD);
    },
  );

  it('waits for a broker that is down, as for any outage, and stops cleanly', async () => {
    const down = `127.0.0.1:${await freePort()}`;
    const run = spawnCli(
      runArgs(
        t.schema,
        kafkaUrl(down, {
          sasl_mechanism: 'scram-sha-512',
          password_file: passwordFile,
          ca_file: ca.certFile,
        }),
      ),
    );
    await run.waitFor(
      'two retries',
      () => run.stderr.split('broker unavailable; retrying').length > 2,
      30_000,
    );
    await stopCleanly(run);
  });

  it('consume() receives over SASL_SSL, and refuses a wrong password with a ConfigError', async () => {
    const prefix = uniqueName('c');
    const broker = kafkaUrl(kafka.saslSsl, {
      sasl_mechanism: 'scram-sha-256',
      password_file: passwordFile,
      ca_file: ca.certFile,
      topic: `${prefix}.{aggregate_type}`,
    });
    await consumeWhileRunPublishes(t, broker, `${prefix}-grades`, recorded);

    const wrong = file('consumer-wrong-password', WRONG_PASSWORD);
    const refused = consumeRefused(
      t,
      kafkaUrl(kafka.saslSsl, {
        sasl_mechanism: 'scram-sha-256',
        password_file: wrong,
        ca_file: ca.certFile,
        topic: `${prefix}.{aggregate_type}`,
      }),
    );
    await expect(refused).rejects.toBeInstanceOf(ConfigError);
    await expect(refused).rejects.toThrow(/^broker: .*SASL SCRAM-SHA-256 authentication/);
  });
});

describe('Kafka over TLS with a client certificate', () => {
  it('publishes with cert_file and key_file where the listener requires them', async () => {
    const client = ca.issue('kafka-client', 'edupulse-outbox');
    const prefix = uniqueName('m');
    const broker = kafkaUrl(
      kafka.ssl,
      {
        ca_file: ca.certFile,
        cert_file: client.certFile,
        key_file: client.keyFile,
        topic: `${prefix}.{aggregate_type}`,
      },
      '',
    );
    await publishAndReadBack(broker, prefix, 6);
  });

  it('without a client certificate: exit 2 saying the server wants one, with SASL too', async () => {
    // With SASL, the refusal ends the connection during the SASL exchange, which the
    // client library reports twice (library.ts, guardConnections): still one clean line.
    for (const [params, user] of [
      [{ ca_file: ca.certFile }, ''],
      [
        { ca_file: ca.certFile, password_file: passwordFile, sasl_mechanism: 'scram-sha-512' },
        USER,
      ],
    ] as const) {
      const result = await cli(runArgs(t.schema, kafkaUrl(kafka.ssl, params, user)));
      expect({ params, code: result.code }).toEqual({ params, code: 2 });
      expect(errorLine(result)).toMatch(
        /^edupulse-outbox: broker: kafka:\/\/(outbox:\*\*\*@)?127\.0\.0\.1:\d+: TLS: the server refuses the client certificate \(give one with cert_file and key_file\): \S/,
      );
    }
  });
});

describe('a listener of the other kind', () => {
  it('tls=true to a plain-text listener is exit 2 saying it answers in plain text', async () => {
    const result = await cli(
      runArgs(t.schema, kafkaUrl(kafka.plaintext, { ca_file: ca.certFile }, '')),
    );
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: kafka:\/\/127\.0\.0\.1:\d+: TLS: 127\.0\.0\.1:\d+ answers in plain text, not TLS \(give the port of an SSL or SASL_SSL listener/,
    );
  });

  it('plain text to a TLS listener is exit 2 saying to add tls=true, with SASL too', async () => {
    for (const [server, user, params] of [
      [kafka.ssl, '', {}],
      [kafka.saslSsl, USER, { password_file: passwordFile, sasl_mechanism: 'scram-sha-512' }],
    ] as const) {
      const result = await cli(runArgs(t.schema, kafkaUrl(server, params, user)));
      expect({ server, code: result.code }).toEqual({ server, code: 2 });
      expect(errorLine(result)).toMatch(
        /^edupulse-outbox: broker: kafka:\/\/(outbox:\*\*\*@)?127\.0\.0\.1:\d+: 127\.0\.0\.1:\d+ speaks TLS, and the URL asks for plain text \(add tls=true/,
      );
    }
  });
});

describe('the URL parameters', () => {
  it('name the parameter of a file that cannot be read, in one line, before connecting', async () => {
    const missing = join(ca.dir, 'missing.pem');
    for (const [params, message] of [
      [
        { password_file: missing },
        /^edupulse-outbox: broker: password_file: cannot read .*missing\.pem/,
      ],
      [{ ca_file: missing }, /^edupulse-outbox: broker: ca_file: cannot read .*missing\.pem/],
      [
        { cert_file: missing, key_file: missing },
        /^edupulse-outbox: broker: cert_file: cannot read .*missing\.pem/,
      ],
    ] as const) {
      const result = await cli(
        runArgs(t.schema, kafkaUrl(kafka.saslSsl, params), { verbose: false }),
      );
      expect({ params, code: result.code }).toEqual({ params, code: 2 });
      expect(lines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toMatch(message);
    }
  });

  it('no output of any of these commands held the password', () => {
    expect(outputs.length).toBeGreaterThan(10);
    expectNoSecretIn(outputs, PASSWORD);
  });
});
