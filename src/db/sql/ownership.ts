import { OWNERSHIP_NAMESPACES } from './fragments.js';

/** The session locks through which dispatchers share the partitions (dispatcher/ownership.ts). */
export interface OwnershipStatements {
  /** The two advisory-lock namespaces of this schema: `members`, `partitions` (int4 keys). */
  ownershipKeys: string;
  /** $1 namespace, $2 key: a session lock (a dispatcher's membership or a partition). */
  ownershipLock: string;
  ownershipTryLock: string;
  ownershipUnlock: string;
  /**
   * $1 members namespace, $2 partitions namespace: every granted lock of both, with its
   * holder's pid; what a dispatcher's rebalancing round reads every second, so pg_locks
   * alone (pg_stat_activity copies every backend's status).
   */
  ownershipLocks: string;
  /**
   * The same with each holder's application_name, for status, and how long its session
   * has been idle: NULL where PostgreSQL hides the session's state from this role (another
   * role's, without pg_read_all_stats) or does not track it (track_activities off), never
   * taken for busy.
   */
  ownershipHolders: string;
}

export function ownershipStatements(): OwnershipStatements {
  return {
    // Keys are derived from the schema name so dispatchers of different schemas (or
    // databases' other advisory-lock users) never share partitions.
    ownershipKeys: `SELECT ${OWNERSHIP_NAMESPACES('$1')}`,
    ownershipLock: 'SELECT pg_advisory_lock($1::int, $2::int)',
    ownershipTryLock: 'SELECT pg_try_advisory_lock($1::int, $2::int) AS locked',
    ownershipUnlock: 'SELECT pg_advisory_unlock($1::int, $2::int) AS unlocked',
    ownershipLocks: `SELECT l.classid::bigint AS namespace, l.objid::bigint AS key, l.pid
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid IN ($1::bigint::oid, $2::bigint::oid)`,
    ownershipHolders: `SELECT l.classid::bigint AS namespace, l.objid::bigint AS key, l.pid, a.application_name,
  CASE WHEN a.state IS NULL OR a.state = 'disabled' THEN NULL
    WHEN a.state = 'idle' THEN greatest(extract(epoch FROM clock_timestamp() - a.state_change), 0)::numeric(20, 3)
    ELSE 0 END AS silent_s
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid IN ($1::bigint::oid, $2::bigint::oid)`,
  };
}
