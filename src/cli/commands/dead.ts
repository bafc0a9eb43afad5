import { randomUUID } from 'node:crypto';
import { Command, Option } from 'commander';
import {
  type ConsumerDeadLetterFilter,
  consumerKnown,
  discardConsumerDeadLetters,
  listConsumerDeadLetters,
  purgeConsumerDeadLetters,
  purgeInbox,
  retryConsumerDeadLetters,
  showConsumerDeadLetters,
} from '../../admin/consumer-dead-letters.js';
import {
  type DeadLetterFilter,
  deadLettersWithIdTaken,
  discardDeadLetters,
  groupDeadLetters,
  listDeadLetters,
  purgeDeadLetters,
  retryDeadLetters,
  showDeadLetter,
} from '../../admin/dead-letters.js';
import { assertTimeWindow, isoWithMicros } from '../../common/admin-input.js';
import { ConfigError } from '../../common/errors.js';
import { scrubSecrets, scrubSecretsIn } from '../../common/secrets.js';
import {
  clip,
  counted,
  escapeControl,
  jsonForTerminal,
  jsonTextForTerminal,
} from '../../common/text.js';
import { assertConsumerName } from '../../consumer/inbox.js';
import type { Executor } from '../../db/executor.js';
import { withCurrentSchema, withCurrentSchemaToChange } from '../database.js';
import { execute } from '../execute.js';
import {
  filterText,
  parseEventIds,
  parseInteger,
  parseTime,
  settings,
  untouched,
} from '../settings.js';

/** Where `dead show` puts the payload's own text. */
const PAYLOAD = `payload-${randomUUID()}`;

/**
 * A command's answer as JSON: the events' own data as stored, error texts swept for the
 * settings' secrets (they may quote a server's words), as the console answers.
 */
function printJson(value: unknown, indent?: number): void {
  process.stdout.write(`${jsonForTerminal(scrubSecretsIn(value), indent)}\n`);
}

interface FilterFlags {
  databaseUrl?: string;
  schema: string;
  /** Act on this consumer's dead letters (what `consume()` parked) instead of the outbox's. */
  consumer?: string;
  eventType?: string;
  aggregateType?: string;
  aggregateId?: string;
  since?: string;
  until?: string;
  error?: string;
  errorContains?: string;
  verbose?: boolean;
}

/** The database settings (and, with `filters`, the filters) every admin command shares. */
function adminCommand(
  name: string,
  description: string,
  filters = true,
  consumers = filters,
): Command {
  const command = new Command(name)
    .description(description)
    .addOption(settings.databaseUrl())
    .addOption(settings.schema());
  if (consumers) {
    command.option(
      '--consumer <name>',
      "a consumer's dead letters (messages consume() parked) instead of the outbox's",
    );
  }
  if (filters) {
    command
      .option('--event-type <type>', 'only dead letters of this event type')
      .option(
        '--aggregate-type <type>',
        "only dead letters of this aggregate type (the outbox's dead letters only, not a consumer's)",
      )
      .option('--aggregate-id <id>', 'only dead letters of this aggregate')
      .option(
        '--since <time>',
        'dead-lettered at or after: ISO 8601 time (UTC unless it gives an offset), or a duration ago (2h)',
      )
      .option(
        '--until <time>',
        'dead-lettered before: ISO 8601 time (UTC unless it gives an offset), or a duration ago (30m)',
      )
      .option(
        '--error <text>',
        "only dead letters whose last error is exactly this (a group of dead groups; the outbox's dead letters only, not a consumer's)",
      )
      .option(
        '--error-contains <text>',
        "only dead letters whose last error contains this text, in any case (the outbox's dead letters only, not a consumer's)",
      );
  }
  return command.addOption(settings.verbose());
}

