import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  migrationLockKey,
  ORDER_LOCK_TAG,
  ORDER_PARTITION_MASK,
  ORDER_TAG_MASK,
} from '../src/db/sql/fragments.js';
import {
  assertSchemaCurrent,
  autocommit,
  ConfigError,
  createDispatcher,
  createOutbox,
  LessonPublished,
  loadMigrations,
  MemoryBroker,
  migrate,
  migrationScript,
  migrationStatus,
  outboxTables,
  pgDatabase,
  SchemaVersionError,
} from '../src/index.js';
import { runCli } from './helpers/cli.js';
import {
  createPgliteTestSchema,
  createPgTestSchema,
  databaseUrl,
  PG_URL,
  type TestSchema,
  testSchema,
} from './helpers/db.js';
import { triggerAndColumnPartitions } from './helpers/partitions.js';
import { waitFor } from './helpers/wait.js';

const opened: TestSchema[] = [];
/** A fresh schema on PostgreSQL, not migrated, dropped after the file. */
async function freshSchema(prefix = 'migrate'): Promise<TestSchema> {
  const t = await createPgTestSchema(prefix, { migrate: false });
  opened.push(t);
  return t;
}

afterAll(async () => {
  await Promise.allSettled(opened.map((t) => t.drop()));
});

const shipped = loadMigrations();
const latest = shipped.at(-1)?.version ?? 0;

const lesson = () =>
  LessonPublished.create({
    lesson_id: randomUUID(),
    author_id: randomUUID(),
    title: 'Migrations',
    published_at: '2024-05-01T09:30:00Z',
  });

const lessonOf = (lessonId: string) =>
  LessonPublished.create({
    lesson_id: lessonId,
    author_id: randomUUID(),
    title: 'Migrations',
    published_at: '2024-05-01T09:30:00Z',
  });

const versionsUpTo = (level: number) => shipped.map((m) => m.version).filter((v) => v <= level);

async function recordedVersions(t: TestSchema): Promise<{ version: number; name: string }[]> {
  const { rows } = await t.db.query<{ version: number; name: string }>(
    `SELECT version, name FROM "${t.schema}".outbox_migrations ORDER BY version`,
  );
  return rows;
}

