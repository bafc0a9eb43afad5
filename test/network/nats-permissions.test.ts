/**
 * NATS with least-privilege users, as a platform team runs it: a private nats-server whose
 * users may publish and consume but not create streams; an administrator makes the stream.
 * The dispatcher and consume() work with the permissions docs/operations.md lists, and no
 * more. A permission missing is a setting to fix: `run` exits 2 with one line naming the
 * subject and the right, and the events stay in the outbox (none dead-lettered, none
 * lost); consume() rejects, or stops with `fatal`, saying so. No output holds a password.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { consume } from '../../src/consumer/index.js';
import { LessonPublished } from '../../src/index.js';
import { expectNoSecretIn, killChildren, spawnCli, spawnNode } from '../helpers/cli.js';
import { consumeIds, startRefusal } from '../helpers/consume.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { withConnection } from '../helpers/nats-consumer.js';
import { type PrivateNatsServer, startNatsServer } from '../helpers/nats-server.js';
import {
  consumeWhileRunPublishes,
  errorLine,
  outboxRows,
  recordedCli,
  runArgs,
} from '../helpers/network-cli.js';
import { enqueueLesson } from '../helpers/outbox.js';
import { waitFor } from '../helpers/wait.js';

afterEach(killChildren);

const STREAM = 'EDUPULSE';
/** What the dispatcher needs (docs/operations.md, NATS): publish its events, read the stream. */
const DISPATCHER = ['edupulse.>', '$JS.API.INFO', `$JS.API.STREAM.INFO.${STREAM}`];
/** What consume() as "grades" needs: its own durable consumer, its pulls and its acks. */
const consumerRights = (name: string) => [
  '$JS.API.INFO',
  `$JS.API.STREAM.INFO.${STREAM}`,
  `$JS.API.CONSUMER.INFO.${STREAM}.${name}`,
  `$JS.API.CONSUMER.DELETE.${STREAM}.${name}`,
  `$JS.API.CONSUMER.CREATE.${STREAM}.${name}.>`,
  `$JS.API.CONSUMER.MSG.NEXT.${STREAM}.${name}`,
  `$JS.ACK.${STREAM}.${name}.>`,
];
const INBOX = ['_INBOX.>'];

const users = {
  admin: { name: 'admin', password: 'Nats-Admin-1f6e3a' },
  outbox: { name: 'outbox', password: 'Nats-Outbox-8c2d57', publish: DISPATCHER, subscribe: INBOX },
  grades: {
    name: 'grades',
    password: 'Nats-Grades-3b9a04',
    publish: consumerRights('grades'),
    subscribe: INBOX,
  },
  nopub: {
    name: 'nopub',
    password: 'Nats-Nopub-6d0c1e',
    publish: DISPATCHER.filter((subject) => subject !== 'edupulse.>'),
    subscribe: INBOX,
  },
  noapi: {
    name: 'noapi',
    password: 'Nats-Noapi-2e7f95',
    publish: ['edupulse.>'],
    subscribe: INBOX,
  },
  resumer: {
    name: 'resumer',
    password: 'Nats-Resumer-5e1d7b',
    publish: consumerRights('resumer'),
    subscribe: INBOX,
  },
  // May delete the durable "resumer" but not create it: a start that ends in between.
  nocreate: {
    name: 'nocreate',
    password: 'Nats-Nocreate-0c8f3a',
    publish: consumerRights('resumer').filter((subject) => !subject.includes('.CREATE.')),
    subscribe: INBOX,
  },
  noack: {
    name: 'noack',
    password: 'Nats-Noack-9a4b6c',
    publish: consumerRights('noack').filter((subject) => !subject.startsWith('$JS.ACK.')),
    subscribe: INBOX,
  },
};

let server: PrivateNatsServer;
let t: TestSchema;
const recorded = recordedCli();
const { outputs, cli, stopCleanly } = recorded;

const urlAs = (user: keyof typeof users) =>
  `nats://${users[user].name}:${users[user].password}@127.0.0.1:${server.port}`;

/** The stream as an administrator makes it, afresh (or only removed, with no subjects). */
async function adminStream(subjects: string[] = ['edupulse.>']): Promise<void> {
  await withConnection(
    server.url,
    async (nc) => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(STREAM).catch(() => false);
      if (subjects.length > 0) {
        await jsm.streams.add({ name: STREAM, subjects, duplicate_window: 120 * 1e9 });
      }
    },
    { user: users.admin.name, pass: users.admin.password },
  );
}

beforeAll(async () => {
  server = await startNatsServer({ users: Object.values(users) });
  t = await createPgTestSchema('nats_perms');
});

beforeEach(async () => {
  await t.db.query(`DELETE FROM "${t.schema}".outbox`);
  await t.db.query(`DELETE FROM "${t.schema}".outbox_dead_letter`);
});

afterAll(async () => {
  await killChildren();
  for (const { password } of Object.values(users)) expectNoSecretIn(outputs, password);
  await server?.destroy();
  await t?.drop();
});

