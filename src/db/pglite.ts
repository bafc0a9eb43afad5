import type { PGlite, Transaction } from '@electric-sql/pglite';
import type { Database, TransactionExecutor } from './database.js';

function wrap(target: PGlite | Transaction): TransactionExecutor {
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
export function pgliteDatabase(db: PGlite): Database {
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
