import { Command, Option } from 'commander';
import type { Database } from '../../db/database.js';
import { readProducerNotify } from '../../db/migrate.js';
import { createDispatcher, type Dispatcher } from '../../dispatcher/dispatcher.js';
import { ConfigError, errorMessage } from '../../errors.js';
import { startOpsServer } from '../../observability/health.js';
import { type Logger, redactUrl } from '../../observability/logger.js';
import { openDatabase } from '../database.js';
import { execute } from '../execute.js';
import {
  type DispatcherFlags,
  dispatchOptions,
  parseDatabaseUrl,
  parseDispatcherFlags,
  parseInteger,
  settings,
} from '../settings.js';
import { onShutdownSignal } from '../shutdown.js';

interface RunFlags extends DispatcherFlags {
  databaseUrl?: string;
  metricsPort?: string;
  metricsHost: string;
  readyMaxLagSeconds: string;
  verbose?: boolean;
}

/** `--metrics-port` and friends, checked before anything is opened. */
function parseOpsFlags(flags: RunFlags) {
  if (flags.metricsPort === undefined) return undefined;
  return {
    port: parseInteger('metrics-port', flags.metricsPort, 0, 65_535),
    host: flags.metricsHost,
    maxLagSeconds: parseInteger('ready-max-lag-seconds', flags.readyMaxLagSeconds, 1, 86_400),
  };
}

/** Starts the metrics and health endpoints; a port that cannot be bound is a bad setting. */
async function serveOps(
  ops: NonNullable<ReturnType<typeof parseOpsFlags>>,
  dispatcher: Dispatcher,
  db: Database,
  schema: string,
  brokerName: string,
  logger: Logger,
) {
  // Loaded only when asked for: the metrics client is a sizeable share of a dispatcher's memory.
  const { dispatcherMetrics } = await import('../../observability/metrics.js');
  const registry = dispatcherMetrics({ dispatcher, db, schema, broker: brokerName, logger });
  try {
    const server = await startOpsServer({ ...ops, registry, dispatcher, db, schema });
    logger.info({ host: ops.host, port: server.port }, 'serving /metrics, /healthz and /readyz');
    return server;
  } catch (error) {
    throw new ConfigError(
      'metrics-port',
      `cannot listen on ${ops.host}:${ops.port}: ${errorMessage(error)}`,
    );
  }
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
    .addOption(
      new Option(
        '--metrics-port <port>',
        'serve /metrics (Prometheus), /healthz and /readyz on this port (0: any free port)',
      ).env('OUTBOX_METRICS_PORT'),
    )
    .addOption(
      new Option('--metrics-host <address>', 'address the metrics port binds to')
        .env('OUTBOX_METRICS_HOST')
        .default('127.0.0.1'),
    )
    .addOption(
      new Option(
        '--ready-max-lag-seconds <s>',
        '/readyz fails while the oldest pending event is older than this',
      ).default('60'),
    )
    .addOption(settings.verbose())
    .addHelpText(
      'after',
      `
The schema must be migrated first (edupulse-outbox migrate).
SIGTERM or SIGINT: stop claiming, settle the batches in flight, exit 0; a second signal exits at once (130).
With --metrics-port: GET /metrics (Prometheus text), /healthz (200 while the loop is alive)
and /readyz (200 when the database and broker are reachable, the loop makes progress and
the lag is under --ready-max-lag-seconds; else 503 with the reasons, one per line).
Exit codes: 0 stopped by a signal; 1 failure; 2 bad setting, unreachable database or schema behind.`,
    )
    .action(async (flags: RunFlags) => {
      await execute(flags, async ({ logger }) => {
        const url = parseDatabaseUrl('database-url', flags.databaseUrl);
        const { broker, ...dispatch } = parseDispatcherFlags(flags);
        const ops = parseOpsFlags(flags);
        // Listen before connecting: a SIGTERM that arrives while we start up (a
        // supervisor replacing us at once) still ends in a clean stop and exit 0.
        const stopped = new Promise<NodeJS.Signals>((resolve) => {
          onShutdownSignal(resolve, () => process.exit(130));
        });
        const db = await openDatabase(url, logger);
        try {
          const dispatcher = createDispatcher({ db, broker, logger, ...dispatch });
          const server =
            ops && (await serveOps(ops, dispatcher, db, dispatch.schema, broker.name, logger));
          await dispatcher.start();
          logger.info(
            { database: redactUrl(url), ...dispatch, broker: redactUrl(flags.broker) },
            'dispatcher started',
          );
          if (dispatch.notify && !(await readProducerNotify(db, dispatch.schema))) {
            logger.info(
              { pollIntervalMs: dispatch.pollIntervalMs },
              'inserts do not NOTIFY (migrate --producer-notify off): new events are found by polling',
            );
          }
          const fatal = new Promise<Error>((resolve) => dispatcher.once('fatal', resolve));
          const outcome = await Promise.race([stopped, fatal]);
          if (outcome instanceof Error) {
            await dispatcher.stop();
            await server?.close();
            throw outcome;
          }
          logger.info({ signal: outcome }, 'stopping: settling the batches in flight');
          await dispatcher.stop();
          await server?.close();
          logger.info({ ...dispatcher.stats }, 'dispatcher stopped');
          return 0;
        } finally {
          await db.close();
        }
      });
    });
}
