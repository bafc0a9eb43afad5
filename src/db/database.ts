import type { Executor } from './executor.js';

/** A transaction as the dispatcher and migrator see it: statements, plus multi-statement SQL scripts. */
export interface TransactionExecutor extends Executor {
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/**
 * What the dispatcher and the migrator need from a database: a pool of sessions for
 * transactions, and a way to hear `NOTIFY`. Adapters: `pgDatabase` (node-postgres) and
 * `pgliteDatabase` (embedded PGlite).
 */
export interface Database extends Executor {
  /** Runs `fn` in a transaction: commit when it resolves, roll back when it throws. */
  transaction<T>(fn: (tx: TransactionExecutor) => Promise<T>): Promise<T>;
  /**
   * Calls `onNotify` for each notification on `channel` until the returned function is
   * called. `onError` hears a lost listening connection; the caller keeps polling meanwhile.
   */
  listen(
    channel: string,
    onNotify: () => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>>;
  /** Releases every connection the adapter opened. */
  close(): Promise<void>;
}
