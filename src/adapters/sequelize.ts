/**
 * `edupulse-outbox/sequelize`: a Sequelize transaction as the handle `enqueue` and
 * `inbox.process` take.
 *
 * ```ts
 * await sequelize.transaction(async (t) => {
 *   await Lesson.update({ published: true }, { where: { id }, transaction: t });
 *   await outbox.enqueue(fromSequelize(sequelize, t), LessonPublished.create({ … }));
 * });
 * ```
 */
import type { QueryOptions, Sequelize, Transaction } from 'sequelize';
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  endedByStatement,
  isIdlePgClient,
  wrongHandle,
} from '../db/executor.js';

// What Sequelize looks for in the text of a query given `bind` (its own pattern): `$$`,
// which it turns into `$`, and `$1` or `$name`, which must have a value or it throws.
const BIND_PATTERN = /\B\$(\$|\w+)/g;

/**
 * The text that Sequelize's rewrite turns back into `text`: the `$n` that have a value stay
 * (Sequelize sends them as they are, with the values as bound parameters); every other `$`
 * it would rewrite is doubled, so `$$` in a dollar-quoted body or a `$9` in a string
 * arrives as written.
 */
function keepAsWritten(text: string, count: number): string {
  return text.replace(BIND_PATTERN, (match, key: string) => {
    if (/^[1-9]\d*$/.test(key) && Number(key) <= count) return match;
    return key === '$' ? '$$$$' : `$${match}`;
  });
}

/**
 * Sequelize's CLS transaction (`Sequelize.useCLS(namespace)`), read where Sequelize reads
 * it (`sequelize.constructor._cls`), or undefined.
 */
function clsTransaction(sequelize: Sequelize): unknown {
  const cls = (sequelize.constructor as { _cls?: { get?(key: string): unknown } })._cls;
  return typeof cls?.get === 'function' ? cls.get('transaction') : undefined;
}

function isSequelize(value: unknown): value is Sequelize {
  const shape = value as Partial<Record<keyof Sequelize, unknown>> | null;
  return (
    typeof shape?.query === 'function' &&
    typeof shape.transaction === 'function' &&
    typeof shape.getQueryInterface === 'function'
  );
}

/**
 * Wraps a Sequelize transaction as an `Executor`: `fromSequelize(sequelize, t)` with the
 * `t` of `sequelize.transaction(async (t) => …)` (or of `await sequelize.transaction()`).
 * Each statement is `sequelize.query(text, { bind: values, transaction: t })`: the values
 * are bound parameters, never `replacements` written into the text.
 *
 * Without a transaction it is refused with a TypeError, also when a CLS namespace
 * (`Sequelize.useCLS`) holds one: whether the write joined it would depend on the async
 * context at the call, so pass `t`. With `{ autocommit: true }` and no transaction, each
 * statement commits on its own, outside any CLS transaction.
 */
export function fromSequelize(
  sequelize: Sequelize,
  transaction?: Transaction | null,
  options: AdapterOptions = {},
): Executor {
  assertAdapterOptions('fromSequelize', options);
  if (!isSequelize(sequelize)) {
    throw wrongHandle('fromSequelize', 'a Sequelize instance, then its transaction', sequelize);
  }
  if (transaction != null && typeof transaction.commit !== 'function') {
    throw wrongHandle('fromSequelize', 'a Sequelize Transaction as the transaction', transaction);
  }
  if (transaction == null && !options.autocommit) {
    throw adapterNotInTransaction(
      'fromSequelize',
      clsTransaction(sequelize)
        ? 'a Sequelize instance without a transaction (its CLS transaction is not picked up implicitly)'
        : 'a Sequelize instance without a transaction',
      'the transaction too: fromSequelize(sequelize, t) with the t of sequelize.transaction(async (t) => …)',
    );
  }
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      // The transaction's node-postgres connection knows what Sequelize does not: that a
      // COMMIT sent as a statement ended it. One Sequelize finished (a statement from its
      // afterCommit hook) is refused by Sequelize itself, with the reason that is true.
      const { connection, finished } = (transaction ?? {}) as {
        connection?: unknown;
        finished?: unknown;
      };
      if (transaction && !options.autocommit && !finished && isIdlePgClient(connection)) {
        throw endedByStatement(
          'fromSequelize',
          'a Sequelize transaction',
          'the t of sequelize.transaction(async (t) => …)',
        );
      }
      const bind = values.map((value) => {
        // Sequelize would send a NUL as the two characters "\0"; PostgreSQL text has no NUL.
        if (typeof value === 'string' && value.includes('\0')) {
          throw new TypeError(
            'fromSequelize: a value contains a NUL character, which text cannot hold',
          );
        }
        return value === undefined ? null : value;
      });
      // Without values, no `bind`: Sequelize then leaves the text alone.
      const some = bind.length > 0;
      const queryOptions: QueryOptions & { supportsSearchPath: boolean } = {
        ...(some ? { bind } : {}),
        // null, not undefined: undefined would let Sequelize take the CLS transaction.
        transaction: transaction ?? null,
        // SELECT: the rows, for any statement (RAW would give [rows, result], and an
        // INSERT [rows, rowCount]).
        type: 'SELECT',
        raw: true,
        plain: false,
        nest: false,
        // The library names its schema in every statement; a search_path set in front
        // would make two statements of one, which cannot carry parameters.
        supportsSearchPath: false,
      };
      const sql = some ? keepAsWritten(text, bind.length) : text;
      const rows = await sequelize.query(sql, queryOptions);
      return { rows: rows as unknown as R[] };
    },
  };
}