function parseFilter(flags: FilterFlags, ids: readonly string[] = []): DeadLetterFilter {
  if (flags.consumer !== undefined) return parseConsumerFilter(flags, ids);
  return {
    ...(ids.length > 0 ? { ids: parseEventIds('id', ids) } : {}),
    ...(flags.eventType !== undefined
      ? { eventType: filterText('event-type', flags.eventType) }
      : {}),
    ...(flags.aggregateType !== undefined
      ? { aggregateType: filterText('aggregate-type', flags.aggregateType) }
      : {}),
    ...(flags.aggregateId !== undefined
      ? { aggregateId: filterText('aggregate-id', flags.aggregateId) }
      : {}),
    ...timeWindow(flags),
    ...(flags.error !== undefined ? { error: filterText('error', flags.error) } : {}),
    ...(flags.errorContains !== undefined
      ? { errorContains: filterText('error-contains', flags.errorContains) }
      : {}),
  };
}

/** The filter of `--consumer`: event ids are any text (other producers' ids need not be UUIDs). */
function parseConsumerFilter(
  flags: FilterFlags,
  ids: readonly string[],
): ConsumerDeadLetterFilter & { consumer: string } {
  assertConsumerName(flags.consumer, 'consumer');
  if (flags.aggregateType !== undefined) {
    throw new ConfigError(
      'aggregate-type',
      'consumer dead letters are filtered by --aggregate-id (they keep no aggregate type)',
    );
  }
  for (const [flag, value] of [
    ['error', flags.error],
    ['error-contains', flags.errorContains],
  ] as const) {
    if (value !== undefined) {
      throw new ConfigError(flag, "filters the outbox's dead letters, not a consumer's");
    }
  }
  return {
    consumer: flags.consumer as string,
    ...(ids.length > 0 ? { ids } : {}),
    ...(flags.eventType !== undefined
      ? { eventType: filterText('event-type', flags.eventType) }
      : {}),
    ...(flags.aggregateId !== undefined
      ? { aggregateId: filterText('aggregate-id', flags.aggregateId) }
      : {}),
    ...timeWindow(flags),
  };
}

/** `--since` and `--until`, each when given; the two the wrong way round are refused. */
function timeWindow(flags: FilterFlags): { since?: Date; until?: Date } {
  const since = flags.since === undefined ? undefined : parseTime('since', flags.since);
  const until = flags.until === undefined ? undefined : parseTime('until', flags.until);
  assertTimeWindow(since, until, { since: 'since', until: 'until' });
  return { ...(since ? { since } : {}), ...(until ? { until } : {}) };
}

/** `dead retry` and `dead discard`: ids and/or filters, or `--all`; prints what it touched. */
function bulkCommand(
  name: 'retry' | 'discard',
  description: string,
  act: typeof retryDeadLetters | typeof discardDeadLetters,
  actOnConsumer: typeof retryConsumerDeadLetters | typeof discardConsumerDeadLetters,
  done: string,
  consumerDone = done,
): Command {
  return adminCommand(name, description)
    .argument('[ids...]', 'event ids (CloudEvent ids) of the dead letters')
    .addOption(new Option('--all', `${name} every dead letter (no ids or filters)`))
    .option('--json', 'print the ids as a JSON array')
    .action(async (ids: string[], flags: FilterFlags & { all?: boolean; json?: boolean }) => {
      await execute(flags, async ({ logger }) => {
        const filter = parseFilter(flags, ids);
        return withCurrentSchemaToChange(flags, logger, async (db) => {
          const all = { all: flags.all === true };
          const touched =
            flags.consumer !== undefined
              ? await actOnConsumer(db, flags.schema, parseConsumerFilter(flags, ids), all)
              : await act(db, flags.schema, filter, all);
          if (flags.json) {
            printJson(touched);
          } else {
            process.stdout.write(touched.map((id) => `${escapeControl(id)}\n`).join(''));
            process.stderr.write(
              `${counted(touched.length, 'dead letter')} ${flags.consumer !== undefined ? consumerDone : done}\n`,
            );
          }
          // Left behind by a retry: an event in the outbox has the id (the exit code says so).
          const taken =
            name === 'retry' && flags.consumer === undefined
              ? await deadLettersWithIdTaken(db, flags.schema, filter)
              : [];
          if (taken.length > 0) {
            process.stderr.write(
              `left as dead letters, another event having the same id, in the outbox or as an earlier dead letter (retry once that one is published, or discard): ${taken.join(', ')}\n`,
            );
          }
          // Asked for ids that were not there: say so with the exit code, after the rest.
          const missing = untouched(ids, [...touched, ...taken], flags.consumer !== undefined);
          if (missing.length > 0) {
            // Ids and filters narrow each other: an id may be a dead letter the filters leave out.
            const narrowed = Object.keys(filter).some((key) => key !== 'ids' && key !== 'consumer');
            process.stderr.write(
              `not among the dead letters${narrowed ? ' the filters select' : ''}: ${missing.join(', ')}\n`,
            );
          }
          return missing.length > 0 || taken.length > 0 ? 1 : 0;
        });
      });
    });
}