describe('NATS with least-privilege users', () => {
  it('publishes to the stream an administrator made, and consume() receives, with the documented permissions only', async () => {
    await adminStream();
    await consumeWhileRunPublishes(t, urlAs('grades'), 'grades', recorded, urlAs('outbox'));
    expect(await outboxRows(t)).toEqual({ pending: 0, dead: 0 });
  });

  it('a missing stream the user may not create: exit 2 naming the stream and the right, events kept', async () => {
    await adminStream([]);
    await enqueueLesson(t);
    const result = await cli(runArgs(t.schema, urlAs('outbox')));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: NATS at nats:\/\/outbox:\*\*\*@127\.0\.0\.1:\d+: NATS stream "EDUPULSE" does not exist and this user may not create it: the server does not let this user publish to "\$JS\.API\.STREAM\.CREATE\.EDUPULSE" .*nats stream add EDUPULSE --subjects 'edupulse\.>' --dupe-window 120s$/,
    );
    expect(await outboxRows(t)).toEqual({ pending: 1, dead: 0 });
  });

  it('no right to publish the events: exit 2 naming the subjects, nothing dead-lettered', async () => {
    await adminStream();
    for (let n = 0; n < 3; n++) await enqueueLesson(t);
    const result = await cli(runArgs(t.schema, urlAs('nopub'), { extra: ['--max-attempts', '1'] }));
    expect(result.code).toBe(2);
    expect(errorLine(result)).toMatch(
      /^edupulse-outbox: broker: NATS at nats:\/\/nopub:\*\*\*@127\.0\.0\.1:\d+: the server does not let this user publish to "edupulse\.lesson\.lesson-published" .*grant it publish rights on "edupulse\.>"/,
    );
    expect(result.stderr).not.toContain('event dead-lettered');
    expect(await outboxRows(t)).toEqual({ pending: 3, dead: 0 });
  });

  it('no right to the JetStream API: exit 2 naming it, not taken for an election', async () => {
    await adminStream();
    await enqueueLesson(t);
    const result = await cli(runArgs(t.schema, urlAs('noapi')));
    expect(result.code).toBe(2);
    const line = errorLine(result);
    expect(line).toMatch(/cannot reach the JetStream API: .*publish to "\$JS\.API\.INFO"/);
    expect(line).not.toMatch(/electing/);
    expect(await outboxRows(t)).toEqual({ pending: 1, dead: 0 });
  });

  it('consume() without the consumer API rejects with a ConfigError naming the subject', async () => {
    await adminStream();
    const refused = await startRefusal(urlAs('outbox'), 'grades', t);
    expect(refused.message).toMatch(/publish to "\$JS\.API\.CONSUMER\.INFO\.EDUPULSE\.grades"/);
  });

  it('a start that deleted the durable and could not make it again leaves the next process resuming from the ack floor', async () => {
    await adminStream();
    const broker = (user: keyof typeof users) => `${urlAs(user)}?deliver=new`;
    const publishOne = async () => {
      await enqueueLesson(t);
      const run = spawnCli(runArgs(t.schema, urlAs('outbox')));
      await waitFor('the event published', async () => (await outboxRows(t)).pending === 0, {
        timeoutMs: 30_000,
      });
      await stopCleanly(run);
    };
    const first: string[] = [];
    const applied = await consumeIds(
      {
        broker: broker('resumer'),
        consumer: 'resumer',
        database: t.db,
        schema: t.schema,
        events: [LessonPublished],
      },
      first,
    );
    await publishOne();
    await waitFor('the first event applied', () => first.length === 1, { timeoutMs: 30_000 });
    await applied.stop();
    // Published while no consumer runs: above the durable's ack floor.
    await publishOne();
    const refused = await startRefusal(broker('nocreate'), 'resumer', t);
    expect(refused.message).toMatch(/\$JS\.API\.CONSUMER\.CREATE\.EDUPULSE\.resumer/);
    // Another process: nothing of this one's memory.
    const resumed = spawnNode('test/helpers/consume-ids.mjs', [], {
      env: {
        BROKER_URL: broker('resumer'),
        DATABASE_URL: PG_URL,
        SCHEMA: t.schema,
        CONSUMER: 'resumer',
      },
    });
    await resumed.waitFor('the second event applied', () => resumed.lineCount() === 1, 15_000);
    expect(resumed.stdout).not.toContain(first[0]);
    resumed.child.kill('SIGTERM');
    expect((await resumed.exited).code, resumed.stderr).toBe(0);
    const { rows } = await t.db.query(`SELECT 1 FROM "${t.schema}".consumer_resume`);
    expect(rows).toEqual([]);
  });

  it('consume() without the right to ack stops (fatal) naming it, instead of receiving the same events for ever', async () => {
    await adminStream();
    await enqueueLesson(t);
    const run = spawnCli(runArgs(t.schema, urlAs('outbox')));
    await waitFor('the event published', async () => (await outboxRows(t)).pending === 0, {
      timeoutMs: 30_000,
    });
    await stopCleanly(run);
    const consumer = await consume({
      broker: urlAs('noack'),
      consumer: 'noack',
      database: t.db,
      schema: t.schema,
      events: [LessonPublished],
      handler: () => {},
    });
    await expect(consumer.closed).rejects.toThrow(
      /consumer noack: the server does not let this user publish to "\$JS\.ACK\.EDUPULSE\.noack\..*grant it publish rights on "\$JS\.ACK\.>"/,
    );
    expect(consumer.health().state).toBe('stopped');
  });
});
