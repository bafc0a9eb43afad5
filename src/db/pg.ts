import pg from 'pg';
import { ConfigError, OutboxError } from '../common/errors.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { withTimeout } from '../common/timeout.js';
import { answeredWithin, type DatabaseTimeouts, sessionLimits } from './answer-timeout.js';
import {
  closedInUse,
  type Database,
  type DatabaseCallOptions,
  type DatabaseSession,
  type TransactionExecutor,
} from './database.js';
import { pgConnectionSettings } from './pg-config.js';
import { hostChoosingClient } from './pg-hosts.js';
import { preparedName, reachesServerDirectly } from './prepared.js';

export interface PgDatabaseOptions {
  /**
   * `postgres://user:pass@host:port/db`, read as libpq reads it: `sslmode`, `sslrootcert`,
   * `sslcert`, `sslkey`, `password_file`, `connect_timeout`, several hosts (`a:5432,b:5432`)
   * and `target_session_attrs` (see pg-config.ts; docs/operations.md). Undefined (an unset
   * `process.env.DATABASE_URL`) is a ConfigError saying so.
   */
  connectionString: string | undefined;
  /** The setting the connection string came from, named in errors. Default `connectionString`. */
  setting?: string;
  /** Most connections the pool opens (the listener takes one more). Default 4. */
  maxConnections?: number;
  /** Shown in `pg_stat_activity`. Default `edupulse-outbox`. */
  applicationName?: string;
  /** Connection attempt timeout. Default 5000. */
  connectTimeoutMs?: number;
  /**
   * `dispatcher` (the default): every connection gets the session settings a dispatcher's
   * claim needs (generic plans, no sequential or bitmap scans, a five-minute
   * idle-transaction timeout; see below). `server`: none, the server's own, for a pool
   * that serves only an application's or an operator's statements (the CLI's admin
   * commands and the console use one: a dead letter found by its id through its index).
   */
  planner?: 'dispatcher' | 'server';
  /** Reports errors of idle pooled connections (a restarted server); they are otherwise harmless. */
  onIdleError?: (error: Error) => void;
}

// The claim must walk the seq index in order and stop after a batch; the planner,
// misjudging its per-row filters, would otherwise pick a bitmap or sequential scan of
// every pending row plus a sort (measured: 700 ms instead of 45 ms for 500 of 267,500
// rows, with and without statistics), and a plan made while the table was empty would
// keep doing so. With those two scans off, the plan is the index walk whatever the
// parameters, so it is made once per connection (generic plans of prepared statements,
// see transaction()): planning each claim cost more server CPU than executing it in small
// batches. A transaction left idle for five minutes (a frozen process; a hung broker call
// is cut sooner, at publishTimeoutMs) is ended by the server so its claimed rows come back.
// JIT is off: with those scans off, a statement that can only scan (a one-row settings
// table) is costed far above jit_above_cost, and compiling it took 60-100 ms, past a
// DBA's statement_timeout of 50 ms; no statement of ours is long enough to gain from it.
// Set by a statement on each new connection rather than as startup options, which
// connection poolers refuse (PgBouncer: "unsupported startup parameter: options").
const SESSION_SETTINGS = [
  'plan_cache_mode = force_generic_plan',
  'enable_bitmapscan = off',
  'enable_seqscan = off',
  'jit = off',
  'idle_in_transaction_session_timeout = 300000',
]
  .map((setting) => `SET ${setting}`)
  .join('; ');

/** The result of a simple-protocol query: the last statement's, when it held several. */
function lastResult(result: pg.QueryResult | pg.QueryResult[]): pg.QueryResult {
  return Array.isArray(result) ? (result.at(-1) as pg.QueryResult) : result;
}

/**
 * The values of a statement sent as `EXECUTE name(…)` inside a simple-protocol message,
 * written in: only integers, and strings of digits or of an array of digits ('{0,1}'),
 * which need no quoting rules. Undefined for anything else: then it goes with bound
 * parameters.
 */
function digitLiterals(values: readonly unknown[]): string | undefined {
  const literals: string[] = [];
  for (const value of values) {
    if (typeof value === 'number' && Number.isSafeInteger(value)) literals.push(String(value));
    else if (typeof value === 'string' && /^(\d+|\{\d*(,\d+)*\})$/.test(value)) {
      literals.push(`'${value}'`);
    } else return undefined;
  }
  return literals.join(', ');
}

/** The parts of node-postgres's connection a query writes its protocol messages with. */
interface ProtocolWriter {
  parse(message: { text: string; name: string }): void;
  bind(message: { portal: string; statement: string; values: unknown[] }): void;
  execute(message: { portal: string; rows: number }): void;
}