/** `dead groups`: the dead letters by event type and last error, as the console shows them. */
function groupsCommand(): Command {
  return adminCommand(
    'groups',
    "count the outbox's dead letters by event type and last error, largest first",
    true,
    false,
  )
    .option('--json', 'print one JSON array instead of text')
    .action(async (flags: FilterFlags & { json?: boolean }) => {
      await execute(flags, async ({ logger }) => {
        const filter = parseFilter(flags);
        return withCurrentSchema(flags, logger, async (db) => {
          const groups = await groupDeadLetters(db, flags.schema, filter);
          if (flags.json) {
            printJson(groups);
            return 0;
          }
          // The error whole, secrets masked: `dead retry --error` takes it as shown.
          const shown = groups.map((g) => ({ ...g, error: scrubSecrets(g.error) }));
          const lines = shown.map((g) =>
            [String(g.count), clip(g.eventType), g.firstDeadAt, g.lastDeadAt, g.error]
              .map(escapeControl)
              .join('  '),
          );
          process.stdout.write(lines.map((line) => `${line}\n`).join(''));
          // A type or error shown escaped or cut is not the text the filter must be given.
          const altered = shown.some(
            (g) =>
              escapeControl(clip(g.eventType)) !== g.eventType ||
              escapeControl(g.error) !== g.error,
          );
          process.stderr.write(
            `${counted(groups.length, 'group')} (count, event type, first and last dead-lettered, error); retry one with: dead retry --event-type <type> --error <error>${altered ? ' (a type or error shown escaped or cut is not its text: take it from --json)' : ''}\n`,
          );
          return 0;
        });
      });
    });
}

