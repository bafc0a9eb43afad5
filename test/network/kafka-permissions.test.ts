/**
 * Kafka with ACLs, as a platform team runs it: a private Kafka (test/helpers/secure-kafka.ts)
 * with the StandardAuthorizer, whose service users may write, read and describe the
 * outbox's topics but not create them; an administrator creates the topics. The dispatcher
 * and consume() work with the ACLs docs/operations.md lists. An ACL missing is a setting
 * to fix: `run` exits 2 with one line naming what was refused, and the events stay in the
 * outbox (none dead-lettered, none lost); consume() rejects with a ConfigError. No output
 * holds a password.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Admin } from '@platformatic/kafka';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestCa, type TestCa } from '../helpers/certs.js';
import { expectNoSecretIn, killChildren } from '../helpers/cli.js';
import { startRefusal } from '../helpers/consume.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { testAdmin, uniqueName } from '../helpers/kafka.js';
import {
  consumeWhileRunPublishes,
  errorLine,
  outboxRows,
  recordedCli,
  runArgs,
} from '../helpers/network-cli.js';
import { enqueueLesson } from '../helpers/outbox.js';
import { type SecureKafka, startSecureKafka } from '../helpers/secure-kafka.js';

afterEach(killChildren);

/** The outbox's topics here: `<BASE>…`, so that ACLs on this prefix cover them. */
const BASE = uniqueName('perm');
const GROUP = `${BASE}-grades`;
const users = {
  outbox: 'Kafka-Outbox-2c9e4f',
  nowrite: 'Kafka-Nowrite-7b1d3a',
  noacl: 'Kafka-Noacl-5e8f60',
};
type User = keyof typeof users;

// The values of @platformatic/kafka's ResourceTypes, ResourcePatternTypes, AclOperations.
const TOPIC = 2;
const GROUP_RESOURCE = 3;
const LITERAL = 3;
const PREFIXED = 4;
const READ = 3;
const WRITE = 4;
const DESCRIBE = 8;

let ca: TestCa;
let kafka: SecureKafka;
let admin: Admin;
let t: TestSchema;
const passwordFiles: Record<string, string> = {};
const recorded = recordedCli();
const { outputs, cli } = recorded;

function allow(user: User, resourceType: number, name: string, operation: number, pattern: number) {
  return {
    resourceType,
    resourceName: name,
    resourcePatternType: pattern,
    principal: `User:${user}`,
    host: '*',
    operation,
    permissionType: 3,
  } as Parameters<Admin['createAcls']>[0]['creations'][number];
}

/** The URL over SASL_SSL as `user`, publishing to `<topics>.<aggregate_type>`. */
function urlAs(user: User, topics: string): string {
  const query = new URLSearchParams({
    sasl_mechanism: 'scram-sha-512',
    password_file: passwordFiles[user] as string,
    ca_file: ca.certFile,
    topic: `${topics}.{aggregate_type}`,
  });
  return `kafka://${user}@${kafka.saslSsl}/?${query}`;
}

beforeAll(async () => {
  ca = createTestCa();
  for (const [user, password] of Object.entries(users)) {
    passwordFiles[user] = join(ca.dir, `${user}-password`);
    writeFileSync(passwordFiles[user], `${password}\n`);
  }
  const [first, ...more] = Object.entries(users).map(([user, password]) => ({ user, password }));
  kafka = await startSecureKafka({
    ca,
    ...(first as { user: string; password: string }),
    moreUsers: more,
    extraConfig: [
      'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
      'super.users=User:ANONYMOUS',
    ],
  });
  admin = testAdmin(kafka.plaintext);
  await admin.createAcls({
    creations: [
      // The documented least privilege: the dispatcher's, then the consumer's.
      allow('outbox', TOPIC, BASE, WRITE, PREFIXED),
      allow('outbox', TOPIC, BASE, DESCRIBE, PREFIXED),
      allow('outbox', TOPIC, BASE, READ, PREFIXED),
      allow('outbox', GROUP_RESOURCE, GROUP, READ, LITERAL),
      // May describe the outbox's topics, write only elsewhere (so its producer id is granted).
      allow('nowrite', TOPIC, BASE, DESCRIBE, PREFIXED),
      allow('nowrite', TOPIC, `${BASE}-elsewhere`, WRITE, LITERAL),
    ],
  });
  t = await createPgTestSchema('kafka_perms');
}, 240_000);

