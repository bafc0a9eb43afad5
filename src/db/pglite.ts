import { closedInUse, type Database, type TransactionExecutor } from './database.js';
import { inTransactionBlock } from './executor.js';

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
  /** Whether the session is inside a transaction block (PGlite 0.2 and later). */
  isInTransaction?(): boolean;
  /** Whether `close()` has run (PGlite 0.2 and later). */
  readonly closed?: boolean;
}

/** How long a statement waits, at most between two looks, for a transaction begun outside to end. */
const OUTSIDE_TRANSACTION_POLL_MS = 20;

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
 *
 * PGlite keeps its own `transaction()` calls apart, not a transaction the application
 * began with `exec('BEGIN')` on the instance: a statement of ours sent meanwhile would run
 * inside it, and our COMMIT would commit the application's work (and its events) though
 * it later rolls back. So every statement first waits until the session is outside a
 * transaction block. (A BEGIN already queued behind another PGlite call when we look can
 * still go first; `pglite.transaction()` has no such gap.)
 */
export function pgliteDatabase(db: PGliteLike): Database {
  const plain = wrap(db);
  const outsideTransaction = async () => {
    for (let waitMs = 1; ; waitMs = Math.min(waitMs * 2, OUTSIDE_TRANSACTION_POLL_MS)) {
      if (db.closed) {
        throw closedInUse('the PGlite instance');
      }
      if (!inTransactionBlock(db)) return;
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  };
  return {
    async query(text, values) {
      await outsideTransaction();
      return plain.query(text, values);
    },
    async transaction(fn) {
      await outsideTransaction();
      return db.transaction((tx) => fn(wrap(tx)));
    },
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
