/**
 * The migrator's bookkeeping (db/migrate.ts) and the schema settings read at run time.
 * The migrations themselves are the numbered files in db/migrations.
 */
export interface MigrationStatements {
  /** $1 lock key (migrationLockKey): concurrent migrators of one schema queue here. */
  migrationLock: string;
  /** $1 the schema's name: whether it exists (`present`). */
  migrationSchemaExists: string;
  /**
   * The schema. Sent only when it is missing: CREATE SCHEMA checks CREATE on the database
   * even with IF NOT EXISTS, which the owner of a schema made for it need not have.
   */
  migrationSchemaCreate: string;
  /** The version table, if missing. */
  migrationTableCreate: string;
  /** $1 a qualified table name: whether it exists (`present`). */
  migrationTableExists: string;
  /** The applied versions, ascending. */
  migrationApplied: string;
  /** $1 version: a row when it is applied. */
  migrationIsApplied: string;
  /** $1 version, $2 name: records an applied migration. */
  migrationRecord: string;
  /** The partition count the schema was created with. */
  settingsPartitions: string;
  /** $1 the outbox table: the insert trigger's NOTIFY state (`D` when disabled). */
  producerNotifyRead: string;
  producerNotifyOn: string;
  producerNotifyOff: string;
  /** $1 the write sequence (which numbers the rows' `seq`): its CACHE when above 1. */
  sequencesCached: string;
  /**
   * $1 the outbox table: `server_off` when the server's autovacuum is off, `table_off` when
   * the table's own `autovacuum_enabled` is.
   */
  autovacuumOff: string;
}

/** `s`: the quoted schema. */
export function migrationStatements(s: string): MigrationStatements {
  return {
    // Waited for without the role's lock_timeout (a DBA's few seconds would fail a second
    // migrator queued behind a migration that takes longer), which is then put back for
    // the migration's own statements. Nested, each level is evaluated before the next.
    migrationLock: `SELECT set_config('lock_timeout', was, true) AS restored FROM (
  SELECT was, pg_advisory_xact_lock(hashtextextended($1, 0)) AS locked FROM (
    SELECT was, set_config('lock_timeout', '0', true) AS waiting FROM (
      SELECT current_setting('lock_timeout') AS was OFFSET 0) AS role OFFSET 0) AS unlimited
  OFFSET 0) AS queued`,
    migrationSchemaExists:
      'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1) AS present',
    migrationSchemaCreate: `CREATE SCHEMA IF NOT EXISTS ${s}`,
    migrationTableCreate: `CREATE TABLE IF NOT EXISTS ${s}.outbox_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);`,
    migrationTableExists: 'SELECT to_regclass($1) IS NOT NULL AS present',
    migrationApplied: `SELECT version FROM ${s}.outbox_migrations ORDER BY version`,
    migrationIsApplied: `SELECT 1 FROM ${s}.outbox_migrations WHERE version = $1`,
    migrationRecord: `INSERT INTO ${s}.outbox_migrations (version, name) VALUES ($1, $2)`,
    settingsPartitions: `SELECT partitions FROM ${s}.outbox_settings`,
    producerNotifyRead: `SELECT t.tgenabled::text AS enabled FROM pg_trigger t
WHERE t.tgrelid = $1::regclass AND t.tgname = 'outbox_notify'`,
    producerNotifyOn: `ALTER TABLE ${s}.outbox ENABLE TRIGGER outbox_notify`,
    producerNotifyOff: `ALTER TABLE ${s}.outbox DISABLE TRIGGER outbox_notify`,
    sequencesCached: `SELECT c.relname AS name, q.seqcache::text AS cache
FROM pg_catalog.pg_sequence q JOIN pg_catalog.pg_class c ON c.oid = q.seqrelid
WHERE q.seqcache > 1 AND q.seqrelid = $1::regclass`,
    autovacuumOff: `SELECT current_setting('autovacuum') = 'off' AS server_off,
  EXISTS (SELECT 1 FROM pg_catalog.pg_class c, unnest(c.reloptions) AS o
    WHERE c.oid = $1::regclass
      AND lower(o) IN ('autovacuum_enabled=false', 'autovacuum_enabled=off', 'autovacuum_enabled=0', 'autovacuum_enabled=no')) AS table_off`,
  };
}
