import type { DatabaseTimeouts } from './answer-timeout.js';
import type { Database } from './database.js';

/**
 * `db` with `timeouts` passed on each call, so that a `Database` the application wraps
 * (to count or trace statements) keeps its wrapper.
 */
export function withTimeouts(db: Database, timeouts: DatabaseTimeouts): Database {
  const options = { timeouts };
  const { session } = db;
  return {
    query: (text, values) => db.query(text, values, options),
    transaction: (fn) => db.transaction(fn, options),
    listen: (channel, onNotify, onError) => db.listen(channel, onNotify, onError),
    ...(session ? { session: (name: string) => session.call(db, name, options) } : {}),
    close: () => db.close(),
  };
}
