import type { Executor } from '../db/executor.js';
import { readProducerNotify } from '../db/migrate.js';
import { statements } from '../db/sql/index.js';

export interface DispatcherOwnership {
  /** Backend pid of the dispatcher's ownership session. */
  pid: number;
  /** Its application_name: `edupulse-outbox dispatcher <host>:<pid>`. */
  name: string;
  partitions: number[];
  /**
   * How long its session has run no statement, in seconds. A running dispatcher's runs
   * one every second (`rebalanceIntervalMs`); a dispatcher stopped (SIGSTOP, a debugger)
   * or hung keeps its connection, and with it its partitions, while this grows. `null`
   * where PostgreSQL hides other roles' sessions from this one (pg_read_all_stats).
   */
  silentSeconds: number | null;
}

/** Silent this long, a dispatcher is flagged by `status` (five of its default rounds). */
export const SILENT_DISPATCHER_SECONDS = 5;

/** Pending events of one partition or event type. */
export interface BacklogShare {
  pending: number;
  /** Age of its oldest pending event, in seconds. */
  oldestAgeSeconds: number;
}

export interface OutboxStatus {
  schema: string;
  /** The schema's number of partitions (fixed by `migrate --partitions`). */
  partitions: number;
  pending: number;
  /** Age of the oldest pending event, in seconds (0 when none). */
  oldestAgeSeconds: number;
  /** The backlog of every partition that has one, keyed by partition number. */
  pendingByPartition: Record<string, BacklogShare>;
  /** The backlog per event type. */
  pendingByEventType: Record<string, BacklogShare>;
  /** Whether inserts NOTIFY the dispatchers (`migrate --producer-notify on`); off by default. */
  producerNotify: boolean;
  deadLetters: number;
  /**
   * How long ago the oldest dead letter was dead-lettered, in seconds (0 when none). The
   * retention is a setting of each running dispatcher, which this snapshot of the
   * database cannot read; with `deadLetterRetentionMs` in force, this stays below the
   * retention plus the janitor's interval.
   */
  oldestDeadLetterAgeSeconds: number;
  /** Dead letters per event type. */
  deadLettersByEventType: Record<string, number>;
  /** Messages `consume()` parked, all consumers of the schema together. */
  consumerDeadLetters: number;
  /** The same per consumer, by name: which to look at with `dead list --consumer`. */
  consumerDeadLettersByConsumer: Record<string, number>;
  /** Dispatchers sharing the partitions right now, and what each owns. */
  dispatchers: DispatcherOwnership[];
  /**
   * Partitions no dispatcher owns right now, while at least one runs: for a second or
   * two while they rebalance; for longer, nothing publishes their events.
   */
  unownedPartitions: number[];
}

/** A snapshot of one schema's outbox: backlog, dead letters, dispatchers and their partitions. */
export async function outboxStatus(db: Executor, schema: string): Promise<OutboxStatus> {
  const sql = statements(schema);
  type Share = { by_partition: boolean; key: string; pending: number; oldest_age_s: string };
  // The queries run side by side. The backlog's two groupings come from one statement, so
  // from one snapshot; the whole backlog is the sum of the partitions', so its oldest is
  // their oldest.
  const [
    { rows: backlog },
    { rows: dead },
    { rows: deadByEventType },
    { rows: keyRows },
    { rows: settings },
    { rows: consumerDead },
  ] = await Promise.all([
    db.query<Share>(sql.outboxBacklogShares),
    db.query<{ dead: number; oldest_age_s: string }>(sql.deadLetterCount),
    db.query<{ key: string; dead: number }>(sql.deadLetterCountByEventType),
    db.query<{ members: number; partitions: number }>(sql.ownershipKeys, [schema]),
    db.query<{ partitions: number }>(sql.settingsPartitions),
    db.query<{ consumer: string; dead: number }>(sql.consumerDeadLetterCountByConsumer),
  ]);
  const byPartition = backlog.filter((row) => row.by_partition);
  const byEventType = backlog.filter((row) => !row.by_partition);
  const shares = (rows: Share[]) =>
    Object.fromEntries(
      rows.map((row) => [
        row.key,
        { pending: Number(row.pending), oldestAgeSeconds: Number(row.oldest_age_s) },
      ]),
    );
  const keys = {
    members: Number(keyRows[0]?.members),
    partitions: Number(keyRows[0]?.partitions),
  };
  const { rows: holders } = await db.query<{
    namespace: string;
    key: string;
    pid: number;
    application_name: string | null;
    silent_s: string | null;
  }>(sql.ownershipHolders, [keys.members, keys.partitions]);
  const byPid = new Map<number, DispatcherOwnership>();
  for (const holder of holders) {
    if (Number(holder.namespace) !== keys.members) continue;
    byPid.set(holder.pid, {
      pid: holder.pid,
      name: holder.application_name ?? '',
      partitions: [],
      silentSeconds: holder.silent_s === null ? null : Number(holder.silent_s),
    });
  }
  for (const holder of holders) {
    if (Number(holder.namespace) !== keys.partitions) continue;
    byPid.get(holder.pid)?.partitions.push(Number(holder.key));
  }
  const dispatchers = [...byPid.values()].sort((a, b) => a.pid - b.pid);
  for (const dispatcher of dispatchers) dispatcher.partitions.sort((a, b) => a - b);
  const partitions = Number(settings[0]?.partitions ?? 0);
  const owned = new Set(dispatchers.flatMap((dispatcher) => dispatcher.partitions));
  const unownedPartitions =
    dispatchers.length === 0
      ? []
      : Array.from({ length: partitions }, (_, p) => p).filter((p) => !owned.has(p));
  return {
    schema,
    partitions,
    pending: byPartition.reduce((sum, row) => sum + Number(row.pending), 0),
    oldestAgeSeconds: byPartition.reduce(
      (oldest, row) => Math.max(oldest, Number(row.oldest_age_s)),
      0,
    ),
    pendingByPartition: shares(byPartition),
    pendingByEventType: shares(byEventType),
    producerNotify: await readProducerNotify(db, schema),
    deadLetters: Number(dead[0]?.dead ?? 0),
    oldestDeadLetterAgeSeconds: Number(dead[0]?.oldest_age_s ?? 0),
    deadLettersByEventType: Object.fromEntries(
      deadByEventType.map((row) => [row.key, Number(row.dead)]),
    ),
    consumerDeadLetters: consumerDead.reduce((sum, row) => sum + Number(row.dead), 0),
    consumerDeadLettersByConsumer: Object.fromEntries(
      consumerDead.map((row) => [row.consumer, Number(row.dead)]),
    ),
    dispatchers,
    unownedPartitions,
  };
}
