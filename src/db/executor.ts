import { ConfigError } from '../common/errors.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { describeValue } from '../common/text.js';
import { isPgClient, queryOnPgClient } from './prepared.js';

/**
 * The one seam between the library and a database driver: run a statement with bound
 * parameters, get rows back. Application code hands us its own transaction object and
 * `toExecutor` wraps it by shape, so no driver or ORM is imported here. The ORM adapters
 * (`edupulse-outbox/kysely`, `/knex`, …) turn an ORM's transaction into an `Executor`.
 */
export interface Executor {
  query<R = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
  ): Promise<{ rows: R[] }>;
}

/** node-postgres `Client` / `PoolClient`, PGlite and its transactions: `query(text, values) → { rows }`. */
interface QueryShaped {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** postgres.js `sql` and the `sql` of `sql.begin(…)`: `unsafe(text, values, options) → rows`. */
interface UnsafeShaped {
  unsafe(text: string, values?: unknown[], options?: { prepare?: boolean }): PromiseLike<unknown[]>;
}

export type TransactionLike = Executor | QueryShaped | UnsafeShaped;

/** What an adapter accepts besides the transaction: `autocommit` allows a handle outside one. */
export interface AdapterOptions {
  /**
   * Accept a handle that is not in a transaction: each statement then commits on its own,
   * so an event is written even if the work it describes later fails. Default false.
   */
  autocommit?: boolean;
}

function isUnsafeShaped(value: unknown): value is UnsafeShaped {
  return (
    (typeof value === 'function' || typeof value === 'object') &&
    value !== null &&
    typeof (value as UnsafeShaped).unsafe === 'function'
  );
}

function isQueryShaped(value: unknown): value is QueryShaped {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as QueryShaped).query === 'function'
  );
}

/**
 * The error for a handle that is not a transaction: `what` is the call (`enqueue`,
 * `inbox.process`, `fromKysely`), `handle` names what was passed, `instead` says what to
 * pass, `optIn` how to write without a transaction on purpose.
 */
export function notInTransaction(
  what: string,
  handle: string,
  instead: string,
  optIn = 'wrap it with autocommit()',
): TypeError {
  return new TypeError(
    `${what}: ${handle} is not a transaction, so the write would commit on its own, apart from the work it belongs to. Pass ${instead}, or ${optIn} to write without a transaction on purpose`,
  );
}

/**
 * The error for a handle of the wrong kind: `what` is the call, `expected` what it takes,
 * `got` what was passed (described, never shown: it may hold a connection string).
 */
export function wrongHandle(what: string, expected: string, got: unknown): TypeError {
  return new TypeError(`${what}: expected ${expected}, got ${describeValue(got)}`);
}

const adapterOptions = optionNames<AdapterOptions>({ autocommit: true });

/**
 * Refuses an adapter option that is not one (`autoCommit`, `autocomit`), naming the
 * adapter, and an `autocommit` that is not a boolean.
 */
export function assertAdapterOptions(what: string, options: AdapterOptions): void {
  assertKnownOptions(what, options, adapterOptions);
  // Any truthy value would do, the string "false" from an environment variable included.
  const { autocommit } = options;
  if (autocommit !== undefined && typeof autocommit !== 'boolean') {
    throw new ConfigError('autocommit', `must be true or false, not ${JSON.stringify(autocommit)}`);
  }
}

/** The same for an ORM adapter, whose opt-in is its `{ autocommit: true }` option. */
export function adapterNotInTransaction(what: string, handle: string, instead: string): TypeError {
  return notInTransaction(what, handle, instead, 'give { autocommit: true }');
}

/**
 * A node-postgres Client or PoolClient that is idle outside a transaction: nothing is
 * pending on it (a BEGIN sent and not yet answered would be), and its server's last
 * ReadyForQuery said 'I'. False for anything else, a client in a transaction included.
 */
export function isIdlePgClient(value: unknown): boolean {
  const shape = value as { getTransactionStatus?: unknown; readyForQuery?: unknown } | null;
  return (
    typeof shape?.getTransactionStatus === 'function' &&
    shape.readyForQuery === true &&
    (shape.getTransactionStatus as () => unknown).call(shape) === 'I'
  );
}

/**
 * The error for an ORM's transaction whose connection the server reports outside any
 * transaction: a COMMIT or ROLLBACK sent as a statement ended it, and a write there would
 * commit on its own.
 */
export function endedByStatement(what: string, transaction: string, instead: string): TypeError {
  return adapterNotInTransaction(
    what,
    `${transaction} that a COMMIT or ROLLBACK sent as a statement has ended`,
    instead,
  );
}

