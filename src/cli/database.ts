import { tlsRefusal } from '../brokers/tls-refusal.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { redactUrl } from '../common/url.js';
import type { Database } from '../db/database.js';
import { quoteSchema } from '../db/identifier.js';
import { assertSchemaCurrent } from '../db/migrate.js';
import { pgDatabase } from '../db/pg.js';
import { type PrivilegedPart, privilegeErrorOf } from '../db/privileges.js';
import { connectionCheck } from '../db/sql/index.js';
import { parseDatabaseUrl } from './settings.js';

/**
 * Opens the database and proves it answers, so a wrong URL is reported at start as one
 * line naming the setting (password redacted), not as a stack trace mid-run.
 */
export async function openDatabase(
  url: string,
  logger: Logger,
  setting = 'database-url',
  planner: 'dispatcher' | 'server' = 'dispatcher',
): Promise<Database> {
  const db = pgDatabase({
    connectionString: url,
    setting,
    planner,
    onIdleError: (error) => logger.warn({ err: errorMessage(error) }, 'database connection lost'),
  });
  try {
    await db.query(connectionCheck);
  } catch (error) {
    await db.close().catch(() => {});
    throw new ConfigError(
      setting,
      `cannot connect to ${redactUrl(url)}: ${errorMessage(error)}${tlsHint(error)}`,
      { cause: error },
    );
  }
  return db;
}

/** What to check after a TLS refusal, in the URL's terms; OpenSSL's words alone do not say. */
function tlsHint(error: unknown): string {
  switch (tlsRefusal(error)?.kind) {
    case 'untrusted':
      return ' (the server certificate does not chain to a CA this URL trusts: sslrootcert names the CA file)';
    case 'wrong-host':
      return ' (the server certificate does not name the host of the URL: connect by a name or address it carries, or sslmode=verify-ca checks the chain alone)';
    default:
      return '';
  }
}

/**
 * Opens the database of `--database-url`, checks that `--schema` is migrated to this
 * version, runs `body`, and closes the database: the frame of every admin command. A
 * refused statement is said with what the command needs: `observe` to read, with
 * `operate` to change.
 */
export async function withCurrentSchema<T>(
  flags: { databaseUrl?: string; schema: string },
  logger: Logger,
  body: (db: Database) => Promise<T>,
  changes = false,
): Promise<T> {
  quoteSchema(flags.schema);
  // The server's planner: an operator's filters use the indexes their values allow.
  const url = parseDatabaseUrl('database-url', flags.databaseUrl);
  const db = await openDatabase(url, logger, 'database-url', 'server');
  try {
    await assertSchemaCurrent(db, flags.schema);
    return await body(db);
  } catch (error) {
    // A refusal names the role and what the command needs, not just the table.
    const parts: PrivilegedPart[] = changes ? ['operate', 'observe'] : ['observe'];
    throw (await privilegeErrorOf(error, db, flags.schema, parts)) ?? error;
  } finally {
    await db.close();
  }
}

/** `withCurrentSchema` for a command that changes what it finds (retry, discard, purge). */
export function withCurrentSchemaToChange<T>(
  flags: { databaseUrl?: string; schema: string },
  logger: Logger,
  body: (db: Database) => Promise<T>,
): Promise<T> {
  return withCurrentSchema(flags, logger, body, true);
}
