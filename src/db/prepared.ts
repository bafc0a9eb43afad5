import { createHash } from 'node:crypto';
import { hasSqlState } from './missing-table.js';

const preparedNames = new Map<string, string>();

/** A statement's prepared-statement name: the same text, the same name, on every connection. */
export function preparedName(text: string): string {
  let name = preparedNames.get(text);
  if (!name) {
    name = `edupulse_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    preparedNames.set(text, name);
  }
  return name;
}

/** A node-postgres client, as `reachesServerDirectly` uses it. */
interface Queryable {
  query(text: string): Promise<{ rows: unknown[] }>;
}

/**
 * Whether the connection reaches the server itself rather than a pooler: the process id a
 * server gives in its startup answer (the key a cancel request names) is the backend's
 * own, `pg_backend_pid()`; a pooler answers the startup itself with a key of its own
 * making, so the two differ whatever mode it runs in.
 */
export async function reachesServerDirectly(client: Queryable): Promise<boolean> {
  const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
  // node-postgres keeps it as processID, which its types do not declare.
  const announced = (client as unknown as { processID: number | null }).processID;
  return announced === null || (rows[0] as { pid?: number } | undefined)?.pid === announced;
}

/** SQLSTATE invalid_sql_statement_name: a prepared statement the session does not have. */
const UNKNOWN_STATEMENT = '26000';

/**
 * node-postgres's Client and PoolClient as the application hands one over: a query taking a
 * named statement, and the connection that tracks which names it has parsed.
 */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>;
  connection: { parsedStatements: Record<string, string> };
}

/** True for a node-postgres Client or PoolClient (not its native binding, not a Pool). */
export function isPgClient(value: object): value is PgClientLike {
  const connection = (value as { connection?: { parsedStatements?: unknown } }).connection;
  return (
    'processID' in value &&
    typeof connection?.parsedStatements === 'object' &&
    connection.parsedStatements !== null
  );
}

// Per connection, whether it reaches the server directly: known after its first statement.
const direct = new WeakMap<object, Promise<boolean>>();

function reachesDirectly(client: PgClientLike): Promise<boolean> {
  let known = direct.get(client.connection);
  if (!known) {
    // A failed check (the transaction already aborted) is made again on the next call.
    known = reachesServerDirectly(client).catch(() => {
      direct.delete(client.connection);
      return false;
    });
    direct.set(client.connection, known);
  }
  return known;
}

/**
 * Runs the library's statements on an application's node-postgres client. A statement
 * with parameters is a named prepared statement, parsed and planned once per connection
 * rather than on every call (for `enqueue`'s insert, about a tenth of what a one-event
 * transaction costs the server), where the connection reaches the server directly: a
 * prepared statement lives in one server session, which a pooler in transaction mode
 * does not keep for a client, so through a pooler every statement goes unnamed, as
 * before. The check is one `SELECT pg_backend_pid()` per connection, in the caller's
 * transaction.
 */
export async function queryOnPgClient<R>(
  client: PgClientLike,
  text: string,
  values: readonly unknown[],
): Promise<{ rows: R[] }> {
  const name = await preparedNameOn(client, text, values);
  if (name === undefined) return (await client.query(text, [...values])) as { rows: R[] };
  try {
    return (await client.query({ name, text, values: [...values] })) as { rows: R[] };
  } catch (error) {
    forgetLostStatement(client, name, error);
    throw error;
  }
}

/**
 * The name to send `text` under on `client` as a prepared statement, or undefined to send it
 * unnamed: it has no parameters, or the connection goes through a pooler (see
 * queryOnPgClient).
 */
export async function preparedNameOn(
  client: PgClientLike,
  text: string,
  values: readonly unknown[],
): Promise<string | undefined> {
  if (values.length === 0 || !(await reachesDirectly(client))) return undefined;
  return preparedName(text);
}

/** After a named statement failed: if the session lost it (DISCARD ALL, DEALLOCATE), it is parsed again next time. */
export function forgetLostStatement(client: PgClientLike, name: string, error: unknown): void {
  if (hasSqlState(error, UNKNOWN_STATEMENT)) delete client.connection.parsedStatements[name];
}
