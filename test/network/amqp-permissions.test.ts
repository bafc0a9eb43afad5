/**
 * RabbitMQ with least-privilege users, as a platform team runs it: a private RabbitMQ node
 * whose service users have no configure permission; an administrator declares the
 * exchange, the consumer's queue and its binding. The dispatcher and consume() work with
 * the permissions docs/operations.md lists. What the server refuses for good (the exchange
 * missing, another type, no write permission) is a setting to fix: `run` exits 2 with one
 * line saying what, and the events stay in the outbox (none dead-lettered, none lost);
 * consume() rejects with a ConfigError. No output holds a password.
 */
import amqp from 'amqplib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { expectNoSecretIn, killChildren } from '../helpers/cli.js';
import { startRefusal } from '../helpers/consume.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import {
  consumeWhileRunPublishes,
  errorLine,
  outboxRows,
  recordedCli,
  runArgs,
} from '../helpers/network-cli.js';
import { enqueueLesson } from '../helpers/outbox.js';
import { type RabbitNode, startRabbitNode } from '../helpers/rabbitmq-node.js';

afterEach(killChildren);

const EXCHANGE = 'edupulse.events';
const QUEUE = `${EXCHANGE}.grades`;
const ADMIN_PASSWORD = 'Rabbit-Admin-0d8e1f';
/** configure, write, read: the permissions docs/operations.md lists for each role. */
const users = {
  outbox: { password: 'Rabbit-Outbox-5a2c7e', permissions: ['^$', '^edupulse\\.events$', '^$'] },
  grades: {
    password: 'Rabbit-Grades-9f3b16',
    permissions: ['^$', '^edupulse\\.events\\.grades$', '^edupulse\\.events(\\.grades)?$'],
  },
  nowrite: { password: 'Rabbit-Nowrite-4e6a2d', permissions: ['^$', '^$', '.*'] },
  // A consumer without write on its queue, which binding it needs.
  nobind: {
    password: 'Rabbit-Nobind-7c1d58',
    permissions: ['^$', '^$', '^edupulse\\.events(\\.grades)?$'],
  },
};

let node: RabbitNode;
let t: TestSchema;
const recorded = recordedCli();
const { outputs, cli } = recorded;

const urlAs = (user: keyof typeof users | 'admin') =>
  `amqp://${user}:${user === 'admin' ? ADMIN_PASSWORD : users[user].password}@127.0.0.1:${node.port}`;

/** What the administrator declares: the exchange of `type`, and the consumer's queue bound to it. */
async function adminDeclares(type: 'topic' | 'direct' | undefined): Promise<void> {
  const connection = await amqp.connect(node.url);
  try {
    const channel = await connection.createChannel();
    await channel.deleteQueue(QUEUE);
    await channel.deleteExchange(EXCHANGE);
    if (type === undefined) return;
    await channel.assertExchange(EXCHANGE, type, { durable: true });
    await channel.assertQueue(QUEUE, {
      durable: true,
      arguments: { 'x-single-active-consumer': true, 'x-queue-type': 'classic' },
    });
    await channel.bindQueue(QUEUE, EXCHANGE, 'lesson.lesson-published');
  } finally {
    await connection.close();
  }
}

beforeAll(async () => {
  node = await startRabbitNode({ user: 'admin', password: ADMIN_PASSWORD });
  for (const [user, { password, permissions }] of Object.entries(users)) {
    await node.ctl(['add_user', user, password]);
    await node.ctl(['set_permissions', '-p', '/', user, ...permissions]);
  }
  t = await createPgTestSchema('amqp_perms');
}, 120_000);

beforeEach(async () => {
  await t.db.query(`DELETE FROM "${t.schema}".outbox`);
  await t.db.query(`DELETE FROM "${t.schema}".outbox_dead_letter`);
});

afterAll(async () => {
  await killChildren();
  for (const secret of [ADMIN_PASSWORD, ...Object.values(users).map((u) => u.password)]) {
    expectNoSecretIn(outputs, secret);
  }
  await node?.stop();
  await t?.drop();
}, 120_000);

describe('RabbitMQ with least-privilege users', () => {
  it('consume() refused the binding of its queue rejects naming the permissions to grant', async () => {
    await adminDeclares('topic');
    const refused = await startRefusal(urlAs('nobind'), 'grades', t);
    expect(refused.message).toMatch(
      /RabbitMQ refused to bind queue "edupulse\.events\.grades" to "edupulse\.events" .*403.*; grant the user write permission on queue "edupulse\.events\.grades" and read permission on exchange "edupulse\.events" \(docs\/operations\.md, "Least-privilege broker users"\)$/,
    );
  });

  it('publishes to the exchange an administrator declared, and consume() receives from its queue, with no configure permission', async () => {
    await adminDeclares('topic');
    await consumeWhileRunPublishes(t, urlAs('grades'), 'grades', recorded, urlAs('outbox'));
    expect(await outboxRows(t)).toEqual({ pending: 0, dead: 0 });
  });

  it('an exchange missing and not the user to declare: exit 2 saying so, events kept', async () => {
    await adminDeclares(undefined);
    await enqueueLesson(t);
    const result = await cli(runArgs(t.schema, urlAs('outbox')));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: amqp:\/\/outbox:\*\*\*@127\.0\.0\.1:\d+: exchange "edupulse\.events" does not exist, and this user may not declare it \(.*ACCESS_REFUSED.*\); have it declared beforehand as a durable topic exchange, or grant the user configure permission on it$/,
    );
    expect(await outboxRows(t)).toEqual({ pending: 1, dead: 0 });
  });

  it('an exchange of another type: exit 2 naming the difference, not retried for ever', async () => {
    await adminDeclares('direct');
    await enqueueLesson(t);
    const result = await cli(runArgs(t.schema, urlAs('admin')));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /exchange "edupulse\.events" exists with settings other than ours \(a durable topic exchange\): .*PRECONDITION_FAILED - inequivalent arg 'type'.*received 'topic' but current is 'direct'/,
    );
    expect(await outboxRows(t)).toEqual({ pending: 1, dead: 0 });
  });

  it('no write permission on the exchange: exit 2 saying so, nothing dead-lettered', async () => {
    await adminDeclares('topic');
    for (let n = 0; n < 3; n++) await enqueueLesson(t);
    const result = await cli(
      runArgs(t.schema, urlAs('nowrite'), { extra: ['--max-attempts', '1'] }),
    );
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: amqp:\/\/nowrite:\*\*\*@127\.0\.0\.1:\d+: the server does not let this user publish to exchange "edupulse\.events": .*ACCESS_REFUSED.*; grant it write permission on the exchange$/,
    );
    expect(result.stderr).not.toContain('event dead-lettered');
    expect(await outboxRows(t)).toEqual({ pending: 3, dead: 0 });
  });

  it('consume() whose queue is missing and not its to declare rejects with a ConfigError saying how to declare it', async () => {
    await adminDeclares('topic');
    const connection = await amqp.connect(node.url);
    await (await connection.createChannel()).deleteQueue(QUEUE);
    await connection.close();
    const refused = await startRefusal(urlAs('grades'), 'grades', t);
    expect(refused.message).toMatch(
      /queue "edupulse\.events\.grades" does not exist, and this user may not declare it .*have it declared beforehand as a durable queue with \{"x-single-active-consumer":true,"x-queue-type":"classic"\}/,
    );
  });
});
