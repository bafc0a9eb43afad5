import type { Database } from '../db/database.js';
import { pgDatabase } from '../db/pg.js';
import { ConfigError, errorMessage } from '../errors.js';
import { type Logger, redactUrl } from '../observability/logger.js';

/**
 * Opens the database and proves it answers, so a wrong URL is reported at start as one
 * line naming the setting (password redacted), not as a stack trace mid-run.
 */
export async function openDatabase(
  url: string,
  logger: Logger,
  setting = 'database-url',
): Promise<Database> {
  const db = pgDatabase({
    connectionString: url,
    onIdleError: (error) => logger.warn({ err: errorMessage(error) }, 'database connection lost'),
  });
  try {
    await db.query('SELECT 1');
  } catch (error) {
    await db.close().catch(() => {});
    throw new ConfigError(setting, `cannot connect to ${redactUrl(url)}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  return db;
}
