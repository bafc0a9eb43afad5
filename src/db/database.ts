import { ConfigError } from '../common/errors.js';
import { describeValue } from '../common/text.js';
import type { DatabaseTimeouts } from './answer-timeout.js';
import type { Executor } from './executor.js';

/** A transaction as the dispatcher and migrator see it: statements, plus multi-statement SQL scripts. */
export interface TransactionExecutor extends Executor {
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Optional: runs a statement without parameters and commits, in one round trip. The
   * transaction is then over; `transaction()` commits nothing more. An adapter without it
   * is used through `query`, then the usual COMMIT.
   */
  commitWith?(text: string): Promise<void>;
  /**
   * Optional: runs `before` (statements without parameters, separated by semicolons),
   * then `text` with `values`, in this order and each in a snapshot of its own as
   * separate queries would be, in one round trip; returns the rows of the last statement
   * of `before` and those of `text`. Without it the dispatcher sends them one by one.
   */
  queryAfter?<B, R>(
    before: string,
    text: string,
    values: readonly unknown[],
  ): Promise<{ before: B[]; rows: R[] }>;
}

/**
 * For a caller whose statements are all short (the dispatcher): `timeouts` drops a
 * connection left unanswered, and asks the server to end a dedicated session left idle
 * (see DatabaseTimeouts). An adapter without a network to lose (PGlite) ignores them.
 */
export interface DatabaseCallOptions {
  timeouts?: DatabaseTimeouts;
}

/** A connection of its own, kept open: session-level advisory locks live as long as it. */
export interface DatabaseSession extends Executor {
  /** Called once if the connection is lost; its session locks are gone with it. */
  onLost(listener: (error: Error) => void): void;
  close(): Promise<void>;
}

/**
 * What the dispatcher and the migrator need from a database: a pool of sessions for
 * transactions, and a way to hear `NOTIFY`. Adapters: `pgDatabase` (node-postgres) and
 * `pgliteDatabase` (embedded PGlite).
 */
export interface Database extends Executor {
  query<R = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
    options?: DatabaseCallOptions,
  ): Promise<{ rows: R[] }>;
  /** Runs `fn` in a transaction: commit when it resolves, roll back when it throws. */
  transaction<T>(
    fn: (tx: TransactionExecutor) => Promise<T>,
    options?: DatabaseCallOptions,
  ): Promise<T>;
  /**
   * Calls `onNotify` for each notification on `channel` until the returned function is
   * called. `onError` hears a lost listening connection; the caller keeps polling meanwhile.
   */
  listen(
    channel: string,
    onNotify: () => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>>;
  /**
   * Opens a dedicated session (dispatchers hold their partition locks on one). Absent
   * on an embedded single-session database, where one dispatcher owns every partition.
   */
  session?(applicationName: string, options?: DatabaseCallOptions): Promise<DatabaseSession>;
  /** Releases every connection the adapter opened. */
  close(): Promise<void>;
}

/**
 * Refuses, naming `setting`, what is not a `Database` (a pool or client of node-postgres
 * passed where `pgDatabase(…)` belongs would otherwise fail deep inside, or crash).
 */
export function assertDatabase(db: unknown, setting: string): asserts db is Database {
  const shape = (db ?? {}) as Partial<Record<'query' | 'transaction' | 'connect', unknown>>;
  if (typeof shape.query === 'function' && typeof shape.transaction === 'function') return;
  const wanted = 'pgDatabase({ connectionString }) or pgliteDatabase(…)';
  if (db === undefined || db === null) throw new ConfigError(setting, `is required: ${wanted}`);
  const driver =
    typeof shape.connect === 'function' && typeof shape.query === 'function'
      ? '; a node-postgres pool or client is not one: give pgDatabase its connection string'
      : '';
  throw new ConfigError(setting, `must be ${wanted}, not ${describeValue(db)}${driver}`);
}

/**
 * What a `Database` throws once its owner closed it (or the PGlite instance under it):
 * a ConfigError, so a dispatcher or consumer still running stops and says why instead of
 * retrying as if the server were away. Its own class, for the places that otherwise retry
 * a failed statement (a consumer's rounds) to tell it from an outage.
 */
export class DatabaseClosedError extends ConfigError {}

export function closedInUse(what: string): DatabaseClosedError {
  return new DatabaseClosedError(
    'db',
    `${what} was closed while still in use: stop the dispatcher or consumer before closing it`,
  );
}
