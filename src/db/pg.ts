import pg from 'pg';
import type { Database, DatabaseSession, TransactionExecutor } from './database.js';

export interface PgDatabaseOptions {
  /** `postgres://user:pass@host:port/db`. */
  connectionString: string;
  /** Most connections the pool opens (the listener takes one more). Default 4. */
  maxConnections?: number;
  /** Shown in `pg_stat_activity`. Default `edupulse-outbox`. */
  applicationName?: string;
  /** Connection attempt timeout. Default 5000. */
  connectTimeoutMs?: number;
  /** Reports errors of idle pooled connections (a restarted server); they are otherwise harmless. */
  onIdleError?: (error: Error) => void;
}

// Dispatcher sessions plan every claim afresh: a generic plan cached while the table was
// empty stays a sequential scan once it is full. A transaction left idle for five minutes
// (a frozen process; a hung broker call is cut sooner, at publishTimeoutMs) is ended by
// the server so its claimed rows come back.
const SESSION_OPTIONS =
  '-c plan_cache_mode=force_custom_plan -c idle_in_transaction_session_timeout=300000';

/** A `Database` over node-postgres: a pool for transactions, one extra connection per `listen`. */
export function pgDatabase(options: PgDatabaseOptions): Database {
  const config: pg.PoolConfig = {
    connectionString: options.connectionString,
    max: options.maxConnections ?? 4,
    application_name: options.applicationName ?? 'edupulse-outbox',
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    options: SESSION_OPTIONS,
  };
  const pool = new pg.Pool(config);
  // Without a listener an idle connection dropped by a server restart would crash the process.
  pool.on('error', (error) => options.onIdleError?.(error));
  const listeners = new Set<pg.Client>();

  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      const result = await pool.query(text, [...values]);
      return { rows: result.rows as R[] };
    },

    async transaction<T>(fn: (tx: TransactionExecutor) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      const tx: TransactionExecutor = {
        async query<R>(text: string, values: readonly unknown[] = []) {
          const result = await client.query(text, [...values]);
          return { rows: result.rows as R[] };
        },
        async exec(sql: string) {
          await client.query(sql);
        },
      };
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          // The session is unusable (server gone, connection cut): do not return it to the pool.
          broken = rollbackError as Error;
        }
        throw error;
      } finally {
        client.release(broken);
      }
    },

    async listen(channel, onNotify, onError) {
      const client = new pg.Client(config);
      listeners.add(client);
      let closed = false;
      const fail = (error: Error) => {
        if (closed) return;
        closed = true;
        listeners.delete(client);
        client.end().catch(() => {});
        onError?.(error);
      };
      client.on('error', fail);
      client.on('end', () => fail(new Error('listening connection closed')));
      client.on('notification', (message) => {
        if (message.channel === channel) onNotify();
      });
      try {
        await client.connect();
        await client.query(`LISTEN "${channel}"`);
      } catch (error) {
        closed = true;
        listeners.delete(client);
        await client.end().catch(() => {});
        throw error;
      }
      return async () => {
        if (closed) return;
        closed = true;
        listeners.delete(client);
        await client.end().catch(() => {});
      };
    },

    async session(applicationName: string): Promise<DatabaseSession> {
      const client = new pg.Client({ ...config, application_name: applicationName });
      listeners.add(client);
      let lost: ((error: Error) => void) | undefined;
      let ended = false;
      const end = (error: Error) => {
        if (ended) return;
        ended = true;
        listeners.delete(client);
        client.end().catch(() => {});
        lost?.(error);
      };
      client.on('error', end);
      client.on('end', () => end(new Error('session connection closed')));
      try {
        await client.connect();
      } catch (error) {
        ended = true;
        listeners.delete(client);
        await client.end().catch(() => {});
        throw error;
      }
      return {
        async query<R>(text: string, values: readonly unknown[] = []) {
          const result = await client.query(text, [...values]);
          return { rows: result.rows as R[] };
        },
        onLost(listener) {
          lost = listener;
        },
        async close() {
          if (ended) return;
          ended = true;
          listeners.delete(client);
          await client.end().catch(() => {});
        },
      };
    },

    async close() {
      await Promise.all([...listeners].map((client) => client.end().catch(() => {})));
      listeners.clear();
      await pool.end();
    },
  };
}