/** The adapters, by a shape each ORM's objects have and no driver's handle has. */
const ormAdapters: readonly {
  orm: string;
  adapter: string;
  is(shape: Record<string, unknown>): boolean;
}[] = [
  {
    orm: 'a Kysely object',
    adapter: 'fromKysely(trx) from edupulse-outbox/kysely',
    is: (s) => typeof s.withoutPlugins === 'function',
  },
  {
    orm: 'a Knex object',
    adapter: 'fromKnex(trx) from edupulse-outbox/knex',
    is: (s) =>
      typeof (s.client as { acquireConnection?: unknown } | undefined)?.acquireConnection ===
      'function',
  },
  {
    orm: 'a Drizzle object',
    adapter: 'fromDrizzle(tx) from edupulse-outbox/drizzle',
    is: (s) => typeof (s._ as { session?: unknown } | undefined)?.session === 'object',
  },
  {
    orm: 'a MikroORM object',
    adapter: 'fromMikroORM(em) from edupulse-outbox/mikro-orm',
    is: (s) => typeof s.isInTransaction === 'function' && typeof s.getKnex === 'function',
  },
  {
    // The instance MikroORM.init returns, not its entity manager.
    orm: "MikroORM's instance (what MikroORM.init returns), not an EntityManager",
    adapter:
      'fromMikroORM(em) from edupulse-outbox/mikro-orm, with the em of orm.em.fork().transactional(…)',
    is: (s) =>
      typeof (s.em as { isInTransaction?: unknown } | undefined)?.isInTransaction === 'function',
  },
  {
    orm: 'a Sequelize model',
    adapter: 'fromSequelize(sequelize, t) from edupulse-outbox/sequelize, with the transaction t',
    is: (s) => typeof s.findAll === 'function' && typeof s.sequelize === 'object',
  },
  {
    orm: 'a TypeORM object',
    adapter: 'fromTypeORM(manager) from edupulse-outbox/typeorm',
    is: (s) =>
      typeof s.createQueryRunner === 'function' ||
      typeof s.getRepository === 'function' ||
      (typeof s.startTransaction === 'function' && 'isTransactionActive' in s),
  },
  {
    orm: 'a Sequelize object',
    adapter: 'fromSequelize(sequelize, t) from edupulse-outbox/sequelize',
    is: (s) =>
      typeof s.getQueryInterface === 'function' ||
      (typeof s.afterCommit === 'function' && typeof s.rollback === 'function'),
  },
  {
    orm: 'a Prisma object',
    adapter: 'fromPrisma(tx) from edupulse-outbox/prisma',
    is: (s) => typeof s.$queryRawUnsafe === 'function',
  },
];

/**
 * Handles that run every statement in a transaction of its own: a node-postgres `Pool`,
 * postgres.js's top-level `sql` (it has `begin`), our `Database` or an ORM instance (they
 * have `transaction()`), and a node-postgres client its server reports idle outside a
 * transaction, and a PGlite instance outside a transaction block. Names what it is and
 * what to pass instead, or undefined.
 */
function autocommitHandle(
  shape: Record<string, unknown>,
): { handle: string; instead: string } | undefined {
  if (typeof shape.connect === 'function' && 'totalCount' in shape) {
    return {
      handle: 'a pg Pool',
      instead: 'the client of your transaction (pool.connect(), then BEGIN … COMMIT)',
    };
  }
  if (isIdlePgClient(shape)) {
    return {
      handle: 'a node-postgres client with no transaction open',
      instead: "the client once await client.query('BEGIN') has run",
    };
  }
  // postgres.js's top-level sql has begin() and no savepoint(); from 4.0 a transaction's
  // sql has begin() too, and savepoint() in every major.
  if (typeof shape.begin === 'function' && typeof shape.savepoint !== 'function') {
    return { handle: 'a postgres.js sql', instead: 'the sql of sql.begin(async (tx) => …)' };
  }
  if (
    'waitReady' in shape &&
    typeof shape.isInTransaction === 'function' &&
    !inTransactionBlock(shape as { isInTransaction(): unknown })
  ) {
    return {
      handle: 'a PGlite instance with no transaction open',
      instead:
        "pglite.transaction(async (tx) => …)'s tx, or the instance once await pglite.exec('BEGIN') has run",
    };
  }
  if (typeof shape.transaction === 'function' && !('waitReady' in shape)) {
    return {
      handle: 'a handle with its own transaction() (a Database)',
      instead: 'the tx its transaction(async (tx) => …) passes',
    };
  }
  return undefined;
}

