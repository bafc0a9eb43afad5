import { Command, Option } from 'commander';
import { brokerFromUrl } from '../../brokers/index.js';
import { ConfigError, errorMessage } from '../../common/errors.js';
import { assertBindAddress } from '../../common/http-access.js';
import type { Logger } from '../../common/logger.js';
import { assertPeerInstalled, loadWithPeer, optionalPeers } from '../../common/peers.js';
import { clip, escapeControl } from '../../common/text.js';
import { redactUrl } from '../../common/url.js';
import { isDatabaseUnavailable } from '../../db/connection-errors.js';
import { pgDatabase } from '../../db/pg.js';
import { createDispatcher, type Dispatcher } from '../../dispatcher/dispatcher.js';
import { MAX_LAG_SECONDS_RANGE } from '../../ops/health.js';
import { checkMetricsAccess, startOpsServer } from '../../ops/server.js';
import { openDatabase } from '../database.js';
import { execute } from '../execute.js';
import {
  type DispatcherFlags,
  dispatchOptions,
  listenError,
  parseDatabaseUrl,
  parseDispatchFlags,
  parseInteger,
  settings,
} from '../settings.js';
import { onShutdownSignal } from '../shutdown.js';
import {
  type ConsoleTokenFlags,
  consoleTokenOptions,
  parseConsoleSettings,
  parseConsoleToken,
  readToken,
  serveConsole,
  settleTokenSources,
} from './ui.js';

interface RunFlags extends DispatcherFlags, ConsoleTokenFlags {
  uiPort?: string;
  uiHost: string;
  databaseUrl?: string;
  metricsPort?: string;
  metricsHost: string;
  metricsToken?: string;
  metricsTokenFile?: string;
  readyMaxLagSeconds: string;
  metricsEventTypes?: string;
  verbose?: boolean;
}

// Event types as producers write them into the table: kebab-case from `defineEvent`, but
// raw SQL may use dotted CloudEvents types (com.example.created).
const EVENT_TYPE = /^[A-Za-z0-9][\w.:/-]{0,199}$/;

/** `--metrics-event-types a,b`: the event types that keep their name as a metrics label. */
function parseEventTypeLabels(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  const types = raw.split(',').map((type) => type.trim());
  for (const type of types) {
    if (!EVENT_TYPE.test(type)) {
      throw new ConfigError(
        'metrics-event-types',
        `"${clip(escapeControl(type), 60)}" is not an event type (expected a comma-separated list such as certificate-issued,course-archived)`,
      );
    }
  }
  return types;
}

/** `--metrics-port` and friends, checked before anything is opened. */
function parseOpsFlags(flags: RunFlags) {
  // Checked with the endpoints off too: a bad value is found before they are turned on.
  const eventTypeLabels = parseEventTypeLabels(flags.metricsEventTypes);
  const maxLagSeconds = parseInteger(
    'ready-max-lag-seconds',
    flags.readyMaxLagSeconds,
    ...MAX_LAG_SECONDS_RANGE,
  );
  const { token, setting } = readToken('metrics-token', flags.metricsToken, flags.metricsTokenFile);
  // The host is checked only with the port: without it nothing binds it.
  if (flags.metricsPort !== undefined) assertBindAddress('metrics-host', flags.metricsHost);
  checkMetricsAccess(
    flags.metricsPort === undefined ? '127.0.0.1' : flags.metricsHost,
    token,
    setting,
  );
  if (flags.metricsPort === undefined) return undefined;
  // The value first: a port that is none is wrong whatever is installed.
  const port = parseInteger('metrics-port', flags.metricsPort, 0, 65_535);
  assertPeerInstalled('metrics-port', optionalPeers.metrics);
  return {
    port,
    host: flags.metricsHost,
    token,
    maxLagSeconds,
    eventTypeLabels,
  };
}

/**
 * Starts the metrics and health endpoints on a database connection of their own, so no
 * request, however many arrive, takes a connection the claim loops need; a port that
 * cannot be bound is a bad setting. `close()` stops the endpoints and that connection.
 */
