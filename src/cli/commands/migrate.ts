import { Command, Option } from 'commander';
import { ConfigError } from '../../common/errors.js';
import { quoteSchema } from '../../db/identifier.js';
import {
  assertNotNewer,
  assertNotRenamed,
  assertPartitionsKept,
  MAX_PARTITIONS,
  migrate,
  migrationPrivilegeError,
  migrationScript,
  migrationStatus,
  producerNotifyStatement,
  readPartitionCount,
  readProducerNotify,
  setProducerNotify,
} from '../../db/migrate.js';
import { openDatabase } from '../database.js';
import { execute } from '../execute.js';
import { parseDatabaseUrl, parseInteger, settings } from '../settings.js';

interface MigrateFlags {
  databaseUrl?: string;
  schema: string;
  print?: boolean;
  check?: boolean;
  partitions?: string;
  producerNotify?: 'on' | 'off';
  verbose?: boolean;
}

export function migrateCommand(): Command {
  return new Command('migrate')
    .description(
      'apply the outbox schema migrations (each in its own transaction; safe to run concurrently)',
    )
    .addOption(settings.databaseUrl())
    .addOption(settings.schema())
    .option(
      '--print',
      'print the SQL that creates a new schema instead of applying it (no database needed; with --partitions or 64, and --producer-notify as given)',
    )
    .option(
      '--check',
      'apply nothing; exit 1 if the database is behind (or its producer notify is not --producer-notify), 0 if it is current; a --partitions other than the schema has exits 2, as without --check',
    )
    .option(
      '--partitions <n>',
      'partitions the rows are spread over, the unit dispatchers share (1-1024, default 64); fixed when the schema is created, read from the schema on upgrade',
    )
    .addOption(
      new Option(
        '--producer-notify <on|off>',
        'whether inserts also NOTIFY the dispatchers (default off: a NOTIFY makes the database commit outbox-writing transactions one at a time; dispatchers find new events by probing the write sequence either way)',
      ).choices(['on', 'off']),
    )
    .addOption(settings.verbose())
    .addHelpText(
      'after',
      '\nExit codes: 0 done (or current, with --check); 1 behind (with --check); 2 bad setting, unreachable database, a privilege the role lacks, a schema a later release migrated, or one renamed after it was migrated.',
    )
    .action(async (flags: MigrateFlags) => {
      await execute(flags, async ({ logger }) => {
        quoteSchema(flags.schema);
        // Only given when asked for: on upgrade migrate reads the count from the schema,
        // and refuses one that differs.
        const partitions =
          flags.partitions === undefined
            ? undefined
            : parseInteger('partitions', flags.partitions, 1, MAX_PARTITIONS);
        if (flags.print) {
          if (flags.check) throw new ConfigError('check', 'checks a database; --print needs none');
          let script = migrationScript(flags.schema, { partitions });
          if (flags.producerNotify) {
            script += `\n-- --producer-notify ${flags.producerNotify}\n${producerNotifyStatement(flags.schema, flags.producerNotify === 'on')};\n`;
          }
          process.stdout.write(script);
          return 0;
        }
        const url = parseDatabaseUrl('database-url', flags.databaseUrl);
        const db = await openDatabase(url, logger);
        try {
          if (flags.check) {
            const status = await migrationStatus(db, flags.schema).catch(async (error) => {
              throw (await migrationPrivilegeError(db, flags.schema, error, true)) ?? error;
            });
            const current = status.applied.at(-1) ?? 0;
            // What the same command without --check would refuse or change, it reports too.
            assertNotNewer(flags.schema, status);
            await assertNotRenamed(db, flags.schema);
            if (current > 0 && partitions !== undefined) {
              assertPartitionsKept(
                flags.schema,
                await readPartitionCount(db, flags.schema),
                partitions,
              );
            }
            if (current > 0 && flags.producerNotify) {
              const notify = (await readProducerNotify(db, flags.schema)) ? 'on' : 'off';
              if (notify !== flags.producerNotify) {
                process.stdout.write(
                  `schema "${flags.schema}" has producer notify ${notify}, not ${flags.producerNotify}\n`,
                );
                return 1;
              }
            }
            if (status.pending.length > 0) {
              process.stdout.write(
                `schema "${flags.schema}" is behind: version ${current}, latest ${status.latest}; pending: ${status.pending
                  .map((m) => `${m.version} ${m.name}`)
                  .join(', ')}\n`,
              );
              return 1;
            }
            process.stdout.write(`schema "${flags.schema}" is current (version ${current})\n`);
            return 0;
          }
          const applied = await migrate(db, flags.schema, { partitions });
          process.stdout.write(
            applied.length === 0
              ? `schema "${flags.schema}" is already current\n`
              : applied
                  .map((m) => `applied ${m.version} ${m.name} to schema "${flags.schema}"\n`)
                  .join(''),
          );
          if (flags.producerNotify) {
            await setProducerNotify(db, flags.schema, flags.producerNotify === 'on');
            process.stdout.write(
              `producer notify ${flags.producerNotify} for schema "${flags.schema}"${flags.producerNotify === 'on' ? ': dispatchers started from now on also LISTEN' : ''}\n`,
            );
          }
          return 0;
        } finally {
          await db.close();
        }
      });
    });
}
