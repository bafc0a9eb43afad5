import { Command } from 'commander';
import { type BacklogShare, outboxStatus, SILENT_DISPATCHER_SECONDS } from '../../admin/status.js';
import { scrubSecrets, scrubSecretsIn } from '../../common/secrets.js';
import { clip, counted, escapeControl, jsonForTerminal } from '../../common/text.js';
import { withCurrentSchema } from '../database.js';
import { execute } from '../execute.js';
import { settings } from '../settings.js';

interface StatusFlags {
  databaseUrl?: string;
  schema: string;
  json?: boolean;
  verbose?: boolean;
}

/** `N pending (oldest A s)`; an empty backlog has no oldest. */
const backlog = (share: BacklogShare) =>
  share.pending === 0
    ? '0 pending'
    : `${share.pending} pending (oldest ${share.oldestAgeSeconds.toFixed(1)} s)`;

/**
 * `title:` and one line per key; nothing when there is none. Keys are escaped: event types
 * are whatever a producer wrote.
 */
function section<T>(
  title: string,
  values: Record<string, T>,
  text: (value: T) => string = (value) => backlog(value as BacklogShare),
): string[] {
  const entries = Object.entries(values).map(
    ([key, value]) => [escapeControl(clip(key)), value] as const,
  );
  if (entries.length === 0) return [];
  // The keys padded to the longest (up to 40 characters), so the figures line up.
  const width = Math.min(40, Math.max(...entries.map(([key]) => key.length)));
  return [`${title}:`, ...entries.map(([key, value]) => `  ${key.padEnd(width)}  ${text(value)}`)];
}

export function statusCommand(): Command {
  return new Command('status')
    .description(
      'show the backlog (by event type and partition), the dead letters, and which dispatcher owns which partitions',
    )
    .addOption(settings.databaseUrl())
    .addOption(settings.schema())
    .option('--json', 'print one JSON object instead of text')
    .addOption(settings.verbose())
    .addHelpText(
      'after',
      `
Status reads the database only. A dead-letter retention is a setting of each running
dispatcher (run --dead-letter-retention), which the database does not record; the age of
the oldest dead letter shows it at work: with a retention in force, it stays below the
retention plus the janitor's 10 minutes.`,
    )
    .action(async (flags: StatusFlags) => {
      await execute(flags, async ({ logger }) => {
        return withCurrentSchema(flags, logger, async (db) => {
          const status = await outboxStatus(db, flags.schema);
          if (flags.json) {
            process.stdout.write(`${jsonForTerminal(scrubSecretsIn(status))}\n`);
            return 0;
          }
          const lines = [
            `schema "${status.schema}": ${backlog(status)}, ${counted(status.deadLetters, 'dead letter')}`,
            `producer notify: ${status.producerNotify ? 'on (dispatchers also LISTEN)' : 'off (dispatchers probe the write sequence)'}`,
            ...(status.deadLetters > 0
              ? [`oldest dead letter: dead-lettered ${age(status.oldestDeadLetterAgeSeconds)} ago`]
              : []),
            ...(status.consumerDeadLetters > 0
              ? [
                  `consumer dead letters: ${status.consumerDeadLetters} (${Object.entries(
                    status.consumerDeadLettersByConsumer,
                  )
                    .map(([name, n]) => `${escapeControl(name)}: ${n}`)
                    .join(', ')}; dead list --consumer <name>)`,
                ]
              : []),
            `dispatchers: ${status.dispatchers.length} (sharing ${status.partitions} partitions)`,
            ...status.dispatchers.flatMap((d) => [
              `  ${escapeControl(scrubSecrets(d.name))}  (backend pid ${d.pid})  ${d.partitions.length} partitions: ${partitionRanges(d.partitions)}`,
              ...((d.silentSeconds ?? 0) >= SILENT_DISPATCHER_SECONDS
                ? [
                    `    silent for ${age(d.silentSeconds ?? 0)}: a running dispatcher's session runs a statement every second, so this one is stopped or hung, and its partitions wait until the server ends that session (after about a minute of silence, PostgreSQL 14 and later). Restart that process (host:pid in its name), or SELECT pg_terminate_backend(${d.pid}) to hand its partitions to the others now; a batch it had claimed stays locked by another of its sessions, "idle in transaction" in pg_stat_activity, until that one ends too (idle_in_transaction_session_timeout).`,
                  ]
                : []),
            ]),
            ...(status.dispatchers.some((d) => d.silentSeconds === null)
              ? [
                  `  silence not shown: pg_stat_activity does not show this role the dispatchers' sessions (another role's, without pg_read_all_stats; or track_activities is off), so a stopped or hung dispatcher is not flagged: GRANT pg_read_all_stats to this role`,
                ]
              : []),
            ...(status.unownedPartitions.length > 0
              ? [
                  `  unowned: ${status.unownedPartitions.length} partitions: ${partitionRanges(status.unownedPartitions)} (a rebalance takes a second or two; longer, nothing publishes them)`,
                ]
              : []),
            ...section('pending by event type', status.pendingByEventType),
            ...section('pending by partition', status.pendingByPartition),
            ...section(
              'dead letters by event type',
              status.deadLettersByEventType,
              (dead) => `${dead}`,
            ),
          ];
          process.stdout.write(`${lines.join('\n')}\n`);
          return 0;
        });
      });
    });
}

/** `45 s`, `12.5 min`, `3.0 h`, `40.0 d`: an age in the unit that reads best. */
export function age(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 86_400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} d`;
}

/** `0-21,40,42-43`: a sorted list of partitions, compactly. */
export function partitionRanges(partitions: readonly number[]): string {
  const ranges: string[] = [];
  let start: number | undefined;
  let previous: number | undefined;
  for (const p of [...partitions, Number.NaN]) {
    if (start !== undefined && previous !== undefined && p === previous + 1) {
      previous = p;
      continue;
    }
    if (start !== undefined && previous !== undefined) {
      ranges.push(start === previous ? `${start}` : `${start}-${previous}`);
    }
    start = p;
    previous = p;
  }
  return ranges.join(',') || 'none';
}