beforeEach(async () => {
  await t.db.query(`DELETE FROM "${t.schema}".outbox`);
  await t.db.query(`DELETE FROM "${t.schema}".outbox_dead_letter`);
});

afterAll(async () => {
  await killChildren();
  for (const password of Object.values(users)) expectNoSecretIn(outputs, password);
  await admin?.close();
  await kafka?.stop();
  await t?.drop();
  ca?.remove();
}, 120_000);

describe('Kafka with ACLs', () => {
  it('publishes to a topic an administrator created, and consume() receives, with WRITE, DESCRIBE and READ only', async () => {
    const topics = `${BASE}.a`;
    await admin.createTopics({ topics: [`${topics}.lesson`], partitions: 1, replicas: 1 });
    await consumeWhileRunPublishes(t, urlAs('outbox', topics), GROUP, recorded);
    expect(await outboxRows(t)).toEqual({ pending: 0, dead: 0 });
  });

  it('a topic missing and not the user to create: exit 2 naming the topic, events kept', async () => {
    const topics = `${BASE}.b`;
    await enqueueLesson(t);
    const result = await cli(runArgs(t.schema, urlAs('outbox', topics)));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      new RegExp(
        `^edupulse-outbox: broker: kafka://outbox:\\*\\*\\*@127\\.0\\.0\\.1:\\d+: topic "${topics}\\.lesson" does not exist, and this user may not create it \\(no CREATE ACL\\)`,
      ),
    );
    expect(await outboxRows(t)).toEqual({ pending: 1, dead: 0 });
  });

  it('no WRITE on the topic: exit 2 naming the ACL, nothing dead-lettered', async () => {
    const topics = `${BASE}.c`;
    await admin.createTopics({ topics: [`${topics}.lesson`], partitions: 1, replicas: 1 });
    for (let n = 0; n < 3; n++) await enqueueLesson(t);
    const result = await cli(
      runArgs(t.schema, urlAs('nowrite', topics), { extra: ['--max-attempts', '1'] }),
    );
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: kafka:\/\/nowrite:\*\*\*@127\.0\.0\.1:\d+: publish refused: TOPIC_AUTHORIZATION_FAILED: .*\(the user needs WRITE and DESCRIBE on the topic\)$/,
    );
    expect(result.stderr).not.toContain('event dead-lettered');
    expect(await outboxRows(t)).toEqual({ pending: 3, dead: 0 });
  });

  it('no ACL at all, so no IDEMPOTENT_WRITE: exit 2 naming it, not an outage', async () => {
    await enqueueLesson(t);
    const result = await cli(runArgs(t.schema, urlAs('noacl', `${BASE}.d`)));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: kafka:\/\/noacl:\*\*\*@127\.0\.0\.1:\d+: cannot start the idempotent producer: CLUSTER_AUTHORIZATION_FAILED: .*IDEMPOTENT_WRITE on the cluster/,
    );
    expect(await outboxRows(t)).toEqual({ pending: 1, dead: 0 });
  });

  it('consume() without READ on its consumer group rejects with a ConfigError naming the group', async () => {
    const topics = `${BASE}.e`;
    await admin.createTopics({ topics: [`${topics}.lesson`], partitions: 1, replicas: 1 });
    const refused = await startRefusal(urlAs('outbox', topics), `${BASE}-other`, t);
    expect(refused.message).toMatch(
      `may not read consumer group "${BASE}-other" (GROUP_AUTHORIZATION_FAILED`,
    );
  });
});
