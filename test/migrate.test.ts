import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  assertSchemaCurrent,
  ConfigError,
  createDispatcher,
  createOutbox,
  LessonPublished,
  loadMigrations,
  MemoryBroker,
  migrate,
  migrationScript,
  migrationStatus,
  pgDatabase,
  SchemaVersionError,
} from '../src/index.js';
import {
  createPgliteTestSchema,
  createPgTestSchema,
  PG_URL,
  type TestSchema,
  testSchema,
} from './helpers/db.js';
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
      expect(results.flat().map((m) => m.version)).toEqual(shipped.map((m) => m.version));
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

  it('migrations of different schemas do not interfere', async () => {
    const [a, b] = await Promise.all([freshSchema(), freshSchema()]);
    await Promise.all([migrate(a.db, a.schema), migrate(b.db, b.schema)]);
    await createOutbox({ schema: a.schema }).enqueue(a.db, lesson());
    const count = async (t: TestSchema) =>
      (await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${t.schema}".outbox`))
        .rows[0]?.n;
    expect(await count(a)).toBe(1);
    expect(await count(b)).toBe(0);
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
    const [id] = await createOutbox({ schema: t.schema }).enqueue(t.db, lesson());
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
      await createOutbox({ schema: name }).enqueue(db, lesson());
      const broker = new MemoryBroker();
      const dispatcher = createDispatcher({ db, broker, schema: name, pollIntervalMs: 60_000 });
      await dispatcher.start();
      try {
        // The NOTIFY channel name derived from the longest schema still fits.
        await createOutbox({ schema: name }).enqueue(db, lesson());
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