describe('migrate', () => {
  it('ships numbered migrations, the first being 1', () => {
    expect(shipped.length).toBeGreaterThan(0);
    expect(shipped.map((m) => m.version)).toEqual(shipped.map((_, i) => i + 1));
    // ASCII only: a database in another encoding than UTF-8 refuses what it cannot hold.
    for (const m of shipped) expect(m.template, m.name).not.toMatch(/[^\t\n\r -~]/);
  });

  it('migrates a database in an encoding other than UTF-8 (LATIN1), and its events go out', async () => {
    // Before: a "…" in a comment of 0001 failed migrate there ("has no equivalent in
    // encoding LATIN1"), so nothing was applied.
    const name = `latin1_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(
      `CREATE DATABASE ${name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
    );
    const db = pgDatabase({ connectionString: databaseUrl(name) });
    try {
      await migrate(db, 'public');
      await assertSchemaCurrent(db, 'public');
      const event = LessonPublished.create({ ...lesson().payload, title: 'Café à la carte' });
      await db.transaction((tx) => createOutbox().enqueue(tx, event));
      const broker = new MemoryBroker();
      const dispatcher = createDispatcher({ db, broker });
      expect(await dispatcher.drain()).toBe(1);
      await dispatcher.stop();
      expect(JSON.parse(broker.messages[0]?.payload ?? '{}').title).toBe('Café à la carte');
    } finally {
      await db.close();
      await admin.query(`DROP DATABASE ${name}`);
      await admin.end();
    }
  });

  it('applies everything once, records the versions, and a second call applies nothing', async () => {
    const t = await freshSchema();
    const first = await migrate(t.db, t.schema);
    expect(first.map((m) => m.version)).toEqual(shipped.map((m) => m.version));
    expect(await recordedVersions(t)).toEqual(
      shipped.map((m) => ({ version: m.version, name: m.name })),
    );

    expect(await migrate(t.db, t.schema)).toEqual([]);
    expect(await recordedVersions(t)).toHaveLength(shipped.length);
    const status = await migrationStatus(t.db, t.schema);
    expect(status).toEqual({ applied: shipped.map((m) => m.version), latest, pending: [] });
    await expect(assertSchemaCurrent(t.db, t.schema)).resolves.toBeUndefined();
  });

  it('an empty schema: everything pending, assertSchemaCurrent throws SchemaVersionError', async () => {
    const t = await freshSchema();
    const status = await migrationStatus(t.db, t.schema);
    expect(status.applied).toEqual([]);
    expect(status.latest).toBe(latest);
    expect(status.pending.map((m) => m.version)).toEqual(shipped.map((m) => m.version));
    const error = await assertSchemaCurrent(t.db, t.schema).catch((e) => e);
    expect(error).toBeInstanceOf(SchemaVersionError);
    expect(error.code).toBe('SCHEMA_VERSION');
    // A mistyped --schema is as likely as a new one: say both.
    expect(error.message).toContain('holds no outbox tables: check the schema');
    expect(error.message).toContain('migrate');

    // The same when the schema exists but holds nothing of ours.
    await t.db.query(`CREATE SCHEMA "${t.schema}"`);
    expect((await migrationStatus(t.db, t.schema)).pending).toHaveLength(shipped.length);
    await expect(assertSchemaCurrent(t.db, t.schema)).rejects.toBeInstanceOf(SchemaVersionError);
  });

  it('a dispatcher refuses to start on a schema that is not migrated', async () => {
    const t = await freshSchema();
    const broker = new MemoryBroker();
    const dispatcher = createDispatcher({ db: t.db, broker, schema: t.schema });
    await expect(dispatcher.start()).rejects.toBeInstanceOf(SchemaVersionError);
    await dispatcher.stop();
    expect(broker.connected).toBe(false);
  });

  it('two processes migrating one fresh schema at once both succeed, and it is applied once', async () => {
    const schema = testSchema('migrate_race');
    const pools = Array.from({ length: 4 }, () =>
      pgDatabase({ connectionString: PG_URL, maxConnections: 2 }),
    );
    try {
      const results = await Promise.all(pools.map((db) => migrate(db, schema)));
      // The callers may take turns (one applies 1-4, another 5): across them every
      // migration is applied exactly once, in whatever order the calls returned.
      const applied = results.flat().map((m) => m.version);
      expect(applied.sort((a, b) => a - b)).toEqual(shipped.map((m) => m.version));
      const { rows } = await (pools[0] as (typeof pools)[0]).query<{ version: number }>(
        `SELECT version FROM "${schema}".outbox_migrations ORDER BY version`,
      );
      expect(rows.map((r) => r.version)).toEqual(shipped.map((m) => m.version));
      await assertSchemaCurrent(pools[1] as (typeof pools)[0], schema);
    } finally {
      await pools[0]?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await Promise.all(pools.map((db) => db.close()));
    }
  });

  it("waits behind another migrator longer than the role's lock_timeout", async () => {
    // A DBA's lock_timeout of a few seconds must not fail a second migrator (a deploy
    // step) queued behind a first whose migration takes longer.
    const schema = testSchema('migrate_queued');
    const role = `migrate_lt_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    await admin.query(`ALTER ROLE ${role} SET lock_timeout = '200ms'`);
    await admin.query(`GRANT CREATE ON DATABASE ${new URL(PG_URL).pathname.slice(1)} TO ${role}`);
    const url = new URL(PG_URL);
    url.username = role;
    const db = pgDatabase({ connectionString: url.href, maxConnections: 1 });
    try {
      await admin.query('BEGIN');
      await admin.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
        migrationLockKey(schema),
      ]);
      const migrating = migrate(db, schema);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await admin.query('COMMIT');
      expect((await migrating).map((m) => m.version)).toEqual(shipped.map((m) => m.version));
    } finally {
      await admin.query('ROLLBACK').catch(() => {});
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
      await db.close();
      await admin.query(`DROP OWNED BY ${role}`);
      await admin.query(`DROP ROLE ${role}`);
      await admin.end();
    }
  });

  it('a schema whose tables an ORM dropped (its functions left behind) migrates again', async () => {
    const t = await freshSchema();
    await migrate(t.db, t.schema);
    // outboxTables, which the docs give to ORMs' schema sync, is every table there is.
    const { rows: tables } = await t.db.query<{ name: string }>(
      'SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 ORDER BY 1',
      [t.schema],
    );
    expect(tables.map((row) => row.name)).toEqual([...outboxTables].sort());
    // What a schema sync that knows nothing of the outbox does: drops the tables, which
    // takes their triggers and the owned sequence, and leaves the trigger functions.
    await t.db.query(
      `DROP TABLE ${outboxTables.map((name) => `"${t.schema}".${name}`).join(', ')} CASCADE`,
    );
    const { rows: functions } = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = $1::regnamespace`,
      [t.schema],
    );
    expect(functions).toEqual([{ n: 2 }]);
    expect((await migrate(t.db, t.schema)).map((m) => m.version)).toEqual(
      shipped.map((m) => m.version),
    );
    await assertSchemaCurrent(t.db, t.schema);
    await createOutbox({ schema: t.schema }).enqueue(autocommit(t.db), lesson());
    const { rows } = await t.db.query<{ seq: string }>(`SELECT seq FROM "${t.schema}".outbox`);
    expect(rows).toEqual([{ seq: '1' }]);
  });

  it('a schema renamed after it was migrated is refused, naming the name it had', async () => {
    const t = await freshSchema('ren');
    await migrate(t.db, t.schema);
    const renamed = `${t.schema}_r`;
    await t.db.query(`ALTER SCHEMA "${t.schema}" RENAME TO "${renamed}"`);
    try {
      const said = new RegExp(
        `^schema "${renamed}" was renamed from "${t.schema}" after it was migrated: .*ALTER SCHEMA "${renamed}" RENAME TO "${t.schema}"`,
      );
      // Each refusal is caught as it is made: one settling while an earlier one is awaited
      // would otherwise be, for a moment, an unhandled rejection.
      const refusals = [
        assertSchemaCurrent(t.db, renamed),
        migrate(t.db, renamed),
        createDispatcher({
          db: t.db,
          schema: renamed,
          broker: new MemoryBroker(),
          logger: false,
        }).start(),
      ].map((refused: Promise<unknown>) => refused.then(undefined, (e: unknown) => e));
      for (const error of await Promise.all(refusals)) {
        expect(error).toBeInstanceOf(SchemaVersionError);
        expect((error as Error).message).toMatch(said);
      }
      const where = ['--database-url', PG_URL, '--schema', renamed];
      const check = await runCli(['migrate', '--check', ...where]);
      expect(check.code).toBe(2);
      expect(check.stderr).toContain(`schema "${renamed}" was renamed from "${t.schema}"`);
    } finally {
      await t.db.query(`ALTER SCHEMA "${renamed}" RENAME TO "${t.schema}"`);
    }
    await assertSchemaCurrent(t.db, t.schema);
  });

  it('migrations of different schemas do not interfere', async () => {
    const [a, b] = await Promise.all([freshSchema(), freshSchema()]);
    await Promise.all([migrate(a.db, a.schema), migrate(b.db, b.schema)]);
    await createOutbox({ schema: a.schema }).enqueue(autocommit(a.db), lesson());
    const count = async (t: TestSchema) =>
      (await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${t.schema}".outbox`))
        .rows[0]?.n;
    expect(await count(a)).toBe(1);
    expect(await count(b)).toBe(0);
  });
});

