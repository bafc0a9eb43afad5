import { setTimeout as sleep } from 'node:timers/promises';
import {
  createDispatcher,
  type Database,
  type DatabaseSession,
  outboxStatus,
  pgDatabase,
} from 'edupulse-outbox';
import { noopBroker, round, type Scenario } from '../context.js';
import { backendCpuSampler } from '../cpu.js';

/** The dispatcher's pool and LISTEN connections are named so; nothing else uses the name. */
const APPLICATION_NAME = 'edupulse-bench-idle';
const WARM_UP_MS = 3000;

/** What `observedDatabase` has seen the dispatcher do. */
interface Observed {
  db: Database;
  /** Statements sent so far. */
  statements: () => number;
  /** Backend pids of the dedicated sessions it holds open (ownership, wake-up, …). */
  sessionPids: () => number[];
}

/**
 * `db` as the dispatcher sees it, watched:
 * - the statements sent through it are counted: each query, each LISTEN, and BEGIN and
 *   COMMIT (or ROLLBACK) around each transaction, which `pgDatabase` sends as statements
 *   of their own. The server cannot tell one client's statements from another's without
 *   pg_stat_statements, and even that sums over every session running the same text.
 * - each dedicated session is asked its backend pid once, when it opens, before the
 *   dispatcher gets it: their names are fixed, so another dispatcher on the same server
 *   may hold sessions of the same name.
 */
function observedDatabase(db: Database): Observed {
  let statements = 0;
  const sessions = new Map<DatabaseSession, number>();
  const observed: Database = {
    query(text, values) {
      statements++;
      return db.query(text, values);
    },
    transaction(fn) {
      statements += 2;
      return db.transaction((tx) =>
        fn({
          query(text, values) {
            statements++;
            return tx.query(text, values);
          },
          exec(sql) {
            statements++;
            return tx.exec(sql);
          },
        }),
      );
    },
    listen(channel, onNotify, onError) {
      statements++;
      return db.listen(channel, onNotify, onError);
    },
    close: () => db.close(),
  };
  const openSession = db.session?.bind(db);
  if (openSession) {
    observed.session = async (applicationName: string): Promise<DatabaseSession> => {
      const session = await openSession(applicationName);
      const { rows } = await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      sessions.set(session, Number(rows[0]?.pid));
      // A session has one onLost listener: the dispatcher's, passed on below.
      const forget = () => sessions.delete(session);
      return {
        query(text, values) {
          statements++;
          return session.query(text, values);
        },
        onLost: (listener) =>
          session.onLost((error) => {
            forget();
            listener(error);
          }),
        close: () => {
          forget();
          return session.close();
        },
      };
    };
  }
  return {
    db: observed,
    statements: () => statements,
    sessionPids: () => [...sessions.values()],
  };
}

/**
 * What an idle dispatcher costs the database: one dispatcher with default settings on a
 * migrated, empty outbox, publishing to a broker that does nothing, left alone for 60 s
 * (10 s quick) after a warm-up. The CPU of every PostgreSQL backend serving it is read
 * from /proc: its pool and LISTEN connections by their application name, its dedicated
 * sessions (partition ownership, and any other it opens) by pid. Its statements are
 * counted where it sends them.
 */
export const idleCost: Scenario = {
  names: ['idle-cost'],
  async run(bench) {
    const idleMs = bench.settings.quick ? 10_000 : 60_000;
    return bench.withSchema(async (db, schema) => {
      const pool = pgDatabase({
        connectionString: bench.settings.databaseUrl,
        applicationName: APPLICATION_NAME,
      });
      const observed = observedDatabase(pool);
      const dispatcher = createDispatcher({
        db: observed.db,
        schema,
        broker: noopBroker(),
        logger: false,
      });
      try {
        await dispatcher.start();
        await sleep(WARM_UP_MS);
        // A check that the sessions are followed: the ownership session is one of them.
        const { dispatchers } = await outboxStatus(db, schema);
        const owner = dispatchers[0]?.pid;
        if (dispatchers.length !== 1 || !observed.sessionPids().includes(owner as number)) {
          throw new Error(
            `idle-cost: ${dispatchers.length} dispatchers own partitions, not this one alone`,
          );
        }
        const sampler = await backendCpuSampler(bench.settings.databaseUrl, {
          applicationNames: [APPLICATION_NAME],
          pids: observed.sessionPids,
        });
        if (!sampler) {
          return [
            {
              name: 'idle-cost',
              skipped: "PostgreSQL is not on this machine (its backends' CPU is read from /proc)",
            },
          ];
        }
        bench.log(`idle-cost: one idle dispatcher for ${idleMs / 1000} s`);
        const statementsBefore = observed.statements();
        await sleep(idleMs);
        const used = await sampler.stop();
        const statements = observed.statements() - statementsBefore;
        if (dispatcher.stats.published !== 0) {
          throw new Error(`idle-cost: ${dispatcher.stats.published} events published`);
        }
        const perMinute = (value: number) => (value * 60) / used.seconds;
        const cpuPerMinute = perMinute(used.postgres_cpu_ms);
        const corePercent = round((cpuPerMinute / 60_000) * 100, 3);
        return [
          {
            name: 'idle-cost',
            idle_seconds: round(used.seconds, 1),
            backends: used.backends,
            postgres_cpu_ms_per_minute: round(cpuPerMinute, 1),
            postgres_core_percent: corePercent,
            statements_per_minute: Math.round(perMinute(statements)),
            target: 'postgres_core_percent ≤ 1',
            met: corePercent <= 1,
          },
        ];
      } finally {
        await dispatcher.stop();
        await pool.close();
      }
    });
  },
};