export function deadCommand(): Command {
  return new Command('dead')
    .description('list, group, show, retry or discard dead letters (events that failed too often)')
    .addCommand(groupsCommand())
    .addCommand(
      adminCommand('list', 'list dead letters, oldest first')
        .option('--limit <n>', 'at most this many (1-100000)', '100')
        .option('--json', 'print one JSON array instead of text')
        .action(async (flags: FilterFlags & { limit: string; json?: boolean }) => {
          await execute(flags, async ({ logger }) => {
            const filter = parseFilter(flags);
            const limit = parseInteger('limit', flags.limit, 1, 100_000);
            return withCurrentSchema(flags, logger, async (db) => {
              if (flags.consumer !== undefined) {
                return listConsumer(db, flags, parseConsumerFilter(flags, []), limit);
              }
              const dead = await listDeadLetters(db, flags.schema, filter, limit);
              if (flags.json) {
                printJson(dead);
                return 0;
              }
              // Whoever wrote the row chose these texts: one line each, nothing the terminal obeys.
              const lines = dead.map((d) =>
                [
                  d.deadAt,
                  d.id,
                  // Names a producer chose, cut to a line's worth (--json has them whole).
                  clip(d.eventType),
                  clip(`${d.aggregateType}/${d.aggregateId}`),
                  `attempts ${d.attempts}`,
                  scrubSecrets(d.lastError),
                ]
                  .map(escapeControl)
                  .join('  '),
              );
              process.stdout.write(lines.map((line) => `${line}\n`).join(''));
              process.stderr.write(
                `${counted(dead.length, 'dead letter')}${dead.length === limit ? ` (--limit ${limit} reached)` : ''}\n`,
              );
              return 0;
            });
          });
        }),
    )
    .addCommand(
      adminCommand(
        'show',
        "print one dead letter with its payload and headers, as JSON (with --consumer: the consumer's of that event id, one JSON document per producer that used the id)",
        false,
      )
        .argument('<id>', 'the event id (CloudEvent id)')
        .option('--consumer <name>', "a consumer's dead letter instead of the outbox's")
        .action(async (id: string, flags: FilterFlags) => {
          await execute(flags, async ({ logger }) => {
            if (flags.consumer !== undefined) {
              assertConsumerName(flags.consumer, 'consumer');
              return withCurrentSchema(flags, logger, async (db) => {
                const dead = await showConsumerDeadLetters(db, flags.schema, id, flags.consumer);
                if (dead.length === 0) {
                  process.stderr.write(
                    `edupulse-outbox: consumer ${escapeControl(flags.consumer ?? '')} has no dead letter with event id (or, parked undecoded, dead letter id) ${escapeControl(id)}\n`,
                  );
                  return 1;
                }
                // One per producer that used the id (CloudEvents makes only source and id
                // unique): each a JSON document, as jq reads a stream of them.
                for (const one of dead) printJson(one, 2);
                return 0;
              });
            }
            const [checked] = parseEventIds('id', [id]);
            return withCurrentSchema(flags, logger, async (db) => {
              const dead = await showDeadLetter(db, flags.schema, checked as string);
              if (!dead) {
                process.stderr.write(`edupulse-outbox: no dead letter with id ${id}\n`);
                return 1;
              }
              // The payload as the JSON the producer wrote, not as a string holding it: its
              // text goes in as stored (json, so valid JSON), large numbers and key order kept.
              const shown = jsonForTerminal(scrubSecretsIn({ ...dead, payload: PAYLOAD }), 2);
              process.stdout.write(
                `${shown.replace(JSON.stringify(PAYLOAD), () => jsonTextForTerminal(dead.payload))}\n`,
              );
              return 0;
            });
          });
        }),
    )
    .addCommand(
      bulkCommand(
        'retry',
        'put dead letters back into the outbox under their original seq, attempts reset; they are published again (with --consumer: marked for retry, which the consumer hands to its handler within seconds while it runs, or when it next starts)',
        retryDeadLetters,
        retryConsumerDeadLetters,
        'back in the outbox',
        'marked for retry, taken up by the consumer within seconds while it runs, or when it starts',
      ),
    )
    .addCommand(
      bulkCommand(
        'discard',
        'delete dead letters for good',
        discardDeadLetters,
        discardConsumerDeadLetters,
        'discarded',
      ),
    );
}

/** The youngest `--older-than` a purge takes, as the retention settings' least. */
const MIN_AGE_MS = 60_000;

/**
 * A command deleting what is older than `--older-than` (and, with `--consumer`, of that
 * consumer only); `purge` prints what it deleted, as `<n> <what> purged (…)`.
 */
/** ` of consumer grades` after a count, when a consumer was named (a checked name). */
const ofConsumer = (consumer: string | undefined) =>
  consumer === undefined ? '' : ` of consumer ${consumer}`;

