import { ConfigError, PrivilegeError, SchemaVersionError } from '../common/errors.js';
import { wholeNumber } from '../common/numbers.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { assertDatabase, type Database, type TransactionExecutor } from './database.js';
import type { Executor } from './executor.js';
import { notifyChannel, quoteSchema } from './identifier.js';
import { migrationFiles } from './migrations/index.js';
import { hasSqlState } from './missing-table.js';
import { INSUFFICIENT_PRIVILEGE } from './privileges.js';
import { migrationLockKey, statements } from './sql/index.js';

export interface Migration {
  version: number;
  name: string;
  /** The file's SQL with `:schema` and `:channel` still in place. */
  template: string;
}

export interface MigrationStatus {
  /** Versions recorded in the database, ascending. */
  applied: number[];
  /** The newest version this library ships. */
  latest: number;
  /** Shipped migrations not yet applied, in order. */
  pending: Migration[];
}

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/** The shipped migrations, in version order. Read on call, never on import. */
export function loadMigrations(): Migration[] {
  return migrationFiles()
    .flatMap(({ file, text }) => {
      const [, version, name] = FILE_NAME.exec(file) ?? [];
      return version && name ? [{ version: Number(version), name, template: text }] : [];
    })
    .sort((a, b) => a.version - b.version);
}

export interface MigrateOptions {
  /**
   * Partitions the rows are spread over (the unit dispatchers share), 1 to 1024; default
   * 64. Used only when the schema is created: later migrations are rendered with the
   * count the schema records, and a different count given here is refused.
   */
  partitions?: number | undefined;
  /**
   * The last migration to apply (or print), so a schema can be brought up step by step;
   * default the newest this library ships.
   */
  targetVersion?: number;
}

const migrateOptions = optionNames<MigrateOptions>({ partitions: true, targetVersion: true });

/**
 * The tables `migrate` creates in its schema: for the schema-sync tools of ORMs, which
 * drop the tables their models do not name (MikroORM's `schemaGenerator.skipTables`).
 */
export const outboxTables: readonly string[] = Object.freeze([
  'outbox',
  'outbox_dead_letter',
  'outbox_migrations',
  'outbox_settings',
  'inbox',
  'inbox_aggregate',
  'inbox_mark',
  'consumer_dead_letter',
  'consumer_resume',
]);

export const DEFAULT_PARTITIONS = 64;

/** Partitions are at most 1024: the order locks keep the partition in ten bits. */
export const MAX_PARTITIONS = 1024;

function partitionCount(partitions: number): number {
  return wholeNumber('partitions', partitions, 1, MAX_PARTITIONS);
}

/** The shipped migrations up to `options.targetVersion`, or a ConfigError naming it. */
function migrationsToApply(options: MigrateOptions): Migration[] {
  const migrations = loadMigrations();
  const target = options.targetVersion;
  if (target === undefined) return migrations;
  const latest = migrations.at(-1)?.version ?? 0;
  // Up to the newest shipped migration.
  const last = wholeNumber('targetVersion', target, 1, latest);
  return migrations.filter((m) => m.version <= last);
}

/** A migration's SQL for one schema. */
export function renderMigration(
  migration: Migration,
  schema: string,
  options: MigrateOptions = {},
): string {
  return migration.template
    .replaceAll(':schema', quoteSchema(schema))
    .replaceAll(':channel', notifyChannel(schema))
    .replaceAll(':partitions', String(partitionCount(options.partitions ?? DEFAULT_PARTITIONS)));
}

/** What is applied and what is pending. A database that was never migrated has everything pending. */
export async function migrationStatus(db: Executor, schema: string): Promise<MigrationStatus> {
  const migrations = loadMigrations();
  const latest = migrations.at(-1)?.version ?? 0;
  const sql = statements(schema);
  const { rows: exists } = await db.query<{ present: boolean }>(sql.migrationTableExists, [
    `${quoteSchema(schema)}.outbox_migrations`,
  ]);
  if (!exists[0]?.present) return { applied: [], latest, pending: migrations };
  const { rows } = await db.query<{ version: number }>(sql.migrationApplied);
  const applied = rows.map((row) => Number(row.version));
  const done = new Set(applied);
  return { applied, latest, pending: migrations.filter((m) => !done.has(m.version)) };
}

/**
 * The partition count to render a migration with: the one the schema records once it
 * exists (the generated `partition` column and the insert trigger must agree, or the
 * late-commit bounds land in the wrong partition), else the one asked for. Reads inside
 * the migration's transaction, under its lock, so a concurrent migrator cannot slip in.
 */
