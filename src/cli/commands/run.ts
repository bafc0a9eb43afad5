import { Command } from 'commander';
import { createDispatcher } from '../../dispatcher/dispatcher.js';
import { redactUrl } from '../../observability/logger.js';
import { openDatabase } from '../database.js';
import { execute } from '../execute.js';
import {
  type DispatcherFlags,
  dispatchOptions,
  parseDatabaseUrl,
  parseDispatcherFlags,
  settings,
} from '../settings.js';
import { onShutdownSignal } from '../shutdown.js';

interface RunFlags extends DispatcherFlags {
  databaseUrl?: string;
  verbose?: boolean;
}

export function runCommand(): Command {
  const command = new Command('run')
    .description('publish outbox events to the broker until stopped')
    .addOption(settings.databaseUrl())
    .addOption(settings.schema())
    .addOption(settings.broker())
    .addOption(settings.source());
  for (const option of dispatchOptions) command.addOption(option());
  return command
    .addOption(settings.verbose())
    .addHelpText(
      'after',
      `
The schema must be migrated first (edupulse-outbox migrate).
SIGTERM or SIGINT: stop claiming, settle the batches in flight, exit 0; a second signal exits at once (130).
Exit codes: 0 stopped by a signal; 1 failure; 2 bad setting, unreachable database or schema behind.`,
    )
    .action(async (flags: RunFlags) => {
      await execute(flags, async ({ logger }) => {
        const url = parseDatabaseUrl('database-url', flags.databaseUrl);
        const { broker, ...dispatch } = parseDispatcherFlags(flags);
        // Listen before connecting: a SIGTERM that arrives while we start up (a
        // supervisor replacing us at once) still ends in a clean stop and exit 0.
        const stopped = new Promise<NodeJS.Signals>((resolve) => {
          onShutdownSignal(resolve, () => process.exit(130));
        });
        const db = await openDatabase(url, logger);
        try {
          const dispatcher = createDispatcher({ db, broker, logger, ...dispatch });
          await dispatcher.start();
          logger.info(
            { database: redactUrl(url), ...dispatch, broker: redactUrl(flags.broker) },
            'dispatcher started',
          );
          const fatal = new Promise<Error>((resolve) => dispatcher.once('fatal', resolve));
          const outcome = await Promise.race([stopped, fatal]);
          if (outcome instanceof Error) {
            await dispatcher.stop();
            throw outcome;
          }
          logger.info({ signal: outcome }, 'stopping: settling the batches in flight');
          await dispatcher.stop();
          logger.info({ ...dispatcher.stats }, 'dispatcher stopped');
          return 0;
        } finally {
          await db.close();
        }
      });
    });
}
