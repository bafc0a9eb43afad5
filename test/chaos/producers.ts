/**
 * The application side of a chaos run: concurrent producers, each a loop of node-postgres
 * transactions that enqueue 1–5 events through the library's `enqueue` and record the
 * transaction in a table of their own (`chaos_commits`), as a service records its business
 * change in the same transaction as its events.
 *
 * Each aggregate belongs to exactly one producer, whose transactions run one after another,
 * so one aggregate's transactions never overlap: its events' per-aggregate index `n` (in
 * the payload) is their commit order. A transaction that fails (PostgreSQL restarting) is
 * retried with the same events, ids and indexes. An event counts as produced only once its
 * COMMIT succeeded; when the COMMIT's outcome is unknown (the connection died during it),
 * the producer asks `chaos_commits` whether the transaction is there before retrying, so
 * the produced set is exact. (Asking the outbox instead would not do: a dispatcher may have
 * published and deleted the events already.)
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createOutbox, type OutboxEvent } from '../../src/index.js';

export const AGGREGATE_TYPE = 'chaos';
export const EVENT_TYPE = 'chaos-tick';

/** One event as produced; `n` is its index among its aggregate's events (0, 1, 2, …). */
export interface ProducedEvent {
  id: string;
  aggregate: string;
  n: number;
}

export interface ProducerOptions {
  databaseUrl: string;
  schema: string;
  events: number;
  aggregates: number;
  producers: number;
  /** Events per second over all producers; 0 = as fast as they go. */
  rate: number;
  random: () => number;
}

export interface ProductionStats {
  /** Committed events, in no particular order across producers. */
  produced: ProducedEvent[];
  transactions: number;
  /** Transactions that failed and were retried. */
  retries: number;
  /** COMMITs whose outcome was unknown, and how many of those had in fact committed. */
  unknownCommits: number;
  unknownCommitted: number;
}

export function aggregateName(index: number): string {
  return `a-${index}`;
}

/** The table the producers record their transactions in, next to the outbox. */
export async function createCommitsTable(db: pg.Pool | pg.Client, schema: string) {
  await db.query(
    `CREATE TABLE "${schema}".chaos_commits (tx_id uuid PRIMARY KEY, ids uuid[] NOT NULL)`,
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A running production: `progress()` counts committed events so far; `done` resolves with
 * the statistics when every producer has committed its share.
 */
export interface Production {
  progress(): number;
  /** Ends the production early: no transaction starts after it (a run cut short). */
  stop(): void;
  readonly done: Promise<ProductionStats>;
}

export function startProducers(options: ProducerOptions): Production {
  const { databaseUrl, schema, events, aggregates, producers, rate, random } = options;
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: producers + 1,
    application_name: 'edupulse-chaos-producer',
    connectionTimeoutMillis: 5000,
    // A statement never waits forever on a server that went away without a word.
    query_timeout: 15_000,
  });
  // Idle connections dropped by a PostgreSQL restart: harmless, the next checkout reconnects.
  pool.on('error', () => {});
  const outbox = createOutbox({ schema });
  const stats: ProductionStats = {
    produced: [],
    transactions: 0,
    retries: 0,
    unknownCommits: 0,
    unknownCommitted: 0,
  };
  const started = Date.now();
  const guarded = new WeakSet<pg.PoolClient>();
  let stopped = false;

  const checkout = async () => {
    const client = await pool.connect();
    // A checked-out client reports a lost connection as an 'error' event too, besides the
    // failed query; without a listener that would crash the test process.
    if (!guarded.has(client)) {
      guarded.add(client);
      client.on('error', () => {});
    }
    return client;
  };

  /** Whether transaction `txId` committed; asks until PostgreSQL answers. */
  const committed = async (txId: string): Promise<boolean> => {
    for (;;) {
      try {
        const { rows } = await pool.query(
          `SELECT 1 FROM "${schema}".chaos_commits WHERE tx_id = $1`,
          [txId],
        );
        return rows.length > 0;
      } catch {
        await sleep(200);
      }
    }
  };

  /** One transaction, retried until it is known to have committed. */
  const commit = async (batch: readonly ProducedEvent[]) => {
    const txId = randomUUID();
    const ids = batch.map((event) => event.id);
    const rows: OutboxEvent[] = batch.map((event) => ({
      id: event.id,
      type: EVENT_TYPE,
      aggregateType: AGGREGATE_TYPE,
      aggregateId: event.aggregate,
      payload: { aggregate: event.aggregate, n: event.n },
    }));
    while (!stopped) {
      let client: pg.PoolClient | undefined;
      let committing = false;
      try {
        client = await checkout();
        await client.query('BEGIN');
        await outbox.enqueue(client, rows);
        await client.query(`INSERT INTO "${schema}".chaos_commits (tx_id, ids) VALUES ($1, $2)`, [
          txId,
          ids,
        ]);
        committing = true;
        await client.query('COMMIT');
        client.release();
        stats.transactions++;
        stats.produced.push(...batch);
        return;
      } catch (error) {
        // Never back into the pool: its session may be dead or mid-transaction.
        client?.release(error as Error);
        if (committing) {
          stats.unknownCommits++;
          if (await committed(txId)) {
            stats.unknownCommitted++;
            stats.transactions++;
            stats.produced.push(...batch);
            return;
          }
        }
        stats.retries++;
        await sleep(100 + Math.floor(random() * 200));
      }
    }
  };

  const producer = async (index: number) => {
    // Aggregates index, index + producers, index + 2·producers, … belong to this producer.
    const own: string[] = [];
    for (let a = index; a < aggregates; a += producers) own.push(aggregateName(a));
    const next = new Map<string, number>(own.map((name) => [name, 0]));
    const share = Math.floor(events / producers) + (index < events % producers ? 1 : 0);
    const perSecond = rate > 0 ? rate / producers : 0;
    let written = 0;
    while (written < share && !stopped) {
      if (perSecond > 0) {
        const due = started + (written / perSecond) * 1000;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      const size = Math.min(share - written, 1 + Math.floor(random() * 5));
      const batch: ProducedEvent[] = [];
      for (let i = 0; i < size; i++) {
        const aggregate = own[Math.floor(random() * own.length)] as string;
        const n = next.get(aggregate) ?? 0;
        next.set(aggregate, n + 1);
        batch.push({ id: randomUUID(), aggregate, n });
      }
      await commit(batch);
      written += size;
    }
  };

  const done = (async () => {
    try {
      await Promise.all(Array.from({ length: producers }, (_, index) => producer(index)));
      return stats;
    } finally {
      await pool.end().catch(() => {});
    }
  })();

  return {
    progress: () => stats.produced.length,
    stop: () => {
      stopped = true;
    },
    done,
  };
}
