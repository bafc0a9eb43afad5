/**
 * Least-privilege roles: an owner migrates a schema made for it; the app, the dispatcher,
 * the consumer and the operator each log in as a role holding exactly the grants
 * docs/operations.md prints, and do their work. A missing or revoked grant is named with
 * the role at start (exit 2), never retried batch after batch. Roles are cluster-wide:
 * every name here carries this file's random suffix, and all are dropped afterwards.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/common/logger.js';
import { consume, createInbox } from '../src/consumer/index.js';
import { grantStatements, type PrivilegedPart } from '../src/db/privileges.js';
import { statements } from '../src/db/sql/index.js';
import {
  createDispatcher,
  createOutbox,
  type Database,
  LessonPublished,
  MemoryBroker,
  PrivilegeError,
  pgDatabase,
} from '../src/index.js';
import { killChildren, lines, runCli, spawnCli, stackLines } from './helpers/cli.js';
import { loggedPort } from './helpers/console.js';
import { PG_URL, testSchema } from './helpers/db.js';
import { deleteStream, withConnection } from './helpers/nats-consumer.js';
import { waitFor } from './helpers/wait.js';

afterEach(killChildren);

const suffix = randomBytes(4).toString('hex');
const role = (name: string) => `t_pgr_${suffix}_${name}`;
const ROLES = {
  owner: role('owner'),
  app: role('app'),
  dispatcher: role('dispatcher'),
  consumer: role('consumer'),
  operator: role('operator'),
  observer: role('observer'),
  stranger: role('stranger'),
};
const schema = testSchema('pg_roles');

/** A logger keeping `err` of each error line, where the library says what to grant. */
function errorLines() {
  const lines: string[] = [];
  const ignore = () => {};
  const error = (fields: Record<string, unknown>) => lines.push(String(fields.err));
  return { lines, logger: { debug: ignore, info: ignore, warn: ignore, error } };
}
const NATS = 'nats://127.0.0.1:4222';

/** PG_URL logged in as `user` (the tests' server trusts local connections). */
function urlAs(user: string): string {
  const url = new URL(PG_URL);
  url.username = user;
  url.password = '';
  return url.toString();
}

/** The GRANT statements of docs/operations.md, by the comment above them (`app`, `dispatcher`, …). */
function documentedGrants(): Map<string, string[]> {
  const text = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
  const section = text.slice(text.indexOf('### Least-privilege roles'));
  const block = section.slice(
    section.indexOf('-- app:'),
    section.indexOf('```', section.indexOf('-- app:')),
  );
  const grants = new Map<string, string[]>();
  let heading = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('-- ')) heading = line.slice(3);
    else if (line.startsWith('GRANT ')) grants.set(heading, [...(grants.get(heading) ?? []), line]);
  }
  return grants;
}

/** The documented headings and what each grants, as the library's own table says it. */
const SECTIONS: [heading: string, role: string, parts: PrivilegedPart[]][] = [
  ['app:', 'outbox_app', ['enqueue']],
  ['dispatcher:', 'outbox_dispatcher', ['dispatch']],
  ['dispatcher with --dead-letter-retention:', 'outbox_dispatcher', ['dispatch-retention']],
  ['consumer:', 'outbox_consumer', ['consume', 'inbox']],
  ['consumer with inboxRetentionMs:', 'outbox_consumer', ['inbox-retention']],
  ['consumer on NATS:', 'outbox_consumer', ['consume-nats']],
  ['operator:', 'outbox_operator', ['observe']],
  ['operator who acts:', 'outbox_operator', ['operate']],
];

/** The documented statements for our schema and roles. */
function grantsFor(heading: string): string[] {
  const documented = [...documentedGrants()].find(([h]) => h.startsWith(heading))?.[1] ?? [];
  return documented.map((line) =>
    line
      .replaceAll('edupulse.', `"${schema}".`)
      .replace('SCHEMA edupulse ', `SCHEMA "${schema}" `)
      .replace(/TO outbox_(\w+);$/, (_, name: string) => `TO "${role(name)}";`),
  );
}