/**
 * Whether a PGlite session is inside a transaction block; false when PGlite cannot say
 * (an older release, or an instance still starting, whose calls wait for it anyway).
 */
export function inTransactionBlock(db: { isInTransaction?(): unknown }): boolean {
  try {
    return db.isInTransaction?.() === true;
  } catch {
    return false;
  }
}

/** `tx` as an object to look at (postgres.js's `sql` is a function), or undefined. */
const asObject = (tx: unknown): Record<string, unknown> | undefined =>
  (typeof tx === 'object' || typeof tx === 'function') && tx
    ? (tx as Record<string, unknown>)
    : undefined;

function wrap(tx: TransactionLike, what: string): Executor {
  const shape = asObject(tx);
  const orm = shape && ormAdapters.find(({ is }) => is(shape));
  if (orm) {
    const optIn = what === 'autocommit' ? ', given { autocommit: true }' : '';
    throw new TypeError(
      `${what}: the handle is ${orm.orm}, which is passed through its adapter: ${orm.adapter}${optIn}`,
    );
  }
  // postgres.js first: its `sql` is a function object that has no `query` of this shape.
  if (isUnsafeShaped(tx)) {
    return {
      async query<R>(text: string, values: readonly unknown[] = []) {
        // Prepared once per connection, as postgres.js prepares its tagged queries, unless
        // the application turned that off for the connection (prepare: false, for a
        // pooler): unprepared, each statement with parameters costs a Describe round trip.
        const rows = await tx.unsafe(text, [...values], { prepare: values.length > 0 });
        return { rows: [...rows] as R[] };
      },
    };
  }
  if (isQueryShaped(tx)) {
    if (isPgClient(tx)) {
      return { query: (text, values = []) => queryOnPgClient(tx, text, values) };
    }
    return tx as Executor;
  }
  throw new TypeError(
    `${what}: the transaction must be a node-postgres client, a postgres.js transaction, a PGlite transaction or an adapter's (edupulse-outbox/kysely, /knex, …): an object with query(text, values) or unsafe(text, values); got ${describeValue(tx)}`,
  );
}

/**
 * A node-postgres client whose state cannot be told: one never connected (node-postgres
 * would hold the statement until a connect() that may never come, so the call would
 * wait for good), or one of a release before 8.23, which cannot say whether a
 * transaction is open (the check would pass a write that commits on its own).
 */
function pgClientRefusal(what: string, shape: object): TypeError | undefined {
  if (!isPgClient(shape)) return undefined;
  const client = shape as {
    _connected?: unknown;
    _connecting?: unknown;
    getTransactionStatus?: unknown;
  };
  if (client._connected === false && client._connecting === false) {
    return new TypeError(
      `${what}: the node-postgres client is not connected: await client.connect() and BEGIN a transaction on it first`,
    );
  }
  if (typeof client.getTransactionStatus !== 'function') {
    return new TypeError(
      `${what}: this node-postgres client cannot tell whether a transaction is open (pg before 8.23), so a write outside one would commit on its own unnoticed: upgrade pg to 8.23 or later, or wrap the client with autocommit() to write without the check`,
    );
  }
  return undefined;
}

/**
 * Wraps a driver's transaction as an `Executor`. A handle that is plainly not in a
 * transaction (a pool, a top-level client) is refused with a TypeError naming it; pass
 * `autocommit(handle)` to write without one. Every statement the library sends uses bound
 * parameters; parameters are strings or numbers, already in the text form PostgreSQL
 * parses, so no driver-specific type serialisation is involved.
 */
export function toExecutor(tx: TransactionLike, what = 'enqueue'): Executor {
  // Which kind of handle first (an ORM's object is named with its adapter), then its state.
  const executor = wrap(tx, what);
  const shape = asObject(tx);
  const unusable = shape && pgClientRefusal(what, shape);
  if (unusable) throw unusable;
  const refused = shape && autocommitHandle(shape);
  if (refused) throw notInTransaction(what, refused.handle, refused.instead);
  return executor;
}

/**
 * The explicit opt-in for writing without a transaction: each statement sent through
 * the result commits on its own (a pool, postgres.js's `sql`, a PGlite instance).
 */
export function autocommit(handle: TransactionLike): Executor {
  const executor = wrap(handle, 'autocommit');
  // A new object, so that toExecutor does not see the handle it wraps.
  return { query: (text, values) => executor.query(text, values) };
}