/**
 * A prepared statement, already parsed on the connection, sent behind BEGIN in one
 * extended-protocol message: Parse, Bind and Execute of BEGIN (the unnamed statement),
 * then the statement's own Bind, Describe, Execute and one Sync, which node-postgres
 * writes with one system call. Its result is BEGIN's and then the statement's. The
 * values still go as bound parameters. Only for a statement the connection has run (so
 * its own Parse is not in the message: node-postgres takes the ParseComplete of BEGIN
 * for the statement's).
 */
class BeginThenQuery extends pg.Query {
  prepare(connection: ProtocolWriter): void {
    connection.parse({ text: 'BEGIN', name: '' });
    connection.bind({ portal: '', statement: '', values: [] });
    connection.execute({ portal: '', rows: 0 });
    (pg.Query.prototype as unknown as { prepare(c: ProtocolWriter): void }).prepare.call(
      this,
      connection,
    );
  }
}

/**
 * A query of a prepared statement, built from its text and values rather than from a
 * config object: node-postgres copies a config object property by property
 * (`Object.defineProperties`) for every query, which took 6 % of a consumer's
 * JavaScript time in `consume-inbox`, and leaves an object slow to read.
 */
function namedQuery(
  Kind: typeof pg.Query,
  name: string,
  text: string,
  values: readonly unknown[],
): pg.Query {
  const query = new Kind(text, [...values]);
  (query as unknown as { name: string }).name = name;
  return query;
}

/** Where a submitted query hands over its outcome: an error, or its result set(s). */
type QueryCallback = (error: Error | null, result: pg.QueryResult | pg.QueryResult[]) => void;

/**
 * Runs `query` on `client`: its result set, or the last of them. An error's stack is taken
 * again here, as node-postgres does for the queries it makes itself, so that it leads back
 * to the caller instead of to the socket that read the error.
 */
function submit(client: pg.ClientBase, query: pg.Query): Promise<pg.QueryResult> {
  return new Promise<pg.QueryResult>((resolve, reject) => {
    const callback: QueryCallback = (error, result) =>
      error ? reject(error) : resolve(lastResult(result));
    (query as unknown as { callback: QueryCallback }).callback = callback;
    client.query(query);
  }).catch((error: unknown) => {
    if (error instanceof Error) Error.captureStackTrace(error);
    throw error;
  });
}

/** A `Database` over node-postgres: a pool for transactions, one extra connection per `listen`. */
export const pgDatabaseOptions = optionNames<PgDatabaseOptions>({
  connectionString: true,
  setting: true,
  maxConnections: true,
  applicationName: true,
  connectTimeoutMs: true,
  planner: true,
  onIdleError: true,
});