async function settledPartitions(
  tx: Executor,
  schema: string,
  options: MigrateOptions,
): Promise<number> {
  const { rows: exists } = await tx.query<{ present: boolean }>(
    statements(schema).migrationTableExists,
    [`${quoteSchema(schema)}.outbox_settings`],
  );
  if (!exists[0]?.present) return options.partitions ?? DEFAULT_PARTITIONS;
  const existing = await readPartitionCount(tx, schema);
  assertPartitionsKept(schema, existing, options.partitions);
  return existing;
}

/** Refuses, as `partitions`, a count asked for that is not the one `schema` was created with. */
export function assertPartitionsKept(schema: string, existing: number, asked: number | undefined) {
  if (asked !== undefined && asked !== existing) {
    throw new ConfigError(
      'partitions',
      `schema "${schema}" was created with ${existing} partitions; the count is fixed when the schema is created`,
    );
  }
}

/**
 * Applies the pending migrations (up to `options.targetVersion`), each in its own
 * transaction under a per-schema advisory lock, so two processes migrating at once apply
 * each migration exactly once. Returns the migrations this call applied.
 */
export async function migrate(
  db: Database,
  schema: string,
  options: MigrateOptions = {},
): Promise<Migration[]> {
  assertDatabase(db, 'db');
  assertKnownOptions('migrate', options, migrateOptions);
  const sql = statements(schema);
  if (options.partitions !== undefined) partitionCount(options.partitions);
  const migrations = migrationsToApply(options);
  // A later release's schema is not this one's to call current, nor to migrate.
  const status = await migrationStatus(db, schema).catch(async (error: unknown) => {
    throw (await migrationPrivilegeError(db, schema, error)) ?? error;
  });
  assertNotNewer(schema, status);
  await assertNotRenamed(db, schema);
  const applied: Migration[] = [];
  for (const migration of migrations) {
    const ran = await migrationTransaction(db, schema, async (tx) => {
      // One lock per schema: concurrent migrators of one schema queue, others do not wait.
      await tx.query(sql.migrationLock, [migrationLockKey(schema)]);
      const { rows: schemas } = await tx.query<{ present: boolean }>(sql.migrationSchemaExists, [
        schema,
      ]);
      if (!schemas[0]?.present) await tx.exec(sql.migrationSchemaCreate);
      await tx.exec(sql.migrationTableCreate);
      // Before the version check, so a count that contradicts the schema is refused even
      // when nothing is pending, and before anything is applied when something is.
      const partitions = await settledPartitions(tx, schema, options);
      const { rows } = await tx.query(sql.migrationIsApplied, [migration.version]);
      if (rows.length > 0) return false;
      await tx.exec(renderMigration(migration, schema, { partitions })).catch((error: unknown) => {
        throw alreadyThere(schema, migration, status.applied.length === 0, error) ?? error;
      });
      await tx.query(sql.migrationRecord, [migration.version, migration.name]);
      return true;
    });
    if (ran) applied.push(migration);
  }
  return applied;
}

/** duplicate_table, duplicate_column, duplicate_object (an index, a trigger, a constraint). */
const ALREADY_EXISTS = ['42P07', '42701', '42710'];

/**
 * A migration that met what it creates already there, which outbox_migrations does not
 * list: with nothing recorded (`fresh`), objects of the application's own by the outbox's
 * names; else a row of outbox_migrations deleted. Names the migration and the way out;
 * undefined for any other error.
 */
function alreadyThere(
  schema: string,
  migration: Migration,
  fresh: boolean,
  error: unknown,
): SchemaVersionError | undefined {
  if (!ALREADY_EXISTS.some((state) => hasSqlState(error, state))) return undefined;
  const reason = error instanceof Error ? error.message : String(error);
  const name = `${String(migration.version).padStart(4, '0')}_${migration.name}`;
  const way = fresh
    ? `the schema holds objects of another owner by the names the outbox uses: migrate into a schema of the outbox's own (--schema)`
    : `that migration's row was deleted from "${schema}".outbox_migrations: put it back (INSERT INTO "${schema}".outbox_migrations (version, name) VALUES (${migration.version}, '${migration.name}'))`;
  return new SchemaVersionError(
    `migration ${name} of schema "${schema}" found what it creates already there (${reason}), which "${schema}".outbox_migrations does not list: ${way}`,
    { cause: error },
  );
}

/**
 * `db.transaction(fn)`, with a refused privilege said as what to do: the migrating role
 * creates the schema (CREATE on the database, when it is missing) and its objects (CREATE
 * on it), and alters the tables, which only their owner may.
 */
async function migrationTransaction<T>(
  db: Database,
  schema: string,
  fn: (tx: TransactionExecutor) => Promise<T>,
): Promise<T> {
  try {
    return await db.transaction(fn);
  } catch (error) {
    throw (await migrationPrivilegeError(db, schema, error)) ?? error;
  }
}

