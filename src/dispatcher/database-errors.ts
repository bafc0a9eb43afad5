import { errorMessage } from '../common/errors.js';
import type { Database, TransactionExecutor } from '../db/database.js';
import { hasSqlState } from '../db/missing-table.js';

/**
 * Which errors came from the database. The loop reports "database unavailable" only for
 * these; anything else thrown in a batch is the dispatcher's own fault and said so, so an
 * odd row or a bug is never mistaken for an outage (and never hidden behind one).
 */
const fromDatabase = new WeakSet<object>();

function mark(error: unknown): unknown {
  if (typeof error === 'object' && error !== null) fromDatabase.add(error);
  return error;
}

export function isDatabaseError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && fromDatabase.has(error);
}

/** `work`, with what it rejects with marked as a database error. */
export async function databaseWork<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    throw mark(error);
  }
}

/**
 * `db.transaction(fn)` where the statements of `tx`, and BEGIN, COMMIT and getting a
 * connection, throw marked errors; what `fn` throws of its own stays unmarked.
 */
export async function markDatabaseErrors<T>(
  db: Database,
  fn: (tx: TransactionExecutor) => Promise<T>,
): Promise<T> {
  let bodyError: unknown;
  let bodyFailed = false;
  try {
    return await db.transaction(async (tx) => {
      const marked: TransactionExecutor = {
        query<R>(text: string, values?: readonly unknown[]) {
          return databaseWork(tx.query<R>(text, values));
        },
        exec: (sql) => databaseWork(tx.exec(sql)),
        ...(tx.commitWith
          ? {
              commitWith: (text: string) =>
                databaseWork((tx.commitWith as (t: string) => Promise<void>)(text)),
            }
          : {}),
        ...(tx.queryAfter
          ? {
              queryAfter: <B, R>(before: string, text: string, values: readonly unknown[]) =>
                databaseWork(
                  (tx.queryAfter as NonNullable<TransactionExecutor['queryAfter']>)<B, R>(
                    before,
                    text,
                    values,
                  ),
                ),
            }
          : {}),
      };
      try {
        return await fn(marked);
      } catch (error) {
        bodyFailed = true;
        bodyError = error;
        throw error;
      }
    });
  } catch (error) {
    if (!bodyFailed || error !== bodyError) mark(error);
    throw error;
  }
}

/**
 * Refusals that are no outage of the server but a setting of it, which retrying waits on
 * until someone changes it: what to change, after PostgreSQL's own message.
 */
/** What a write refused as read-only (25006) means, for the dispatcher and the CLI's writing commands. */
export const READ_ONLY_HINT =
  'the server takes no writes: a standby, or default_transaction_read_only is on; point the database URL at the primary, or add target_session_attrs=read-write to it';

const SETTING_HINTS: readonly (readonly [string, string])[] = [
  ['25006', READ_ONLY_HINT],
  [
    '53400',
    'a limit of the server (temp_file_limit, work_mem) refuses the claim; raise it for this role, or lower --batch-size',
  ],
  [
    '40001',
    "the dispatcher's transactions conflicted: this role's default_transaction_isolation is serializable or repeatable read, and they are retried; the dispatcher needs no more than read committed: ALTER ROLE <role> SET default_transaction_isolation = 'read committed'",
  ],
];

const STATEMENT_TIMEOUT =
  "a statement timeout of the server or this role cancelled the dispatcher's statement; raise statement_timeout for this role";

/**
 * A cancelled statement (57014): a statement timeout, or an operator's pg_cancel_backend.
 * The server's message tells them apart in English; in another language (lc_messages)
 * both are named.
 */
function cancelHint(message: string): string | undefined {
  if (/statement timeout/.test(message)) return STATEMENT_TIMEOUT;
  if (/user request/.test(message)) return undefined;
  return `cancelled by a statement timeout of the server or this role (then raise statement_timeout for this role), or by an operator's pg_cancel_backend`;
}

/** A database error's message, with what to change when a setting of the server refuses. */
export function databaseProblem(error: unknown): string {
  const message = errorMessage(error);
  const hint = hasSqlState(error, '57014')
    ? cancelHint(message)
    : SETTING_HINTS.find(([state]) => hasSqlState(error, state))?.[1];
  return hint ? `${message} (${hint})` : message;
}