export function pgDatabase(options: PgDatabaseOptions): Database {
  assertKnownOptions('pgDatabase', options, pgDatabaseOptions);
  const setting = options.setting ?? 'connectionString';
  const planner = options.planner ?? 'dispatcher';
  if (planner !== 'dispatcher' && planner !== 'server') {
    throw new ConfigError('planner', `"${String(planner)}" is not dispatcher or server`);
  }
  const connection = pgConnectionSettings(options.connectionString, setting);
  const config: pg.PoolConfig = {
    max: options.maxConnections ?? 4,
    application_name: options.applicationName ?? 'edupulse-outbox',
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    // The URL's own parameters (an application_name of its own) take precedence.
    ...connection.config,
  };
  // Connections that reach the server through a pooler not declared as pinning sessions:
  // they get neither the session settings (a pooler in transaction mode would hand them on
  // to other clients' transactions) nor named prepared statements (which live in one server
  // session). Admin commands work through such a pooler; session() refuses it.
  const unpinned = new WeakSet<pg.ClientBase>();
  /** Per connection, the prepared statements it has run (see BeginThenQuery). */
  const ranPrepared = new WeakMap<pg.ClientBase, Set<string>>();
  /** Per connection, the statements prepared with SQL PREPARE (see queryAfter). */
  const sqlPrepared = new WeakMap<pg.ClientBase, Set<string>>();
  /**
   * The name `text` is prepared under on `client` by SQL PREPARE, prepared on first use;
   * undefined where statements are not prepared (a pooler). A distinct name from the
   * protocol-level one: both live in the session's one namespace.
   */
  const preparedBySql = async (client: pg.PoolClient, text: string) => {
    if (unpinned.has(client)) return undefined;
    const name = `${preparedName(text)}_sql`;
    const names = sqlPrepared.get(client) ?? new Set<string>();
    sqlPrepared.set(client, names);
    if (!names.has(name)) {
      try {
        await client.query(`PREPARE ${name} AS ${text}`);
      } catch (error) {
        // Already there: a session a pooler in session mode handed on.
        if ((error as { code?: string }).code !== '42P05') throw error;
      }
      names.add(name);
    }
    return name;
  };
  const Client = hostChoosingClient(connection.hosts, connection.readWrite);
  const pool = new pg.Pool({
    ...config,
    ...(Client ? { Client } : {}),
    onConnect: async (client) => {
      if (connection.sessionPooler || (await reachesServerDirectly(client))) {
        if (planner === 'dispatcher') await client.query(SESSION_SETTINGS);
      } else {
        unpinned.add(client);
      }
    },
  });
  // Without a listener an idle connection dropped by a server restart would crash the process.
  pool.on('error', (error) => options.onIdleError?.(error));
  const sessionOptions = {
    setting,
    sessionPooler: connection.sessionPooler,
    Client,
    ...(connection.sessionPooler
      ? { pinCheck: (client: pg.Client) => checkSessionIsPinned(client, pool, setting) }
      : {}),
  };
  const dedicated = new Set<pg.Client>();
  // After close(), what node-postgres says ("Cannot use a pool after calling end on the
  // pool") reads like an outage, and a dispatcher would retry it for good.
  let closed = false;
  const usable = () => {
    if (closed) throw closedInUse('the database');
  };

  const transaction = async <T>(
    fn: (tx: TransactionExecutor) => Promise<T>,
    timeouts: DatabaseTimeouts | undefined,
  ): Promise<T> => {
    usable();
    const client = await pool.connect();
    const answered = <V>(work: Promise<V>) => answeredWithin(client, timeouts?.answerMs, work);
    // Round trips are much of a small batch's cost: BEGIN goes out with the first
    // statement (one simple-protocol message when it has no parameters, one
    // extended-protocol message when it is prepared, see BeginThenQuery), and
    // commitWith() sends its statement and COMMIT together.
    let begun = false;
    let committed = false;
    let ended = false;
    // A handle kept past its transaction would run its statements on a connection back
    // in the pool: in whatever transaction takes it next, or in none.
    const open = () => {
      if (ended) {
        throw new TypeError(
          'this transaction of database.transaction() has ended (committed or rolled back): a statement through its handle would run outside it; await everything done with it inside the callback',
        );
      }
    };
    const begin = async () => {
      if (!begun) {
        begun = true;
        await answered(client.query('BEGIN'));
      }
    };
    const simple = async (text: string) => lastResult(await simpleAll(text));
    const simpleAll = async (text: string) => {
      const prefix = begun ? '' : 'BEGIN;\n';
      begun = true;
      const result: pg.QueryResult | pg.QueryResult[] = await answered(
        client.query(`${prefix}${text}`),
      );
      return Array.isArray(result) ? result : [result];
    };
    const tx: TransactionExecutor = {
      async query<R>(text: string, values: readonly unknown[] = []) {
        open();
        if (values.length === 0) return { rows: (await simple(text)).rows as R[] };
        if (unpinned.has(client)) {
          await begin();
          return { rows: (await answered(client.query(text, [...values]))).rows as R[] };
        }
        // Statements with parameters are prepared once per connection (by a name derived
        // from their text) and planned once: the dispatcher sends the same few
        // statements for every batch, and parsing and planning them each time cost
        // about a millisecond of server CPU per batch. The first of a transaction takes
        // BEGIN along once the connection has run it (a consumer's inbox statement: one
        // round trip of its handler's four).
        const name = preparedName(text);
        const ran = ranPrepared.get(client) ?? new Set<string>();
        let result: pg.QueryResult;
        if (!begun && ran.has(name)) {
          begun = true;
          result = await answered(submit(client, namedQuery(BeginThenQuery, name, text, values)));
        } else {
          await begin();
          result = await answered(submit(client, namedQuery(pg.Query, name, text, values)));
          ran.add(name);
          ranPrepared.set(client, ran);
        }
        return { rows: result.rows as R[] };
      },
      async exec(sql: string) {
        open();
        await simple(sql);
      },
      async queryAfter<B, R>(before: string, text: string, values: readonly unknown[]) {
        open();
        // One message: BEGIN if not yet sent, `before`, and the statement prepared by SQL
        // PREPARE run by EXECUTE with its values written in. A simple-protocol message
        // runs its statements in order, each in a snapshot of its own.
        const literals = digitLiterals(values);
        const name =
          literals === undefined ? undefined : await answered(preparedBySql(client, text));
        if (name) {
          const results = await simpleAll(`${before};\nEXECUTE ${name}(${literals})`);
          return {
            before: (results.at(-2)?.rows ?? []) as B[],
            rows: (results.at(-1)?.rows ?? []) as R[],
          };
        }
        const first = await simple(before);
        const { rows } = await tx.query<R>(text, values);
        return { before: first.rows as B[], rows };
      },
      async commitWith(text: string) {
        open();
        await simple(`${text};\nCOMMIT`);
        committed = true;
      },
    };
    let broken: Error | undefined;
    // While checked out the pool does not listen for this client's errors: a server
    // that ends the session (restart, admin) while we wait on the broker would be an
    // unhandled 'error' event and kill the process. Remember it; the next query fails.
    const lost = (error: Error) => {
      broken = error;
    };
    client.on('error', lost);
    try {
      const result = await fn(tx);
      if (begun && !committed) {
        // A statement that failed inside, its error caught (an `INSERT … .catch()` with no
        // savepoint), aborted the transaction: PostgreSQL answers COMMIT with ROLLBACK, no
        // error. Nothing was written, and resolving would tell the caller it was (the
        // consumer would ack an event neither recorded nor applied).
        const { command } = await answered(client.query('COMMIT'));
        committed = true;
        if (command === 'ROLLBACK') {
          throw new OutboxError(
            'TRANSACTION_ROLLED_BACK',
            'the transaction was rolled back at COMMIT, nothing of it written: a statement in it failed and its error was caught, which aborts a PostgreSQL transaction (go on after an error inside a SAVEPOINT)',
          );
        }
      }
      return result;
    } catch (error) {
      if (begun && !committed) {
        try {
          await answered(client.query('ROLLBACK'));
        } catch (rollbackError) {
          // The session is unusable (server gone, connection cut): do not return it to the pool.
          broken = rollbackError as Error;
        }
      }
      throw error;
    } finally {
      ended = true;
      client.off('error', lost);
      client.release(broken);
    }
  };

  return {
    async query<R>(text: string, values: readonly unknown[] = [], options?: DatabaseCallOptions) {
      // With timeouts, in a transaction of its own: the same guard over the connection.
      if (options?.timeouts)
        return transaction((tx) => tx.query<R>(text, values), options.timeouts);
      usable();
      const result = await pool.query(text, [...values]);
      return { rows: result.rows as R[] };
    },
    transaction: <T>(fn: (tx: TransactionExecutor) => Promise<T>, options?: DatabaseCallOptions) =>
      transaction(fn, options?.timeouts),

    async listen(channel: string, onNotify: () => void, onError?: (error: Error) => void) {
      usable();
      const { client, session } = await openSession(config, dedicated, 'listening', sessionOptions);
      session.onLost((error) => onError?.(error));
      client.on('notification', (message) => {
        if (message.channel === channel) onNotify();
      });
      try {
        await session.query(`LISTEN "${channel}"`);
      } catch (error) {
        await session.close();
        throw error;
      }
      return () => session.close();
    },

    async session(applicationName: string, options?: DatabaseCallOptions) {
      usable();
      const named = { ...config, application_name: applicationName };
      const opened = await openSession(named, dedicated, 'session', {
        ...sessionOptions,
        timeouts: options?.timeouts,
      });
      return opened.session;
    },

    async close() {
      closed = true;
      await Promise.all([...dedicated].map((client) => client.end().catch(() => {})));
      dedicated.clear();
      await pool.end();
    },
  };
}

