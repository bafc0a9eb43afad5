import { Command } from 'commander';
import { quoteSchema } from '../../db/identifier.js';
import { assertSchemaCurrent } from '../../db/migrate.js';
import { outboxStatus, partitionRanges } from '../../dispatcher/status.js';
import { openDatabase } from '../database.js';
import { execute } from '../execute.js';
import { parseDatabaseUrl, settings } from '../settings.js';

interface StatusFlags {
  databaseUrl?: string;
  schema: string;
  json?: boolean;
  verbose?: boolean;
}

export function statusCommand(): Command {
  return new Command('status')
    .description('show the backlog, the dead letters, and which dispatcher owns which partitions')
    .addOption(settings.databaseUrl())
    .addOption(settings.schema())
    .option('--json', 'print one JSON object instead of text')
    .addOption(settings.verbose())
    .action(async (flags: StatusFlags) => {
      await execute(flags, async ({ logger }) => {
        quoteSchema(flags.schema);
        const db = await openDatabase(parseDatabaseUrl('database-url', flags.databaseUrl), logger);
        try {
          await assertSchemaCurrent(db, flags.schema);
          const status = await outboxStatus(db, flags.schema);
          if (flags.json) {
            process.stdout.write(`${JSON.stringify(status)}\n`);
            return 0;
          }
          const lines = [
            `schema "${status.schema}": ${status.pending} pending (oldest ${status.oldestAgeSeconds.toFixed(1)} s), ${status.deadLetters} dead letters`,
            `dispatchers: ${status.dispatchers.length}`,
            ...status.dispatchers.map(
              (d) =>
                `  pid ${d.pid}  ${d.name}  ${d.partitions.length} partitions: ${partitionRanges(d.partitions)}`,
            ),
          ];
          process.stdout.write(`${lines.join('\n')}\n`);
          return 0;
        } finally {
          await db.close();
        }
      });
    });
}
