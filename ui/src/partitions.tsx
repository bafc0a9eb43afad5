/**
 * Which dispatcher owns which partition, with each partition's backlog and lag. A partition
 * with a backlog and no owner, or whose oldest event is old, stands out: that is a stuck one.
 */
import { usePoll } from './api.js';
import { age, count } from './format.js';
import { Problem } from './parts.js';
import type { Overview, Status } from './types.js';

/** Silent this long, a dispatcher is flagged (as `status` does: SILENT_DISPATCHER_SECONDS). */
const SILENT_DISPATCHER_SECONDS = 5;
/** Oldest pending event older than this: the partition is lagging. */
const LAGGING_SECONDS = 60;
/** Owner colours are classes owner-0 … owner-7 in style.css. */
const COLOURS = 8;

function cells(status: Status) {
  const owner = new Map<number, number>();
  status.dispatchers.forEach((d, index) => {
    for (const p of d.partitions) owner.set(p, index);
  });
  return Array.from({ length: status.partitions }, (_, partition) => {
    const share = status.pendingByPartition[String(partition)];
    const pending = share?.pending ?? 0;
    const ownerIndex = owner.get(partition);
    const stuck = pending > 0 && ownerIndex === undefined;
    const lagging = pending > 0 && (share?.oldestAgeSeconds ?? 0) > LAGGING_SECONDS;
    return { partition, pending, oldest: share?.oldestAgeSeconds ?? 0, ownerIndex, stuck, lagging };
  });
}

export function PartitionsPage() {
  const { data, error } = usePoll<Overview>('overview');
  const status = data?.status;
  const grid = status ? cells(status) : [];
  const stuck = grid.filter((c) => c.stuck || c.lagging).length;
  return (
    <>
      <h2>Partitions</h2>
      <Problem error={error} />
      {status && (
        <>
          <p data-testid="partitions-summary" class={stuck > 0 ? 'problem' : ''}>
            {count(status.partitions)} partitions, {count(status.dispatchers.length)} dispatcher
            {status.dispatchers.length === 1 ? '' : 's'} connected
            {stuck > 0
              ? `, ${count(stuck)} stuck or lagging (no owner, or oldest event over ${LAGGING_SECONDS} s)`
              : ''}
            .
          </p>
          <ul class="legend" data-testid="dispatcher-legend">
            {status.dispatchers.map((d, index) => (
              <li key={d.pid}>
                <span class={`swatch owner-${index % COLOURS}`} />
                {d.name} (PostgreSQL backend {d.pid}): {count(d.partitions.length)} partitions
                {(d.silentSeconds ?? 0) >= SILENT_DISPATCHER_SECONDS ? (
                  <span class="problem" data-testid="silent-dispatcher">
                    {' '}
                    · silent for {age(d.silentSeconds ?? 0)}: stopped or hung, its partitions wait
                  </span>
                ) : d.silentSeconds === null ? (
                  <span class="empty" data-testid="silence-hidden">
                    {' '}
                    · silence not shown to this role (pg_read_all_stats)
                  </span>
                ) : null}
              </li>
            ))}
            <li>
              <span class="swatch unowned" />
              no owner
            </li>
          </ul>
          <div class="grid" data-testid="partition-grid">
            {grid.map((c) => (
              <div
                key={c.partition}
                class={[
                  'cell',
                  c.ownerIndex === undefined ? 'unowned' : `owner-${c.ownerIndex % COLOURS}`,
                  c.stuck ? 'stuck' : '',
                  c.lagging ? 'lagging' : '',
                ].join(' ')}
                data-testid="partition"
                data-partition={c.partition}
                data-state={c.stuck ? 'stuck' : c.lagging ? 'lagging' : 'ok'}
                title={
                  c.ownerIndex === undefined
                    ? 'no dispatcher owns this partition'
                    : status.dispatchers[c.ownerIndex]?.name
                }
              >
                <div class="p">#{c.partition}</div>
                <div class="n">{count(c.pending)}</div>
                <div class="a">{c.pending > 0 ? age(c.oldest) : '—'}</div>
              </div>
            ))}
          </div>
        </>
      )}
    </>
  );
}