/**
 * Refuses a session that does not reach the server directly. Session advisory locks
 * (partition ownership, a consumer's lease) and LISTEN belong to one server session for
 * the life of the connection; a pooler in transaction mode hands each transaction to any
 * server connection, so a lock would stay behind on a connection another client then
 * uses — two dispatchers owning one partition — and notifications would go astray. A
 * pooler in session mode (one server session per client connection) keeps every
 * guarantee: the URL says so with `pooler=session`, and the check is skipped.
 */
async function checkSessionIsDirect(client: pg.Client, setting: string): Promise<void> {
  if (await reachesServerDirectly(client)) return;
  throw new ConfigError(
    setting,
    'reaches PostgreSQL through a connection pooler (the server process answering is not the one the connection was given), ' +
      "which breaks the session locks that keep events in order (a dispatcher's partitions, a consumer's lease). " +
      'Give this process a direct URL to the server (applications may keep using the pooler to enqueue), ' +
      'or, for a pooler in session mode (PgBouncer pool_mode = session), add pooler=session to the URL',
  );
}

/** How long the pinned-session check waits for the pool, and for the session meanwhile. */
const PIN_CHECK_MS = 2000;

/**
 * With `pooler=session` declared, whether the session keeps one server session, as a
 * pooler in session mode gives it: its server process is read, then read again while a
 * transaction of the pool holds a server connection. Through a pooler in transaction
 * mode the pool's transaction takes the server connection the session's statement just
 * left (PgBouncer hands out the last one used first), and the session's next statement
 * goes to another server process, or waits for one. Declared so by mistake, the session
 * locks would stay on server connections other clients use (a stopped dispatcher's
 * partitions never coming free), so it is refused. Inconclusive (the pool gives no
 * connection in time), it passes.
 */