/**
 * A migration refused for want of a privilege, as a PrivilegeError naming the role and the
 * way out; `checking`: only reading which migrations are applied (`migrate --check`).
 */
export async function migrationPrivilegeError(
  db: Executor,
  schema: string,
  error: unknown,
  checking = false,
): Promise<PrivilegeError | undefined> {
  if (!hasSqlState(error, INSUFFICIENT_PRIVILEGE)) return undefined;
  const { rows } = await db
    .query<{ role: string; owner: string | null }>(statements(schema).privilegeSchemaOwner, [
      schema,
    ])
    .catch(() => ({ rows: [] as { role: string; owner: string | null }[] }));
  const role = rows[0]?.role;
  const owner = rows[0]?.owner;
  const message = error instanceof Error ? error.message : String(error);
  const who = role === undefined ? 'the role' : `role "${role}"`;
  if (checking) {
    return new PrivilegeError(
      `${who} cannot read the migrations of schema "${schema}": ${message}: grant it USAGE on the schema and SELECT on ${quoteSchema(schema)}.outbox_migrations, or check as the schema's owner${owner ? ` ("${owner}")` : ''} (docs/operations.md, "Least-privilege roles")`,
      { role },
      { cause: error },
    );
  }
  const way =
    owner === null || owner === undefined
      ? `create the schema for it first (CREATE SCHEMA ${quoteSchema(schema)} AUTHORIZATION ${role === undefined ? '<role>' : `"${role}"`}) or migrate as a role that may create schemas`
      : `migrate as the schema's owner ("${owner}"), who owns the tables migrations alter`;
  return new PrivilegeError(
    `${who} cannot migrate schema "${schema}": ${message}: ${way} (docs/operations.md, "Least-privilege roles")`,
    { role },
    { cause: error },
  );
}

/** The partition count the schema was created with. */
export async function readPartitionCount(db: Executor, schema: string): Promise<number> {
  const { rows } = await db.query<{ partitions: number }>(statements(schema).settingsPartitions);
  return Number(rows[0]?.partitions ?? DEFAULT_PARTITIONS);
}

/**
 * Every migration (up to `options.targetVersion`) as one script that creates a new schema,
 * runnable by hand with psql, as `migrate --print` shows it.
 */
export function migrationScript(schema: string, options: MigrateOptions = {}): string {
  const s = quoteSchema(schema);
  const sql = statements(schema);
  // The same statements migrate() sends, with the values written in: the schema name
  // and the file names are validated identifiers, the versions numbers.
  const parts = migrationsToApply(options).map(
    (migration) => `-- ${String(migration.version).padStart(4, '0')}_${migration.name}
BEGIN;
${sql.migrationLock.replace('$1', `'${migrationLockKey(schema)}'`)};
${schemaEnsure(schema)}
${sql.migrationTableCreate}
${renderMigration(migration, schema, options).trim()}
INSERT INTO ${s}.outbox_migrations (version, name) VALUES (${migration.version}, '${migration.name}');
COMMIT;
`,
  );
  return parts.join('\n');
}

/**
 * The schema when missing, as a script can say it: CREATE SCHEMA checks CREATE on the
 * database even with IF NOT EXISTS, which the owner of a schema made for it need not have
 * (migrate() asks first, as `migrationSchemaExists`). `schema` is a validated identifier.
 */
function schemaEnsure(schema: string): string {
  return `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '${schema}') THEN
    CREATE SCHEMA ${quoteSchema(schema)};
  END IF;
END $$;`;
}

/**
 * Throws `SchemaVersionError` unless every shipped migration is applied and none newer
 * is: a database migrated by a later release may hold changes this one does not know.
 */
export async function assertSchemaCurrent(db: Executor, schema: string): Promise<void> {
  const status = await migrationStatus(db, schema);
  const current = status.applied.at(-1) ?? 0;
  if (current === 0) {
    throw new SchemaVersionError(
      `schema "${schema}" holds no outbox tables: check the schema's name (the \`schema\` option; --schema or OUTBOX_SCHEMA in the CLI), or create them with \`edupulse-outbox migrate --schema ${schema}\` (or migrate(db, '${schema}'))`,
    );
  }
  if (status.pending.length > 0) {
    throw new SchemaVersionError(
      `schema "${schema}" is at version ${current}, this version of edupulse-outbox needs ${status.latest}: run \`edupulse-outbox migrate --schema ${schema}\` (or migrate(db, '${schema}'))`,
    );
  }
  assertNotNewer(schema, status);
  await assertNotRenamed(db, schema);
}

