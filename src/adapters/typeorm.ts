/**
 * `edupulse-outbox/typeorm`: a TypeORM transaction as the handle `enqueue` and
 * `inbox.process` take.
 *
 * ```ts
 * await dataSource.transaction(async (manager) => {
 *   await manager.update(Lesson, lessonId, { published: true });
 *   await outbox.enqueue(fromTypeORM(manager), LessonPublished.create({ … }));
 * });
 * ```
 */
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  endedByStatement,
  isIdlePgClient,
  wrongHandle,
} from '../db/executor.js';

/** What `fromTypeORM` takes: the manager of a transaction, or a query runner in one. */
export type TypeORMHandle = EntityManager | QueryRunner | DataSource;

const INSTEAD = 'the manager that dataSource.transaction(async (manager) => …) passes';

/** Whether `handle` has a function under each of `names`: TypeORM's classes, by their shape. */
function hasMethods<T>(handle: object, ...names: (keyof T)[]): boolean {
  const shape = handle as Partial<Record<keyof T, unknown>>;
  return names.every((name) => typeof shape[name] === 'function');
}

function isQueryRunner(handle: object): handle is QueryRunner {
  return (
    typeof (handle as Partial<QueryRunner>).isTransactionActive === 'boolean' &&
    hasMethods<QueryRunner>(handle, 'startTransaction', 'query')
  );
}

function isDataSource(handle: object): handle is DataSource {
  return hasMethods<DataSource>(handle, 'createQueryRunner', 'initialize');
}

function isEntityManager(handle: object): handle is EntityManager {
  return hasMethods<EntityManager>(handle, 'transaction', 'query', 'getRepository');
}

// `useStructuredResult`: the rows of any statement are its `records`. Without it TypeORM
// returns the rows for a SELECT or an INSERT, but [rows, rowCount] for an UPDATE or a
// DELETE (as inbox.purge sends).
async function run<R>(runner: QueryRunner, text: string, values: readonly unknown[]) {
  const result = await runner.query(text, [...values], true);
  return { rows: (result.records ?? []) as R[] };
}

/** A statement on a connection of its own, committed on its own (as `dataSource.query` does). */
async function runAlone<R>(source: DataSource, text: string, values: readonly unknown[]) {
  const runner = source.createQueryRunner();
  try {
    return await run<R>(runner, text, values);
  } finally {
    await runner.release();
  }
}

/**
 * Wraps a TypeORM transaction as an `Executor`: the `manager` of
 * `dataSource.transaction(async (manager) => …)`, or a `QueryRunner` after
 * `startTransaction()`. Each statement goes through the transaction's query runner with its
 * values as bound parameters (PostgreSQL driver: `pg`'s `$1…`, as the library writes them).
 * A manager, query runner or DataSource outside a transaction is refused with a TypeError
 * unless `{ autocommit: true }`; a query runner whose transaction has ended since is refused
 * at its next statement too, one ended by a COMMIT sent as a statement included.
 */
export function fromTypeORM(handle: TypeORMHandle, options: AdapterOptions = {}): Executor {
  assertAdapterOptions('fromTypeORM', options);
  if (typeof handle !== 'object' || handle === null) {
    throw wrongHandle('fromTypeORM', 'a TypeORM EntityManager or QueryRunner', handle);
  }
  if (isQueryRunner(handle)) {
    return onRunner(handle, 'a TypeORM QueryRunner with no transaction started', options);
  }
  if (isDataSource(handle)) {
    if (!options.autocommit)
      throw adapterNotInTransaction('fromTypeORM', 'a TypeORM DataSource', INSTEAD);
    return { query: (text, values = []) => runAlone(handle, text, values) };
  }
  if (isEntityManager(handle)) {
    const runner = handle.queryRunner;
    if (runner) return onRunner(runner, 'a TypeORM EntityManager outside a transaction', options);
    // dataSource.manager: every statement takes a connection of its own.
    if (!options.autocommit) {
      throw adapterNotInTransaction(
        'fromTypeORM',
        'a TypeORM EntityManager outside a transaction',
        INSTEAD,
      );
    }
    // `connection` in TypeORM 0.3, `dataSource` from 1.0 (where `connection` is deprecated).
    const source =
      (handle as { dataSource?: DataSource }).dataSource ??
      (handle as unknown as { connection: DataSource }).connection;
    return { query: (text, values = []) => runAlone(source, text, values) };
  }
  throw wrongHandle('fromTypeORM', 'a TypeORM EntityManager or QueryRunner', handle);
}

function onRunner(runner: QueryRunner, handle: string, options: AdapterOptions): Executor {
  const instead = `${INSTEAD}, or a query runner after startTransaction()`;
  const check = () => {
    if (options.autocommit) return;
    if (!runner.isTransactionActive) throw adapterNotInTransaction('fromTypeORM', handle, instead);
    // The PostgreSQL driver's connection (node-postgres) knows what TypeORM does not.
    const connection = (runner as { databaseConnection?: unknown }).databaseConnection;
    if (isIdlePgClient(connection)) {
      throw endedByStatement('fromTypeORM', 'a TypeORM transaction', instead);
    }
  };
  check();
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      check();
      return run<R>(runner, text, values);
    },
  };
}
