import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BenchContext, errorMessage } from './context.js';
import { installedPackage } from './packages.js';

type LogicalPostgresModule = typeof import('../scripts/pg/logical-postgres.mjs');
export type LogicalPostgres = Awaited<ReturnType<LogicalPostgresModule['startLogicalPostgres']>>;

/**
 * The repository's private-PostgreSQL script (scripts/pg/logical-postgres.mjs, shared with
 * the tests), found from the package's own folder: this file runs compiled from bench/dist/.
 */
async function loadScript(): Promise<LogicalPostgresModule> {
  const root = installedPackage('edupulse-outbox')?.dir;
  if (!root) throw new Error('edupulse-outbox is not built (npm run build)');
  const file = join(root, 'scripts', 'pg', 'logical-postgres.mjs');
  return (await import(pathToFileURL(file).href)) as LogicalPostgresModule;
}

/** What a scenario on the private server gets: its context (same settings, its URL) and the server. */
export interface PrivatePostgres {
  bench: BenchContext;
  server: LogicalPostgres;
}

/**
 * Runs `body` on a private PostgreSQL with `wal_level = logical` (initdb into a scratch
 * directory, durability as the shared server's), stopped and removed afterwards. Returns
 * the reason instead when the server cannot be started (no PostgreSQL binaries, say).
 */
export async function withPrivatePostgres<T>(
  bench: BenchContext,
  body: (on: PrivatePostgres) => Promise<T>,
): Promise<T | { skipped: string }> {
  let server: LogicalPostgres;
  try {
    bench.log('starting a private PostgreSQL with wal_level = logical');
    server = await (await loadScript()).startLogicalPostgres();
  } catch (error) {
    return { skipped: `no private PostgreSQL: ${errorMessage(error).split('\n')[0]}` };
  }
  try {
    const onPrivate = new BenchContext({ ...bench.settings, databaseUrl: server.url }, (line) =>
      bench.log(line),
    );
    return await body({ bench: onPrivate, server });
  } finally {
    await server.stop();
  }
}