async function serveOps(
  { eventTypeLabels, ...ops }: NonNullable<ReturnType<typeof parseOpsFlags>>,
  dispatcher: Dispatcher,
  databaseUrl: string,
  schema: string,
  brokerName: string,
  logger: Logger,
) {
  // Loaded only when asked for: the metrics client is a sizeable share of a dispatcher's memory.
  const { dispatcherMetrics } = await loadWithPeer(
    'metrics-port',
    optionalPeers.metrics,
    () => import('../../ops/metrics.js'),
  );
  // One connection is enough: concurrent requests share one check, and its answer serves
  // for a second (SharedCheck). The server's planner: the metrics' count over the whole
  // outbox is a sequential scan, four times cheaper than the claim's forced index walk.
  const db = pgDatabase({
    connectionString: databaseUrl,
    setting: 'database-url',
    maxConnections: 1,
    planner: 'server',
    applicationName: 'edupulse-outbox ops',
    onIdleError: (error) =>
      logger.warn({ err: errorMessage(error) }, 'ops database connection lost'),
  });
  const registry = dispatcherMetrics({
    dispatcher,
    db,
    schema,
    broker: brokerName,
    eventTypeLabels,
    logger,
  });
  try {
    const server = await startOpsServer({ ...ops, registry, dispatcher, db, schema });
    logger.info({ host: ops.host, port: server.port }, 'serving /metrics, /healthz and /readyz');
    return {
      port: server.port,
      async close() {
        await server.close();
        await db.close();
      },
    };
  } catch (error) {
    await db.close();
    throw listenError(error, { ...ops, portSetting: 'metrics-port', hostSetting: 'metrics-host' });
  }
}

