/**
 * Prisma: the `tx` of `prisma.$transaction(async (tx) => …)` as an `Executor`.
 *
 * The statements go through `tx.$queryRawUnsafe(text, ...values)`: the text is sent as
 * written, with its `$1…` placeholders, and the values as bound parameters (with a
 * PostgreSQL driver adapter such as `@prisma/adapter-pg`, they reach node-postgres as its
 * `values`). Nothing of Prisma is imported: the client is generated per project, so its
 * type is whatever `prisma generate` wrote, and only the shape below is relied on.
 */
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  wrongHandle,
} from '../db/executor.js';

/** The part of a Prisma client (or of its interactive transaction) used here. */
export interface PrismaRawQueryable {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): PromiseLike<T>;
}

/**
 * A `PrismaClient` (also one made by `$extends`) has `$connect`; the `tx` of an
 * interactive transaction does not (Prisma leaves `$connect`, `$disconnect`, `$on` and
 * `$extends` off it), though it does have a `$transaction` for nesting.
 */
function isClientOutsideTransaction(db: object): boolean {
  return typeof (db as { $connect?: unknown }).$connect === 'function';
}

/**
 * Prisma returns int8 as BigInt and numeric as its Decimal; the library reads values as
 * node-postgres gives them, which for both is the decimal text. A Decimal has a
 * `Symbol.toStringTag` of `Decimal`, so it is recognised without importing Prisma's.
 */
function asNodePostgres(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map(asNodePostgres);
  if (Object.prototype.toString.call(value) === '[object Decimal]') {
    // toFixed() without digits: every digit, never exponent notation.
    return (value as { toFixed(): string }).toFixed();
  }
  return value;
}

function rowAsNodePostgres(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) out[key] = asNodePostgres(value);
  return out;
}

/**
 * The `tx` of `prisma.$transaction(async (tx) => …)` as the handle `enqueue` and
 * `inbox.process` take: `outbox.enqueue(fromPrisma(tx), event)`. A `PrismaClient` itself
 * is refused with a TypeError (each statement would commit on its own) unless
 * `{ autocommit: true }`.
 */
export function fromPrisma(tx: PrismaRawQueryable, options: AdapterOptions = {}): Executor {
  assertAdapterOptions('fromPrisma', options);
  if (
    typeof tx !== 'object' ||
    tx === null ||
    typeof (tx as Partial<PrismaRawQueryable>).$queryRawUnsafe !== 'function'
  ) {
    throw wrongHandle(
      'fromPrisma',
      'the tx of prisma.$transaction(async (tx) => …), an object with $queryRawUnsafe',
      tx,
    );
  }
  if (isClientOutsideTransaction(tx) && !options.autocommit) {
    throw adapterNotInTransaction(
      'fromPrisma',
      'a PrismaClient outside $transaction',
      'the tx of prisma.$transaction(async (tx) => …)',
    );
  }
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      const rows = await tx.$queryRawUnsafe<Record<string, unknown>[]>(text, ...values);
      return { rows: rows.map(rowAsNodePostgres) as R[] };
    },
  };
}