describe('least-privilege roles', () => {
  let admin: Database;
  let owner: pg.Client;

  beforeAll(async () => {
    admin = pgDatabase({ connectionString: PG_URL, applicationName: `test-${schema}` });
    for (const name of Object.values(ROLES)) await admin.query(`CREATE ROLE "${name}" LOGIN`);
    await admin.query(`CREATE SCHEMA "${schema}" AUTHORIZATION "${ROLES.owner}"`);
    owner = new pg.Client({ connectionString: urlAs(ROLES.owner) });
    await owner.connect();
  });

  afterAll(async () => {
    await killChildren();
    await owner?.end();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    for (const name of Object.values(ROLES)) {
      await admin.query(`DROP OWNED BY "${name}"`).catch(() => {});
      await admin.query(`DROP ROLE IF EXISTS "${name}"`);
    }
    await admin.close();
    await deleteStream(NATS, `PGR_${suffix}`);
  });

  it('the documented grants are the ones the library checks', () => {
    const documented = documentedGrants();
    expect([...documented.keys()].map((h) => h.split(':')[0])).toEqual(
      SECTIONS.map(([h]) => h.split(':')[0]),
    );
    for (const [heading, name, parts] of SECTIONS) {
      const generated = grantStatements('edupulse', name, parts).map((g) => g.replaceAll('"', ''));
      expect([...documented].find(([h]) => h.startsWith(heading))?.[1], heading).toEqual(generated);
    }
  });

  it('migrate by a role that may not create the schema names the role and the way out', async () => {
    const other = testSchema('pg_roles_new');
    const result = await runCli([
      'migrate',
      '--database-url',
      urlAs(ROLES.stranger),
      '--schema',
      other,
    ]);
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toContain(`role "${ROLES.stranger}" cannot migrate schema "${other}"`);
    expect(result.stderr).toContain(`CREATE SCHEMA "${other}" AUTHORIZATION "${ROLES.stranger}"`);
    const intoOwned = await runCli([
      'migrate',
      '--database-url',
      urlAs(ROLES.stranger),
      '--schema',
      schema,
    ]);
    expect(intoOwned.code).toBe(2);
    expect(intoOwned.stderr).toContain(`migrate as the schema's owner ("${ROLES.owner}")`);
    expect(stackLines(result.stderr + intoOwned.stderr)).toEqual([]);
  });

  it("the schema's owner migrates it without CREATE on the database", async () => {
    const result = await runCli([
      'migrate',
      '--database-url',
      urlAs(ROLES.owner),
      '--schema',
      schema,
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('applied 1 outbox');
    // Another role checking the version: told what reading it takes, not how to migrate.
    const check = await runCli([
      'migrate',
      '--check',
      '--database-url',
      urlAs(ROLES.stranger),
      '--schema',
      schema,
    ]);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain(
      `role "${ROLES.stranger}" cannot read the migrations of schema "${schema}"`,
    );
    expect(check.stderr).toContain(`or check as the schema's owner ("${ROLES.owner}")`);
  });

  it("the --print script runs as a schema's owner without CREATE on the database", async () => {
    const other = testSchema('pg_roles_print');
    await admin.query(`CREATE SCHEMA "${other}" AUTHORIZATION "${ROLES.owner}"`);
    try {
      const printed = await runCli(['migrate', '--print', '--schema', other]);
      expect(printed.code, printed.stderr).toBe(0);
      await owner.query(printed.stdout);
      const status = await runCli([
        'migrate',
        '--check',
        '--database-url',
        urlAs(ROLES.owner),
        '--schema',
        other,
      ]);
      expect(status.code, status.stderr).toBe(0);
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${other}" CASCADE`);
    }
  });

  it('run and consume() with no grants name the role and the grants, not an unmigrated schema', async () => {
    const run = await runCli(
      ['run', '--database-url', urlAs(ROLES.dispatcher), '--schema', schema, '--broker', 'log:'],
      { timeoutMs: 20_000 },
    );
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toHaveLength(1);
    expect(run.stderr).toContain(
      `role "${ROLES.dispatcher}" lacks privileges needed by the dispatcher`,
    );
    expect(run.stderr).toContain(`GRANT USAGE ON SCHEMA "${schema}" TO "${ROLES.dispatcher}";`);
    expect(run.stderr).not.toContain('migrate');

    const db = pgDatabase({ connectionString: urlAs(ROLES.consumer) });
    try {
      const started = consume({
        broker: `${NATS}?stream=PGR_${suffix}&subject_prefix=pgr${suffix}`,
        consumer: 'pgr',
        database: db,
        schema,
        events: [LessonPublished],
        handler: () => {},
      });
      await expect(started).rejects.toThrow(PrivilegeError);
      await expect(started).rejects.toThrow(`role "${ROLES.consumer}" lacks privileges`);
    } finally {
      await db.close();
    }
  });

  it('enqueue without its grants throws a PrivilegeError listing them', async () => {
    const client = new pg.Client({ connectionString: urlAs(ROLES.app) });
    await client.connect();
    try {
      await client.query('BEGIN');
      const enqueued = createOutbox({ schema }).enqueue(client, lesson('refused'));
      await expect(enqueued).rejects.toThrow(PrivilegeError);
      await expect(enqueued).rejects.toThrow(`INSERT ON "${schema}".outbox`);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
  });

  describe('with exactly the documented grants', () => {
    beforeAll(async () => {
      for (const [heading] of SECTIONS) {
        for (const statement of grantsFor(heading)) await owner.query(statement);
      }
    });

    it('the app enqueues', async () => {
      await enqueueAsApp([lesson('a1'), lesson('a2')]);
      // One the dispatcher must dead-letter: a control character in the aggregate id.
      await owner.query(
        `INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         VALUES ('lesson', E'bad\\x1b', 'lesson-published', '{}')`,
      );
    });

    it('the dispatcher publishes and dead-letters, with retention', async () => {
      const run = spawnCli([
        'run',
        '--database-url',
        urlAs(ROLES.dispatcher),
        '--schema',
        schema,
        '--broker',
        'log:',
        '--dead-letter-retention',
        '30d',
        '--on-dead-letter',
        'hold',
      ]);
      await run.waitFor('two events', () => run.lineCount() >= 2);
      await run.waitFor('the dead letter', async () => (await count('outbox_dead_letter')) === 1);
      run.child.kill('SIGTERM');
      const result = await run.exited;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).not.toContain('permission denied');
      expect(await count('outbox')).toBe(0);
    });

    it('the consumer applies through the inbox and purges it', async () => {
      const db = pgDatabase({ connectionString: urlAs(ROLES.consumer) });
      const inbox = createInbox({ schema, consumer: 'pgr' });
      try {
        const consumer = await consume({
          broker: `${NATS}?stream=PGR_${suffix}&subject_prefix=pgr${suffix}`,
          consumer: 'pgr',
          database: db,
          schema,
          events: [LessonPublished],
          inboxRetentionMs: 60_000,
          handler: () => {},
        });
        await consumer.stop();
        const event = {
          id: crypto.randomUUID(),
          type: 'lesson-published',
          aggregateId: crypto.randomUUID(),
          sequence: '1',
        };
        await db.transaction((tx) => inbox.process(tx, event, async () => {}));
        const again = await db.transaction((tx) => inbox.process(tx, event, async () => {}));
        expect(again.outcome).toBe('duplicate');
        expect(await inbox.purge(db, new Date())).toBe(1);
      } finally {
        await db.close();
      }
    });

    it('a consumer role without the inbox grants is told so at start, naming them', async () => {
      // As after an upgrade that added inbox_mark, before its grant was given.
      await owner.query(`REVOKE ALL ON "${schema}".inbox_mark FROM "${ROLES.consumer}"`);
      const db = pgDatabase({ connectionString: urlAs(ROLES.consumer) });
      const warnings: { err: string | undefined; message: string }[] = [];
      try {
        const consumer = await consume({
          broker: `${NATS}?stream=PGR_${suffix}&subject_prefix=pgr${suffix}`,
          consumer: 'pgr',
          database: db,
          schema,
          events: [LessonPublished],
          logger: {
            ...silentLogger,
            warn: (fields, message) =>
              warnings.push({ err: (fields as { err?: string }).err, message }),
          },
          handler: () => {},
        });
        await consumer.stop();
        const told = warnings.find((w) =>
          w.message.startsWith('this role lacks what inbox.process needs'),
        );
        expect(told?.err).toContain(
          `GRANT SELECT, INSERT, UPDATE ON "${schema}".inbox_mark TO "${ROLES.consumer}";`,
        );
      } finally {
        await owner.query(
          `GRANT SELECT, INSERT, UPDATE ON "${schema}".inbox_mark TO "${ROLES.consumer}"`,
        );
        await db.close();
      }
    });

    it('a NATS consumer refused its resume point while running stops naming the grant, not the broker', async () => {
      const db = pgDatabase({ connectionString: urlAs(ROLES.consumer) });
      const broker = `${NATS}?stream=PGR_${suffix}&subject_prefix=pgr${suffix}`;
      try {
        const consumer = await consume({
          broker,
          consumer: 'pgr',
          database: db,
          schema,
          events: [LessonPublished],
          handler: () => {},
        });
        await owner.query(`REVOKE ALL ON "${schema}".consumer_resume FROM "${ROLES.consumer}"`);
        // The durable deleted (an operator's `nats consumer rm`): the next start keeps its
        // position in the table before making it again.
        await withConnection(NATS, async (nc) => {
          await (await jetstreamManager(nc)).consumers.delete(`PGR_${suffix}`, 'pgr');
        });
        await expect(consumer.closed).rejects.toThrow(
          `GRANT SELECT, INSERT, UPDATE, DELETE ON "${schema}".consumer_resume TO "${ROLES.consumer}";`,
        );
      } finally {
        await owner.query(
          `GRANT SELECT, INSERT, UPDATE, DELETE ON "${schema}".consumer_resume TO "${ROLES.consumer}"`,
        );
        await db.close();
      }
    });

    it('the operator runs status, dead …, purge, inbox purge', async () => {
      const as = ['--database-url', urlAs(ROLES.operator), '--schema', schema];
      const ok = async (args: string[]) => {
        const result = await runCli([...args, ...as]);
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
        return result;
      };
      await ok(['status']);
      await ok(['dead', 'list']);
      await ok(['dead', 'groups']);
      await ok(['dead', 'list', '--consumer', 'pgr']);
      await ok(['dead', 'retry', '--all']);
      expect(await count('outbox')).toBe(1);
      // Back to the dead letters, by hand, to discard and purge it.
      await owner.query(`DELETE FROM "${schema}".outbox`);
      await ok(['dead', 'discard', '--all']);
      await ok(['dead', 'retry', '--all', '--consumer', 'pgr']);
      await ok(['purge', '--older-than', '1h']);
      await ok(['purge', '--older-than', '1h', '--consumer', 'pgr']);
      await ok(['inbox', 'purge', '--older-than', '1h']);
    });

    it("an operator with the first part only looks; acting is refused naming the second's grants", async () => {
      for (const statement of grantStatements(schema, ROLES.observer, ['observe'])) {
        await owner.query(statement);
      }
      const as = ['--database-url', urlAs(ROLES.observer), '--schema', schema];
      for (const args of [
        ['status'],
        ['status', '--json'],
        ['dead', 'list'],
        ['dead', 'groups'],
        ['dead', 'show', randomUUID()],
        ['dead', 'list', '--consumer', 'pgr'],
      ]) {
        const result = await runCli([...args, ...as]);
        // `dead show` of an id that is no dead letter: 1, having looked.
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(args[1] === 'show' ? 1 : 0);
      }
      const retry = await runCli(['dead', 'retry', '--all', ...as]);
      expect(retry.code).toBe(2);
      expect(retry.stderr).toContain(
        `role "${ROLES.observer}" lacks privileges needed by the admin commands that retry, discard or purge`,
      );
      expect(retry.stderr).toContain(`GRANT INSERT ON "${schema}".outbox TO "${ROLES.observer}";`);
      // What it has is not asked for again.
      expect(retry.stderr).not.toContain('GRANT SELECT ON');
    });

    it("status tells an operator who cannot see other roles' sessions that it cannot flag a silent dispatcher", async () => {
      for (const statement of grantStatements(schema, ROLES.observer, ['observe'])) {
        await owner.query(statement);
      }
      // A member owning a partition that runs nothing, as a stopped dispatcher's session
      // does, logged in as the dispatcher's role.
      const stopped = new pg.Client({
        connectionString: urlAs(ROLES.dispatcher),
        application_name: 'edupulse-outbox dispatcher stopped:1',
      });
      await stopped.connect();
      const as = ['--database-url', urlAs(ROLES.observer), '--schema', schema];
      try {
        const sql = statements(schema);
        const { rows } = await stopped.query<{ members: number; partitions: number }>(
          sql.ownershipKeys,
          [schema],
        );
        const keys = rows[0] as { members: number; partitions: number };
        await stopped.query(sql.ownershipLock, [keys.members, 4242]);
        await stopped.query(sql.ownershipLock, [keys.partitions, 0]);
        await new Promise((resolve) => setTimeout(resolve, 5500));
        const json = await runCli(['status', '--json', ...as]);
        expect(json.code, json.stderr).toBe(0);
        const { dispatchers } = JSON.parse(json.stdout) as {
          dispatchers: { silentSeconds: number | null }[];
        };
        // Unknown, not taken for busy (0).
        expect(dispatchers.map((d) => d.silentSeconds)).toEqual([null]);
        const hidden = await runCli(['status', ...as]);
        expect(hidden.stdout).toContain('silence not shown');
        expect(hidden.stdout).toContain('pg_read_all_stats');
        expect(hidden.stdout).not.toContain('silent for');
        await admin.query(`GRANT pg_read_all_stats TO "${ROLES.observer}"`);
        try {
          const seen = await runCli(['status', ...as]);
          expect(seen.stdout).toMatch(/silent for \d+\.\d s: /);
          expect(seen.stdout).not.toContain('silence not shown');
        } finally {
          await admin.query(`REVOKE pg_read_all_stats FROM "${ROLES.observer}"`);
        }
      } finally {
        await stopped.end();
      }
    });

    it('a grant revoked while running stops the dispatcher, exit 2, the event kept', async () => {
      const run = spawnCli([
        'run',
        '--database-url',
        urlAs(ROLES.dispatcher),
        '--schema',
        schema,
        '--broker',
        'log:',
      ]);
      await run.waitFor('dispatching', () => run.stderr.includes('"dispatching"'));
      await owner.query(`REVOKE DELETE ON "${schema}".outbox FROM "${ROLES.dispatcher}"`);
      try {
        await enqueueAsApp([lesson('r1')]);
        const result = await run.exited;
        expect(result.code).toBe(2);
        expect(result.stderr).toContain(
          `GRANT DELETE ON "${schema}".outbox TO "${ROLES.dispatcher}";`,
        );
        expect(result.stderr).not.toContain('database unavailable');
        // Published at most once, then the batch rolled back: kept, not dead-lettered.
        expect(run.lineCount()).toBeLessThanOrEqual(1);
        expect(await count('outbox')).toBe(1);
        expect(await count('outbox_dead_letter')).toBe(0);
      } finally {
        await owner.query(`GRANT DELETE ON "${schema}".outbox TO "${ROLES.dispatcher}"`);
      }
    });

    it('retention refused while running is said with its grant at each round; publishing goes on', async () => {
      const { lines: errors, logger } = errorLines();
      const db = pgDatabase({ connectionString: urlAs(ROLES.dispatcher) });
      const dispatcher = createDispatcher({
        db,
        broker: new MemoryBroker(),
        schema,
        pollIntervalMs: 50,
        deadLetterRetentionMs: 86_400_000,
        deadLetterPurgeIntervalMs: 100,
        logger,
      });
      await dispatcher.start();
      await owner.query(
        `REVOKE UPDATE, DELETE ON "${schema}".outbox_dead_letter FROM "${ROLES.dispatcher}"`,
      );
      try {
        await waitFor('two rounds refused', () => errors.length >= 2);
        expect(errors[0]).toContain(
          `GRANT UPDATE, DELETE ON "${schema}".outbox_dead_letter TO "${ROLES.dispatcher}";`,
        );
        await enqueueAsApp([lesson('published while retention is refused')]);
        await waitFor('the event published', async () => (await count('outbox')) === 0);
        expect(dispatcher.health().state).not.toBe('stopped');
      } finally {
        await owner.query(
          `GRANT UPDATE, DELETE ON "${schema}".outbox_dead_letter TO "${ROLES.dispatcher}"`,
        );
        await dispatcher.stop();
        await db.close();
      }
    });

    it("a consumer whose dead-letter grants are revoked stops naming them; the inbox's retention only says so", async () => {
      const broker = `${NATS}?stream=PGR_${suffix}&subject_prefix=pgr${suffix}`;
      const db = pgDatabase({ connectionString: urlAs(ROLES.consumer) });
      const { lines: errors, logger } = errorLines();
      const consumer = await consume({
        broker,
        consumer: 'pgr_revoked',
        database: db,
        schema,
        events: [LessonPublished],
        deadLetterRetryPollMs: 100,
        inboxRetentionMs: 60_000,
        inboxPurgeIntervalMs: 100,
        logger,
        handler: () => {},
      });
      try {
        await owner.query(`REVOKE DELETE ON "${schema}".inbox FROM "${ROLES.consumer}"`);
        await waitFor('a purge refused', () => errors.length >= 1);
        expect(errors[0]).toContain(`GRANT DELETE ON "${schema}".inbox TO "${ROLES.consumer}";`);
        expect(consumer.health().state).toBe('receiving');

        await owner.query(
          `REVOKE SELECT, UPDATE, DELETE ON "${schema}".consumer_dead_letter FROM "${ROLES.consumer}"`,
        );
        const fatal = await consumer.closed.catch((error: unknown) => error);
        expect(fatal).toBeInstanceOf(PrivilegeError);
        expect(String(fatal)).toContain(
          `GRANT SELECT, UPDATE, DELETE ON "${schema}".consumer_dead_letter TO "${ROLES.consumer}";`,
        );
      } finally {
        await owner.query(`GRANT DELETE ON "${schema}".inbox TO "${ROLES.consumer}"`);
        await owner.query(
          `GRANT SELECT, UPDATE, DELETE ON "${schema}".consumer_dead_letter TO "${ROLES.consumer}"`,
        );
        await consumer.stop().catch(() => {});
        await db.close();
      }
    });

    it('row-level security on the outbox is said at start, and a policy that shows every row works', async () => {
      await owner.query(`ALTER TABLE "${schema}".outbox ENABLE ROW LEVEL SECURITY`);
      await owner.query(
        `CREATE POLICY every_row ON "${schema}".outbox USING (true) WITH CHECK (true)`,
      );
      try {
        const run = spawnCli([
          'run',
          '--database-url',
          urlAs(ROLES.dispatcher),
          '--schema',
          schema,
          '--broker',
          'log:',
        ]);
        await run.waitFor('dispatching', () => run.stderr.includes('"dispatching"'));
        await enqueueAsApp([lesson('seen by the policy')]);
        await run.waitFor('the outbox drained', async () => (await count('outbox')) === 0);
        run.child.kill('SIGTERM');
        const result = await run.exited;
        expect(result.code, result.stderr).toBe(0);
        expect(result.stdout).toContain('seen by the policy');
        expect(result.stderr).toContain(
          `row-level security applies to this role on \\"${schema}\\".outbox`,
        );
      } finally {
        await owner.query(`DROP POLICY every_row ON "${schema}".outbox`);
        await owner.query(`ALTER TABLE "${schema}".outbox DISABLE ROW LEVEL SECURITY`);
      }
    });

    it('a handler refused on its own table fails like any handler: parked, the consumer goes on', async () => {
      // The application's table, which the consumer's role was given nothing on.
      await owner.query(`CREATE TABLE "${schema}".private_effects (id uuid PRIMARY KEY)`);
      const broker = `${NATS}?stream=PGR_${suffix}&subject_prefix=pgr${suffix}`;
      const run = spawnCli([
        'run',
        '--database-url',
        urlAs(ROLES.dispatcher),
        '--schema',
        schema,
        '--broker',
        broker,
      ]);
      const db = pgDatabase({ connectionString: urlAs(ROLES.consumer) });
      try {
        const consumer = await consume({
          broker,
          consumer: 'pgr_own',
          database: db,
          schema,
          events: [LessonPublished],
          maxAttempts: 1,
          handler: (event) =>
            db.transaction((tx) =>
              tx.query(`INSERT INTO "${schema}".private_effects (id) VALUES ($1)`, [event.id]),
            ),
        });
        await enqueueAsApp([lesson('refused by the handler')]);
        await waitFor('the parked event', async () => (await count('consumer_dead_letter')) === 1, {
          timeoutMs: 20_000,
        });
        const { rows } = await admin.query<{ consumer: string; last_error: string }>(
          `SELECT consumer, last_error FROM "${schema}".consumer_dead_letter`,
        );
        expect(rows[0]?.consumer).toBe('pgr_own');
        expect(rows[0]?.last_error).toContain('permission denied for table private_effects');
        expect(consumer.health().state).toBe('receiving');
        await consumer.stop();
      } finally {
        run.child.kill('SIGTERM');
        await run.exited;
        await db.close();
      }
    });

    it("the console of a role without the operator's grants names the role and what to grant", async () => {
      const ui = spawnCli([
        'ui',
        '--database-url',
        urlAs(ROLES.dispatcher),
        '--schema',
        schema,
        '--port',
        '0',
      ]);
      let port = 0;
      await ui.waitFor('the console to serve', () => {
        port = loggedPort(ui, 'serving the console');
        return port > 0;
      });
      const response = await fetch(`http://127.0.0.1:${port}/api/overview`);
      const body = (await response.json()) as { error?: string };
      expect(response.status).toBe(500);
      expect(body.error).toContain(
        `role "${ROLES.dispatcher}" lacks privileges needed by the admin commands`,
      );
      expect(body.error).toContain(`TO "${ROLES.dispatcher}";`);
    });
  });

  /** `events` enqueued and committed by the app's role, in one transaction. */
  async function enqueueAsApp(events: ReturnType<typeof lesson>[]): Promise<void> {
    const client = new pg.Client({ connectionString: urlAs(ROLES.app) });
    await client.connect();
    try {
      await client.query('BEGIN');
      await createOutbox({ schema }).enqueue(client, events);
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
  }

  async function count(table: string): Promise<number> {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${schema}".${table}`,
    );
    return rows[0]?.n ?? 0;
  }
});

function lesson(title: string) {
  return LessonPublished.create({
    lesson_id: crypto.randomUUID(),
    author_id: crypto.randomUUID(),
    title,
    published_at: new Date().toISOString(),
  });
}