/**
 * Refuses a schema renamed after it was migrated (a backup restored under another name).
 * Its insert trigger keeps the name it was created with, so events written there are
 * numbered by the old name's sequence (or fail, when no schema has that name), and the
 * dispatcher of the renamed schema, which reads its own sequence, never claims them.
 */
export async function assertNotRenamed(db: Executor, schema: string): Promise<void> {
  const { rows } = await db.query<{ source: string }>(
    `SELECT p.prosrc AS source FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1 AND p.proname = 'outbox_before_insert'`,
    [schema],
  );
  const source = rows[0]?.source;
  const own = `'${quoteSchema(schema)}.outbox_write_seq'`;
  if (source === undefined || source.includes(own)) return;
  const named = /'("(?:[^"]|"")+"|[a-z_][a-z0-9_]*)\.outbox_write_seq'/.exec(source)?.[1];
  const original = named?.startsWith('"') ? named.slice(1, -1).replaceAll('""', '"') : named;
  if (original === undefined) return;
  throw new SchemaVersionError(
    `schema "${schema}" was renamed from "${original}" after it was migrated: its outbox trigger still numbers events with "${original}".outbox_write_seq (a function keeps the schema name it was created with), so events written to "${schema}" fail or are never published; rename it back (ALTER SCHEMA ${quoteSchema(schema)} RENAME TO "${original.replaceAll('"', '""')}"), or restore the dump under the name it was taken from`,
  );
}

/**
 * Refuses a schema a later release migrated: it may hold changes this one does not know,
 * and "current" would be false of it.
 */
export function assertNotNewer(schema: string, status: MigrationStatus): void {
  const current = status.applied.at(-1) ?? 0;
  if (current > status.latest) {
    throw new SchemaVersionError(
      `schema "${schema}" is at version ${current}, newer than this version of edupulse-outbox knows (${status.latest}): upgrade edupulse-outbox`,
    );
  }
}

/**
 * Whether the outbox's insert trigger sends the NOTIFY that wakes dispatchers at once.
 * PostgreSQL commits notifying transactions one at a time (it holds a database-wide lock
 * from before the commit until the commit record is flushed), which costs busy producers
 * commit throughput; without it dispatchers find new events by polling.
 */
export async function setProducerNotify(db: Executor, schema: string, on: boolean): Promise<void> {
  await db.query(producerNotifyStatement(schema, on));
}

/** The statement that turns the insert trigger's NOTIFY on or off, as `migrate --print` shows it. */
export function producerNotifyStatement(schema: string, on: boolean): string {
  const sql = statements(schema);
  return on ? sql.producerNotifyOn : sql.producerNotifyOff;
}

/** True unless `setProducerNotify(…, false)` turned the insert trigger's NOTIFY off. */
/**
 * Throws a ConfigError naming the fix when a DBA gave the sequence that numbers the
 * outbox's rows a CACHE above 1: a session then draws its numbers from a block of its
 * own, a row can be numbered below one committed before it, and the per-aggregate order
 * (which follows those numbers) no longer holds.
 */
export async function assertSequencesUncached(db: Executor, schema: string): Promise<void> {
  const q = quoteSchema(schema);
  const { rows } = await db.query<{ name: string; cache: string }>(
    statements(schema).sequencesCached,
    [`${q}.outbox_write_seq`],
  );
  if (rows.length === 0) return;
  const named = rows.map((row) => `${q}.${row.name} has CACHE ${row.cache}`).join(', ');
  const fixes = rows.map((row) => `ALTER SEQUENCE ${q}.${row.name} CACHE 1;`).join(' ');
  throw new ConfigError(
    'schema',
    `${named}: each session would number its events from a block of its own, so one aggregate's events could be published out of order. Run: ${fixes}`,
  );
}

/**
 * Why the outbox's dead rows are not reclaimed, if they are not: the server's autovacuum
 * off, or the table's. Every published event leaves a dead row; with nobody vacuuming, the
 * table and its indexes grow for good and each claim reads further past them.
 */
export async function autovacuumOff(db: Executor, schema: string): Promise<string | undefined> {
  const q = quoteSchema(schema);
  const { rows } = await db.query<{ server_off: boolean; table_off: boolean }>(
    statements(schema).autovacuumOff,
    [`${q}.outbox`],
  );
  const row = rows[0];
  if (row?.server_off) return 'autovacuum is off on this server (autovacuum = off)';
  if (row?.table_off) return `autovacuum is off for ${q}.outbox (autovacuum_enabled = false)`;
  return undefined;
}

export async function readProducerNotify(db: Executor, schema: string): Promise<boolean> {
  const { rows } = await db.query<{ enabled: string }>(statements(schema).producerNotifyRead, [
    `${quoteSchema(schema)}.outbox`,
  ]);
  return rows[0]?.enabled !== 'D';
}