export function runCommand(): Command {
  const command = new Command('run')
    .description('publish outbox events to the broker until stopped')
    .addOption(settings.databaseUrl())
    .addOption(settings.schema())
    .addOption(settings.broker())
    .addOption(settings.source());
  for (const option of dispatchOptions()) command.addOption(option);
  command
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
        '--metrics-token <token>',
        'token every request to the metrics port must carry (Authorization: Bearer …), at least 16 characters; required to bind beyond 127.0.0.1',
      ).env('OUTBOX_METRICS_TOKEN'),
    )
    .addOption(
      new Option('--metrics-token-file <path>', 'read the metrics token from this file').env(
        'OUTBOX_METRICS_TOKEN_FILE',
      ),
    )
    .addOption(
      new Option(
        '--ready-max-lag-seconds <s>',
        '/readyz fails while the oldest pending event is older than this',
      ).default('60'),
    )
    .addOption(
      new Option(
        '--metrics-event-types <a,b,…>',
        'comma-separated event types that keep their name as the event_type label of the metrics, besides the catalogue\'s; any other type is counted as "other"',
      ).env('OUTBOX_METRICS_EVENT_TYPES'),
    )
    .addOption(
      new Option(
        '--ui-port <port>',
        'serve the web console (edupulse-outbox ui) from this dispatcher on this port (0: any free port)',
      ).env('OUTBOX_UI_PORT'),
    )
    .addOption(
      new Option(
        '--ui-host <address>',
        'address the console binds to; beyond loopback it needs --ui-token',
      )
        .env('OUTBOX_UI_HOST')
        .default('127.0.0.1'),
    );
  for (const option of consoleTokenOptions()) command.addOption(option);
  return command
    .addOption(settings.verbose())
    .addHelpText(
      'after',
      `
The schema must be migrated first (edupulse-outbox migrate).
SIGTERM or SIGINT: stop claiming, settle the batches in flight, exit 0; a second signal exits at once (130).
With --metrics-port: GET /metrics (Prometheus text), /healthz (200 while the loop is alive)
and /readyz (200 when the database and broker are reachable, the loop makes progress and
the lag is under --ready-max-lag-seconds; else 503 with the reasons, one per line).
NATS over TLS with credentials: nats://host:4222[,host:4222…]?tls=true&ca_file=…[&cert_file=…&key_file=…]
and one of user:pass@ (or user@ with password_file=…), token_file=…, nkey_file=…, creds_file=…
(docs/operations.md, "NATS"); Kafka over TLS/SASL: kafka://user@host:9093?ca_file=…&sasl_mechanism=scram-sha-512&password_file=…
(docs/operations.md, "Kafka"); RabbitMQ over TLS: amqps://user@host:5671[,host:5671…]/vhost?ca_file=…[&cert_file=…&key_file=…]&password_file=…
(docs/operations.md, "RabbitMQ").
Exit codes: 0 stopped by a signal; 1 failure; 2 bad setting (a broker refusing its configuration,
a certificate or credentials included), unreachable database, schema behind or migrated by a
later release, or a privilege the database role lacks; a broker that is down is waited for.`,
    )
    .action(async (flags: RunFlags, command: Command) => {
      await execute(flags, async ({ logger }) => {
        // A flag for an endpoint that is not served would be ignored without a word (from
        // the environment it may be meant for every process; a bad value is still refused).
        for (const [key, setting, what, port, given] of [
          ['uiHost', 'ui-host', 'binds what', 'ui-port', flags.uiPort],
          ['uiToken', 'ui-token', 'protects what', 'ui-port', flags.uiPort],
          ['uiTokenFile', 'ui-token-file', 'protects what', 'ui-port', flags.uiPort],
          ['metricsHost', 'metrics-host', 'binds what', 'metrics-port', flags.metricsPort],
          ['metricsToken', 'metrics-token', 'protects what', 'metrics-port', flags.metricsPort],
          [
            'metricsTokenFile',
            'metrics-token-file',
            'protects what',
            'metrics-port',
            flags.metricsPort,
          ],
          [
            'readyMaxLagSeconds',
            'ready-max-lag-seconds',
            'is for /readyz, which',
            'metrics-port',
            flags.metricsPort,
          ],
          [
            'metricsEventTypes',
            'metrics-event-types',
            'labels the metrics',
            'metrics-port',
            flags.metricsPort,
          ],
        ] as const) {
          if (command.getOptionValueSource(key) === 'cli' && given === undefined) {
            throw new ConfigError(setting, `${what} --${port} serves: give --${port} too`);
          }
        }
        settleTokenSources(command, flags, 'metrics-token');
        settleTokenSources(command, flags, 'ui-token');
        const url = parseDatabaseUrl('database-url', flags.databaseUrl);
        const dispatch = { schema: flags.schema, ...parseDispatchFlags(flags) };
        const broker = brokerFromUrl(flags.broker, { source: flags.source });
        const ops = parseOpsFlags(flags);
        if (flags.uiPort === undefined) parseConsoleToken(flags);
        const ui =
          flags.uiPort === undefined
            ? undefined
            : parseConsoleSettings('ui-port', flags.uiPort, 'ui-host', flags.uiHost, flags);
        // Said once every setting is read: a refused one is the only line of a run that exits 2.
        if (broker.name === 'memory') {
          // For tests: what it takes is gone with the process, yet deleted from the outbox.
          logger.warn(
            { broker: 'memory:' },
            'broker memory: keeps events only in this process: every event claimed is deleted from the outbox and published nowhere (log: writes them to stdout)',
          );
        }
        // Listen before connecting: a SIGTERM that arrives while we start up (a
        // supervisor replacing us at once) still ends in a clean stop and exit 0.
        const stopped = new Promise<NodeJS.Signals>((resolve) => {
          onShutdownSignal(resolve, () => {
            // The batches in flight roll back with the connections: their events stay in
            // the outbox for the next run (at-least-once).
            logger.warn(
              {},
              'second signal: exiting at once, batches in flight left to the next run',
            );
            process.exit(130);
          });
        });
        const db = await openDatabase(url, logger);
        try {
          // A broker down at start is ridden out like any later outage (with a log line per retry).
          const dispatcher = createDispatcher({
            db,
            broker,
            logger,
            ...dispatch,
            waitForBroker: false,
          });
          const server =
            ops && (await serveOps(ops, dispatcher, url, dispatch.schema, broker.name, logger));
          const site =
            ui &&
            (await serveConsole(ui, {
              databaseUrl: url,
              schema: dispatch.schema,
              logger,
              dispatcher,
              brokerName: broker.name,
            }).catch(async (error: unknown) => {
              await server?.close();
              throw error;
            }));
          await dispatcher.start().catch(async (error: unknown) => {
            await site?.close();
            await server?.close();
            // Lost while starting (a server restart): the same as unreachable at start.
            if (isDatabaseUnavailable(error)) {
              throw new ConfigError(
                'database-url',
                `lost ${redactUrl(url)} while starting: ${errorMessage(error)}`,
                { cause: error },
              );
            }
            throw error;
          });
          // The dispatcher logs its start and stop itself (whether it listens among them:
          // --notify alone does not say); the addresses are the CLI's to say.
          const { notify: _notify, ...logged } = dispatch;
          logger.info(
            { database: redactUrl(url), ...logged, broker: redactUrl(flags.broker) },
            'dispatching',
          );
          const fatal = new Promise<Error>((resolve) => dispatcher.once('fatal', resolve));
          const outcome = await Promise.race([stopped, fatal]);
          if (outcome instanceof Error) {
            await dispatcher.stop();
            await site?.close();
            await server?.close();
            throw outcome;
          }
          logger.info({ signal: outcome }, 'stopping: settling the batches in flight');
          await dispatcher.stop();
          await site?.close();
          await server?.close();
          return 0;
        } finally {
          await db.close();
        }
      });
    });
}