async function checkSessionIsPinned(
  client: pg.Client,
  pool: pg.Pool,
  setting: string,
): Promise<void> {
  const serverPid = async (on: pg.ClientBase) =>
    Number((await on.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid);
  const before = await serverPid(client);
  const connecting = pool.connect();
  let held: pg.PoolClient;
  try {
    held = await withTimeout(connecting, PIN_CHECK_MS);
  } catch {
    // Released when it comes, so it is not lost to the pool.
    connecting.then(
      (late) => late.release(),
      () => {},
    );
    return;
  }
  let after: number | undefined;
  try {
    await held.query('BEGIN');
    await serverPid(held);
    after = await withTimeout(serverPid(client), PIN_CHECK_MS).catch(() => undefined);
  } finally {
    await held.query('ROLLBACK').catch(() => {});
    held.release();
  }
  if (after === before) return;
  throw new ConfigError(
    setting,
    'says pooler=session, but the pooler does not keep this connection on one server session ' +
      `(server process ${before}, then ${after ?? 'none free while another client held one'}): ` +
      "a pooler in transaction mode, which scatters the session locks that keep events in order (a dispatcher's partitions, a consumer's lease). " +
      'Give this process a direct URL to the server, or a pooler in session mode (PgBouncer pool_mode = session)',
  );
}

/**
 * A connection outside the pool (LISTEN, session locks), tracked in `open` so close()
 * ends it. Whoever holds it hears once, through onLost, that it is gone.
 */
async function openSession(
  config: pg.ClientConfig,
  open: Set<pg.Client>,
  purpose: string,
  options: {
    setting: string;
    sessionPooler: boolean;
    Client: (new (config?: pg.ClientConfig) => pg.Client) | undefined;
    timeouts?: DatabaseTimeouts | undefined;
    /** Refuses a session a declared session pooler does not keep on one server session. */
    pinCheck?: (client: pg.Client) => Promise<void>;
  },
): Promise<{ client: pg.Client; session: DatabaseSession }> {
  const answerMs = options.timeouts?.answerMs;
  const idleSessionMs = options.timeouts?.idleSessionMs;
  const client = new (options.Client ?? pg.Client)(config);
  open.add(client);
  let lost: ((error: Error) => void) | undefined;
  let ended = false;
  const end = () => {
    if (ended) return false;
    ended = true;
    open.delete(client);
    return true;
  };
  const fail = (error: Error) => {
    if (!end()) return;
    client.end().catch(() => {});
    lost?.(error);
  };
  client.on('error', fail);
  client.on('end', () => fail(new Error(`${purpose} connection closed`)));
  try {
    await client.connect();
    // Checked first: a session setting must not reach a pooler's shared server connections.
    if (!options.sessionPooler) await checkSessionIsDirect(client, options.setting);
    else await options.pinCheck?.(client);
    await answeredWithin(client, answerMs, client.query(SESSION_SETTINGS));
    if (idleSessionMs !== undefined) {
      await answeredWithin(client, answerMs, client.query(sessionLimits(idleSessionMs)));
    }
  } catch (error) {
    end();
    await client.end().catch(() => {});
    throw error;
  }
  const session: DatabaseSession = {
    // A statement with parameters is prepared on the session at its first run (the write
    // probe's look, repeated every few milliseconds, then costs no parse and no plan); one
    // without goes out as one simple query. A session reaches one server session (see
    // checkSessionIsDirect), which keeps the statements until it ends.
    async query<R>(text: string, values: readonly unknown[] = []) {
      const query =
        values.length === 0
          ? client.query(text)
          : client.query({ name: preparedName(text), text, values: [...values] });
      const result = await answeredWithin(client, answerMs, query);
      return { rows: result.rows as R[] };
    },
    onLost(listener) {
      lost = listener;
    },
    async close() {
      // Bounded like a statement: on a connection gone silent, ending waits for a reply
      // that never comes, and a dispatcher's stop() with it.
      if (end()) await answeredWithin(client, answerMs, client.end()).catch(() => {});
    },
  };
  return { client, session };
}