async function recordedPartitions(t: TestSchema): Promise<number | undefined> {
  const { rows } = await t.db.query<{ partitions: number }>(
    `SELECT partitions FROM "${t.schema}".outbox_settings`,
  );
  return rows[0]?.partitions;
}

describe('what a migration finds already there', () => {
  it("a table of the application's own by the outbox's name: named, with the way out", async () => {
    const t = await freshSchema();
    await t.db.query(`CREATE SCHEMA "${t.schema}"`);
    await t.db.query(`CREATE TABLE "${t.schema}".outbox (id int)`);
    const error = await migrate(t.db, t.schema).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaVersionError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^migration 0001_outbox of schema "${t.schema}" found what it creates already there \\(relation "outbox" already exists\\).*a schema of the outbox's own \\(--schema\\)$`,
      ),
    );
    // Recording 0001 by hand would take another's table for the outbox's: not offered.
    expect((error as Error).message).not.toContain('INSERT INTO');
  });

  it("a migration's row deleted from outbox_migrations: named, with the row to put back", async () => {
    const t = await freshSchema();
    await migrate(t.db, t.schema);
    const last = shipped.at(-1) as { version: number; name: string };
    await t.db.query(`DELETE FROM "${t.schema}".outbox_migrations WHERE version = $1`, [
      last.version,
    ]);
    const result = await runCli(['migrate', '--database-url', PG_URL, '--schema', t.schema]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      `migration ${String(last.version).padStart(4, '0')}_${last.name} of schema "${t.schema}" found what it creates already there`,
    );
    expect(result.stderr).toContain(
      `INSERT INTO "${t.schema}".outbox_migrations (version, name) VALUES (${last.version}, '${last.name}')`,
    );
    // Put back as it says, the schema is current again.
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_migrations (version, name) VALUES ($1, $2)`,
      [last.version, last.name],
    );
    await assertSchemaCurrent(t.db, t.schema);
  });
});

describe('the lock keys the migrations and the runtime share', () => {
  it('the insert trigger of 0004, 0005 and 0009 derives the order lock as db/sql/fragments.ts does', () => {
    const trigger = `${ORDER_LOCK_TAG('TG_TABLE_SCHEMA')} | part`;
    const writers = shipped.filter((m) => m.template.includes('pg_advisory_xact_lock_shared'));
    expect(writers.map((m) => m.version)).toEqual([4, 5, 9]);
    for (const migration of writers) expect(migration.template).toContain(trigger);
    expect(ORDER_TAG_MASK & ORDER_PARTITION_MASK).toBe(0);
    expect(ORDER_PARTITION_MASK + 1).toBe(1024);
  });
});

describe('upgrading a schema created by an earlier release', () => {
  const earlier = shipped.map((m) => m.version).filter((v) => v < latest);

  it.each(earlier)(
    'created at level %i with 16 partitions, a plain migrate keeps 16 in every migration',
    async (level) => {
      const t = await freshSchema('migrate_upgrade');
      await migrate(t.db, t.schema, { partitions: 16, targetVersion: level });
      expect((await recordedVersions(t)).map((r) => r.version)).toEqual(versionsUpTo(level));

      const applied = await migrate(t.db, t.schema);
      expect(applied.map((m) => m.version)).toEqual(
        shipped.map((m) => m.version).filter((v) => v > level),
      );
      await expect(assertSchemaCurrent(t.db, t.schema)).resolves.toBeUndefined();
      expect(await recordedPartitions(t)).toBe(16);
      const { trigger, column } = await triggerAndColumnPartitions(t.schema);
      expect(Math.max(...column)).toBeLessThan(16);
      expect(trigger).toEqual(column);
    },
  );

  it('0008 marks the consumer dead letters an earlier release parked as stale, and no others', async () => {
    const t = await freshSchema('migrate_upgrade');
    await migrate(t.db, t.schema, { targetVersion: 7 });
    const reasons = {
      stale:
        'event e-1 (quiz-submitted, sequence 3) is older than the last event applied for aggregate "q-1"',
      invalid: 'payload.score: Invalid input: expected number, received string (quiz-submitted)',
      failed:
        'handler failed 5 times; last error: event e-3 is older than the last event applied for aggregate "q-1"',
    };
    for (const [id, reason] of Object.entries(reasons)) {
      await t.db.query(
        `INSERT INTO "${t.schema}".consumer_dead_letter
           (consumer, event_id, origin, headers, body, attempts, last_error)
         VALUES ('grades', $1, 'test', '{}', '{}', 1, $2)`,
        [id, reason],
      );
    }
    await migrate(t.db, t.schema);
    const { rows } = await t.db.query<{ event_id: string; stale: boolean }>(
      `SELECT event_id, stale FROM "${t.schema}".consumer_dead_letter ORDER BY event_id`,
    );
    expect(rows).toEqual([
      { event_id: 'failed', stale: false },
      { event_id: 'invalid', stale: false },
      { event_id: 'stale', stale: true },
    ]);
  });

  it("a partition count other than the schema's is refused before anything is applied", async () => {
    const t = await freshSchema('migrate_upgrade');
    await migrate(t.db, t.schema, { partitions: 16, targetVersion: 3 });

    const error = await migrate(t.db, t.schema, { partitions: 32 }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('partitions');
    expect((error as ConfigError).message).toContain('16');
    expect((await recordedVersions(t)).map((r) => r.version)).toEqual(versionsUpTo(3));

    // The schema's own count is accepted, and the upgrade goes through.
    expect((await migrate(t.db, t.schema, { partitions: 16 })).length).toBe(latest - 3);
    expect(await recordedPartitions(t)).toBe(16);
  });

  it('late commits are held back on the upgraded schema', async () => {
    const t = await freshSchema('migrate_upgrade');
    await migrate(t.db, t.schema, { partitions: 16, targetVersion: 3 });
    expect((await recordedVersions(t)).map((r) => r.version)).toEqual(versionsUpTo(3));
    await migrate(t.db, t.schema);
    expect(await recordedPartitions(t)).toBe(16);

    // An aggregate whose partition under 64 differs from its partition under 16, so a
    // trigger rendered with the wrong count would announce its bound in another partition.
    const partitionOf64 = async (id: string) =>
      (
        await t.db.query<{ p: number }>(
          'SELECT ((hashtextextended($1, 0) & 2147483647) % 64)::int AS p',
          [id],
        )
      ).rows[0]?.p ?? 0;
    let x = randomUUID();
    while ((await partitionOf64(x)) < 16) x = randomUUID();

    const outbox = createOutbox({ schema: t.schema });
    const early = new pg.Client({ connectionString: PG_URL });
    const late = new pg.Client({ connectionString: PG_URL });
    await early.connect();
    await late.connect();
    const broker = new MemoryBroker();
    const dispatcher = createDispatcher({ db: t.db, broker, schema: t.schema });
    try {
      await early.query('BEGIN');
      const [x1] = await outbox.enqueue(early, lessonOf(x)); // drawn first, committed last
      await late.query('BEGIN');
      const [x2] = await outbox.enqueue(late, lessonOf(x));
      await late.query('COMMIT');

      await dispatcher.drain();
      expect(broker.messages.filter((m) => m.aggregateId === x)).toEqual([]);

      await early.query('COMMIT');
      await dispatcher.drain();
      expect(broker.messages.filter((m) => m.aggregateId === x).map((m) => m.id)).toEqual([x1, x2]);
    } finally {
      await dispatcher.stop();
      await early.end().catch(() => {});
      await late.end().catch(() => {});
    }
  });
});

describe('targetVersion', () => {
  it.each([0, -1, 1.5, Number.NaN, latest + 1])(
    '%s is refused with ConfigError naming targetVersion, before any SQL',
    async (targetVersion) => {
      const t = await freshSchema('migrate_target');
      const error = await migrate(t.db, t.schema, { targetVersion }).catch((e) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).setting).toBe('targetVersion');
      const { rows } = await t.db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
        t.schema,
      ]);
      expect(rows).toEqual([]);
    },
  );

  it('applies up to that version, and nothing once the schema is past it', async () => {
    const t = await freshSchema('migrate_target');
    expect((await migrate(t.db, t.schema, { targetVersion: 2 })).map((m) => m.version)).toEqual(
      versionsUpTo(2),
    );
    expect(await migrate(t.db, t.schema, { targetVersion: 1 })).toEqual([]);
    expect((await migrationStatus(t.db, t.schema)).pending.map((m) => m.version)).toEqual(
      shipped.map((m) => m.version).filter((v) => v > 2),
    );
  });
});

describe('migrationScript', () => {
  it('run as one script on a fresh schema, gives a working, current schema', async () => {
    const t = await freshSchema('migrate_script');
    const script = migrationScript(t.schema);
    expect(script).not.toContain(':schema');
    expect(script).not.toContain(':channel');

    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await client.query(script);
    } finally {
      await client.end();
    }

    await expect(assertSchemaCurrent(t.db, t.schema)).resolves.toBeUndefined();
    expect(await migrate(t.db, t.schema)).toEqual([]);

    // Enqueue, the trigger's NOTIFY channel and the dispatcher all work on it.
    const [id] = await createOutbox({ schema: t.schema }).enqueue(autocommit(t.db), lesson());
    const broker = new MemoryBroker();
    const dispatcher = createDispatcher({ db: t.db, broker, schema: t.schema });
    try {
      expect(await dispatcher.drain()).toBe(1);
    } finally {
      await dispatcher.stop();
    }
    expect(broker.messages.map((m) => m.id)).toEqual([id]);
  });

  it('names only the schema it was given', () => {
    const a = migrationScript('tenant_a');
    expect(a).toContain('"tenant_a".outbox');
    expect(a).toContain('edupulse_outbox_tenant_a');
    expect(a).not.toContain('"public"');
  });
});

describe('schema names', () => {
  const invalid = [
    'Public',
    'a-b',
    '1abc',
    'x"; DROP TABLE outbox; --',
    '',
    'a'.repeat(41),
    'schema.name',
  ];

  it.each(invalid)('%j is refused with ConfigError naming "schema"', async (name) => {
    const db = pgDatabase({ connectionString: PG_URL });
    const exists = async () =>
      (await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name])).rows.length > 0;
    const existedBefore = await exists();
    try {
      const refusals: unknown[] = [
        await migrate(db, name).catch((e) => e),
        await migrationStatus(db, name).catch((e) => e),
        await assertSchemaCurrent(db, name).catch((e) => e),
      ];
      for (const attempt of [
        () => migrationScript(name),
        () => createOutbox({ schema: name }),
        () => createDispatcher({ db, broker: new MemoryBroker(), schema: name }),
      ]) {
        try {
          attempt();
          refusals.push(undefined);
        } catch (error) {
          refusals.push(error);
        }
      }
      for (const error of refusals) {
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as ConfigError).setting).toBe('schema');
      }
      // Refused before any SQL: no schema of that name appeared.
      if (!existedBefore) expect(await exists()).toBe(false);
    } finally {
      // Should migrate ever accept the name, leave the shared database as it was.
      if (!existedBefore && (await exists())) {
        const { rows } = await db.query<{ drop: string }>(
          "SELECT format('DROP SCHEMA %I CASCADE', $1::text) AS drop",
          [name],
        );
        await db.query(rows[0]?.drop as string);
      }
      await db.close();
    }
  });

  it('the longest valid name (40 characters) works end to end', async () => {
    const name = `t_${randomBytes(19).toString('hex')}`;
    expect(name).toHaveLength(40);
    const db = pgDatabase({ connectionString: PG_URL });
    try {
      await migrate(db, name);
      await createOutbox({ schema: name }).enqueue(autocommit(db), lesson());
      const broker = new MemoryBroker();
      const dispatcher = createDispatcher({ db, broker, schema: name, pollIntervalMs: 60_000 });
      await dispatcher.start();
      try {
        // The NOTIFY channel name derived from the longest schema still fits.
        await createOutbox({ schema: name }).enqueue(autocommit(db), lesson());
        await waitFor('both events published', () => broker.messages.length === 2);
      } finally {
        await dispatcher.stop();
      }
    } finally {
      await db.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
      await db.close();
    }
  });
});

describe('PGlite', () => {
  it('migrate (idempotent), enqueue and drain', async () => {
    const t = await createPgliteTestSchema('migrate', { migrate: false });
    try {
      expect((await migrationStatus(t.db, t.schema)).pending).toHaveLength(shipped.length);
      expect((await migrate(t.db, t.schema)).length).toBe(shipped.length);
      expect(await migrate(t.db, t.schema)).toEqual([]);
      await assertSchemaCurrent(t.db, t.schema);

      const outbox = createOutbox({ schema: t.schema });
      const committed = await t.pglite.transaction((tx) =>
        outbox.enqueue(tx, [lesson(), lesson()]),
      );
      await t.pglite.transaction(async (tx) => {
        await outbox.enqueue(tx, lesson());
        await tx.rollback();
      });

      const broker = new MemoryBroker();
      const dispatcher = createDispatcher({ db: t.db, broker, schema: t.schema });
      try {
        expect(await dispatcher.drain()).toBe(2);
      } finally {
        await dispatcher.stop();
      }
      expect(broker.messages.map((m) => m.id)).toEqual(committed);
      const { rows } = await t.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${t.schema}".outbox`,
      );
      expect(rows[0]?.n).toBe(0);
    } finally {
      await t.drop();
    }
  });
});