function olderThanCommand(
  name: string,
  description: string,
  olderThanHelp: string,
  consumerHelp: string,
  purge: (db: Executor, schema: string, before: Date, consumer?: string) => Promise<number>,
  printed: (count: number, before: Date, consumer?: string) => string,
): Command {
  return adminCommand(name, description, false)
    .requiredOption('--older-than <time>', olderThanHelp)
    .option('--consumer <name>', consumerHelp)
    .action(async (flags: FilterFlags & { olderThan: string }) => {
      await execute(flags, async ({ logger }) => {
        const before = parseTime('older-than', flags.olderThan);
        if (before.getTime() > Date.now()) {
          throw new ConfigError('older-than', `"${flags.olderThan}" is in the future`);
        }
        // As the retention settings: nothing younger than a minute. `0s` would delete all,
        // and an inbox without its latest records takes a redelivery for a new event.
        if (before.getTime() > Date.now() - MIN_AGE_MS) {
          throw new ConfigError(
            'older-than',
            `"${escapeControl(flags.olderThan)}" is less than a minute ago: give 1m or more`,
          );
        }
        if (flags.consumer !== undefined) assertConsumerName(flags.consumer, 'consumer');
        return withCurrentSchemaToChange(flags, logger, async (db) => {
          const count = await purge(db, flags.schema, before, flags.consumer);
          process.stdout.write(`${printed(count, before, flags.consumer)}\n`);
          return 0;
        });
      });
    });
}

export function purgeCommand(): Command {
  return olderThanCommand(
    'purge',
    'delete retained history: the dead letters parked before a time',
    'dead-lettered before this: a duration ago (30d) or an ISO 8601 time, at least a minute ago',
    "a consumer's dead letters instead of the outbox's",
    (db, schema, before, consumer) =>
      consumer !== undefined
        ? purgeConsumerDeadLetters(db, schema, before, consumer)
        : purgeDeadLetters(db, schema, before),
    (count, before, consumer) =>
      `${counted(count, 'dead letter')}${ofConsumer(consumer)} purged (dead-lettered before ${isoWithMicros(before)})`,
  ).addHelpText(
    'after',
    '\nPublished events leave the outbox as the broker acknowledges them; dead letters are the only history kept.',
  );
}

/** `dead list --consumer`: one line per consumer dead letter, or JSON. */
async function listConsumer(
  db: Executor,
  flags: FilterFlags & { json?: boolean },
  filter: ConsumerDeadLetterFilter,
  limit: number,
): Promise<number> {
  const dead = await listConsumerDeadLetters(db, flags.schema, filter, limit);
  if (flags.json) {
    printJson(dead);
    return 0;
  }
  const lines = dead.map((d) =>
    [
      d.deadAt,
      // A message that could not be decoded goes by its dead letter's id: shown whole.
      d.eventId === null ? `${d.id} (undecodable)` : clip(d.eventId),
      clip(d.eventType ?? '-'),
      clip(d.aggregateId ?? '-'),
      `attempts ${d.attempts}`,
      d.retrying ? 'retry pending' : '',
      scrubSecrets(d.lastError),
    ]
      .filter((part) => part !== '')
      .map(escapeControl)
      .join('  '),
  );
  process.stdout.write(lines.map((line) => `${line}\n`).join(''));
  const name = filter.consumer ?? '';
  // A name given wrong reads like a healthy consumer: say when nothing of it is here.
  const unknown =
    // (A role that may read the dead letters but not the inbox gets no hint.)
    dead.length === 0 && !(await consumerKnown(db, flags.schema, name).catch(() => true))
      ? `; consumer ${escapeControl(name)} has no inbox record or mark in schema "${escapeControl(flags.schema)}" either: is the name right?`
      : '';
  process.stderr.write(
    `${counted(dead.length, 'dead letter')} of consumer ${escapeControl(name)}${dead.length === limit ? ` (--limit ${limit} reached)` : ''}${unknown}\n`,
  );
  return 0;
}

export function inboxCommand(): Command {
  return new Command('inbox').description("the consumers' inbox records").addCommand(
    olderThanCommand(
      'purge',
      'delete inbox records older than a time (all consumers, or one)',
      'recorded before this: a duration ago (7d) or an ISO 8601 time, at least a minute ago',
      "only this consumer's records",
      (db, schema, before, consumer) => purgeInbox(db, schema, before, consumer),
      (count, before, consumer) =>
        `${counted(count, 'inbox record')}${ofConsumer(consumer)} purged (recorded before ${isoWithMicros(before)})`,
    ).addHelpText(
      'after',
      '\nA record is needed only while a duplicate of its event can still arrive: keep them well beyond your longest outage.',
    ),
  );
}
