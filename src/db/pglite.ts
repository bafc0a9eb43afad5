import type { Database, TransactionExecutor } from './database.js';

/**
 * The part of a PGlite transaction this adapter uses, by shape: the package's types then
 * do not depend on PGlite's, which need Emscripten's type declarations to check.
 */
export interface PGliteTransactionLike {
  query<R>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
  exec(sql: string): Promise<unknown>;
}

/** The part of a `PGlite` instance this adapter uses; a `PGlite` is one. */
export interface PGliteLike extends PGliteTransactionLike {
  transaction<T>(fn: (tx: PGliteTransactionLike) => Promise<T>): Promise<T>;
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
}

function wrap(target: PGliteTransactionLike): TransactionExecutor {
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      const result = await target.query<R>(text, [...values]);
      return { rows: result.rows };
    },
    async exec(sql: string) {
      await target.exec(sql);
    },
  };
}

/**
 * A `Database` over an embedded PGlite instance. PGlite is one session: transactions run
 * one after another, which is what the embedded demo needs. `close()` leaves the
 * instance open; its owner closes it.
 */
export function pgliteDatabase(db: PGliteLike): Database {
  const plain = wrap(db);
  return {
    query: plain.query,
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    async listen(channel, onNotify) {
      // PGlite quotes nothing itself; our channel names are validated lower-case identifiers.
      const unlisten = await db.listen(`"${channel}"`, () => onNotify());
      return async () => {
        await unlisten();
      };
    },
    async close() {},
  };
}
