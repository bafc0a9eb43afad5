import type { Database, DatabaseCallOptions } from './database.js';

/**
 * `db` with `options` passed on each call (the timeouts of a caller whose statements are
 * all short), so that a `Database` the application wraps (to count or trace statements)
 * keeps its wrapper.
 */
export function withCallOptions(db: Database, options: DatabaseCallOptions): Database {
  const { session } = db;
  return {
    query: (text, values) => db.query(text, values, options),
    transaction: (fn) => db.transaction(fn, options),
    listen: (channel, onNotify, onError) => db.listen(channel, onNotify, onError),
    ...(session ? { session: (name: string) => session.call(db, name, options) } : {}),
    close: () => db.close(),
  };
}
