/**
 * A private Kafka with the listeners a production cluster has, from this repository's
 * script (scripts/kafka/kafka.sh) in a scratch directory on free ports, beside the shared
 * one on 9092 which it leaves alone:
 *
 * - `SASL_SSL`: TLS with a certificate the test CA signed (for `localhost` and
 *   127.0.0.1), then SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 for one user, whose SCRAM
 *   credentials are written when the storage is formatted;
 * - `SSL`: TLS that requires a client certificate the test CA signed;
 * - `PLAINTEXT`: for the script's health check and the tests' own reading client.
 *
 * Its certificates are PEM files (Kafka reads `ssl.keystore.type=PEM`), so no keytool.
 * `stop()` stops it and removes its directory.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../scripts/free-port.mjs';
import type { TestCa } from './certs.js';
import { testKafkaScript } from './kafka.js';

const repoKafka = fileURLToPath(new URL('../../.kafka', import.meta.url));

export interface SecureKafka {
  /** `127.0.0.1:<port>` of each listener. */
  plaintext: string;
  saslSsl: string;
  ssl: string;
  stop(): Promise<void>;
}

export interface SecureKafkaOptions {
  /** Signs the server's certificate, and the client certificates the SSL listener takes. */
  ca: TestCa;
  user: string;
  /** Letters, digits and `-` only: it goes into a JAAS line and a format argument as is. */
  password: string;
  /** More SASL users, with the same rules for their names and passwords. */
  moreUsers?: { user: string; password: string }[];
  /**
   * Lines added to the broker's properties, e.g. an authorizer. With
   * `StandardAuthorizer`, make `User:ANONYMOUS` a super user: the plain listener, the
   * controller and the tests' own clients connect as it.
   */
  extraConfig?: string[];
}

export async function startSecureKafka(options: SecureKafkaOptions): Promise<SecureKafka> {
  const { ca, user, password } = options;
  const users = [{ user, password }, ...(options.moreUsers ?? [])];
  for (const each of users) {
    if (!/^[A-Za-z0-9-]+$/.test(each.user) || !/^[A-Za-z0-9-]+$/.test(each.password)) {
      throw new Error('startSecureKafka: users and passwords must be letters, digits and "-"');
    }
  }
  // The jars of the repository's own Kafka work dir (fetched there once, under its lock).
  await testKafkaScript('install', { home: repoKafka, port: 9092, controllerPort: 9093 });

  const home = mkdtempSync(join(tmpdir(), 'edupulse-kafka-'));
  const ports = new Set<number>();
  while (ports.size < 4) ports.add(await freePort());
  const [port, controllerPort, saslSslPort, sslPort] = [...ports] as [
    number,
    number,
    number,
    number,
  ];
  const server = ca.issue('kafka', 'localhost', ['DNS:localhost', 'IP:127.0.0.1']);
  // A PEM key store is one file: the private key (PKCS#8, unencrypted) and the chain.
  const keystore = join(home, 'keystore.pem');
  writeFileSync(keystore, `${server.key}${server.cert}`);
  const config = join(home, 'secure.properties');
  const jaas = (module: string, more = '') =>
    `org.apache.kafka.common.security.${module} required${more};`;
  writeFileSync(
    config,
    [
      'ssl.keystore.type=PEM',
      `ssl.keystore.location=${keystore}`,
      'ssl.truststore.type=PEM',
      `ssl.truststore.location=${ca.certFile}`,
      'sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
      `listener.name.sasl_ssl.plain.sasl.jaas.config=${jaas(
        'plain.PlainLoginModule',
        users.map((each) => ` user_${each.user}="${each.password}"`).join(''),
      )}`,
      `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=${jaas('scram.ScramLoginModule')}`,
      `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=${jaas('scram.ScramLoginModule')}`,
      'listener.name.ssl.ssl.client.auth=required',
      ...(options.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  const scram = ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((mechanism) =>
    users.map((each) => `--add-scram ${mechanism}=[name=${each.user},password=${each.password}]`),
  );
  const instance = {
    home,
    port,
    controllerPort,
    env: {
      KAFKA_LIBS_DIR: join(repoKafka, 'libs'),
      KAFKA_EXTRA_LISTENERS: `SASL_SSL://127.0.0.1:${saslSslPort},SSL://127.0.0.1:${sslPort}`,
      KAFKA_EXTRA_CONFIG: config,
      KAFKA_FORMAT_ARGS: scram.join(' '),
      // A second JVM on a shared box: half the shared Kafka's heap is plenty for tests.
      KAFKA_HEAP_OPTS: '-Xms128m -Xmx256m',
      KAFKA_START_TIMEOUT: '150',
    },
  };
  try {
    await testKafkaScript('start', instance);
  } catch (error) {
    await testKafkaScript('stop', instance).catch(() => {});
    rmSync(home, { recursive: true, force: true });
    throw error;
  }
  return {
    plaintext: `127.0.0.1:${port}`,
    saslSsl: `127.0.0.1:${saslSslPort}`,
    ssl: `127.0.0.1:${sslPort}`,
    async stop() {
      try {
        await testKafkaScript('stop', instance);
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    },
  };
}
