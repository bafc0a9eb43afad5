import { Command, Option } from 'commander';
import { ConfigError, errorMessage } from '../../common/errors.js';
import { assertBindAddress } from '../../common/http-access.js';
import type { Logger } from '../../common/logger.js';
import { readSecretFile } from '../../common/setting-files.js';
import { checkConsoleAccess, startConsoleServer } from '../../console/server.js';
import { quoteSchema } from '../../db/identifier.js';
import { assertSchemaCurrent } from '../../db/migrate.js';
import { pgDatabase } from '../../db/pg.js';
import { withTimeouts } from '../../db/with-timeouts.js';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { openDatabase } from '../database.js';
import { execute } from '../execute.js';
import { listenError, parseDatabaseUrl, parseInteger, settings } from '../settings.js';
import { onShutdownSignal } from '../shutdown.js';

/** The console's token settings, shared by `ui` and `run --ui-port`. */
export interface ConsoleTokenFlags {
  uiToken?: string;
  uiTokenFile?: string;
}

export const consoleTokenOptions = () => [
  new Option(
    '--ui-token <token>',
    'token every API request of the console must carry (Authorization: Bearer …), at least 16 characters; required to bind beyond 127.0.0.1',
  ).env('OUTBOX_UI_TOKEN'),
  new Option('--ui-token-file <path>', 'read the console token from this file').env(
    'OUTBOX_UI_TOKEN_FILE',
  ),
];

export interface ConsoleSettings {
  port: number;
  host: string;
  token: string | undefined;
  /** The flags of the port and the address, for errors: `port`, `host` (ui) or `ui-port`, `ui-host` (run). */
  portSetting: string;
  hostSetting: string;
}

/**
 * The console's token, if given: once, long enough, sendable; and given when `host` is
 * beyond loopback. `run` checks it without `--ui-port` too, so a bad one is found before
 * the day the console is turned on.
 */
export function parseConsoleToken(
  flags: ConsoleTokenFlags,
  host = '127.0.0.1',
): string | undefined {
  const { token, setting } = readToken('ui-token', flags.uiToken, flags.uiTokenFile);
  checkConsoleAccess(host, token, setting);
  return token;
}

/**
 * An endpoint's token and its file given both, one by a flag and the other by the
 * environment (`--ui-token-file` while OUTBOX_UI_TOKEN is set): the flag wins, as flags
 * do over the environment, and the variable is dropped from `flags`. Both from the
 * environment are refused naming the two variables; both flags, by readToken.
 */
export function settleTokenSources(command: Command, flags: object, name: string): void {
  const key = name.replace(/-(\w)/g, (_, letter: string) => letter.toUpperCase());
  const keys = [key, `${key}File`] as const;
  const given = flags as Record<string, unknown>;
  if (keys.some((each) => given[each] === undefined)) return;
  const [tokenSource, fileSource] = keys.map((each) => command.getOptionValueSource(each));
  if (tokenSource === 'env' && fileSource === 'env') {
    const variables = keys.map(
      (each) => command.options.find((option) => option.attributeName() === each)?.envVar,
    );
    throw new ConfigError(
      `${name}-file`,
      `give the token once: ${variables[0]} or ${variables[1]}, not both`,
    );
  }
  if (tokenSource === 'env' && fileSource === 'cli') given[key] = undefined;
  if (fileSource === 'env' && tokenSource === 'cli') given[`${key}File`] = undefined;
}

/**
 * An endpoint's token from `--<name>` or `--<name>-file` (given once), and the setting it
 * came from, for errors.
 */
export function readToken(
  name: string,
  token: string | undefined,
  file: string | undefined,
): { token: string | undefined; setting: string } {
  if (token !== undefined && file !== undefined) {
    throw new ConfigError(`${name}-file`, `give the token once: --${name} or --${name}-file`);
  }
  if (file === undefined) return { token, setting: name };
  return { token: readSecretFile(`${name}-file`, `${name}-file`, file), setting: `${name}-file` };
}

/** Port, address and token, checked before anything is opened (a bind beyond loopback needs a token). */
export function parseConsoleSettings(
  portSetting: string,
  port: string,
  hostSetting: string,
  host: string,
  flags: ConsoleTokenFlags,
): ConsoleSettings {
  assertBindAddress(hostSetting, host);
  const token = parseConsoleToken(flags, host);
  return {
    port: parseInteger(portSetting, port, 0, 65_535),
    host,
    token,
    portSetting,
    hostSetting,
  };
}

/**
 * Serves the console on a database pool of its own (a few connections, apart from any
 * dispatcher's); a port that cannot be bound is a bad setting. `close()` stops both.
 */
/** How long the console waits for PostgreSQL to answer one of its statements. */
const CONSOLE_ANSWER_MS = 10_000;

export async function serveConsole(
  served: ConsoleSettings,
  context: {
    databaseUrl: string;
    schema: string;
    logger: Logger;
    dispatcher?: Dispatcher;
    brokerName?: string;
  },
): Promise<{ port: number; close(): Promise<void> }> {
  const db = pgDatabase({
    connectionString: context.databaseUrl,
    setting: 'database-url',
    maxConnections: 3,
    applicationName: 'edupulse-outbox console',
    // The server's planner: a dead letter found by its id through its index.
    planner: 'server',
    onIdleError: (error) =>
      context.logger.warn({ err: errorMessage(error) }, 'console database connection lost'),
  });
  try {
    const server = await startConsoleServer({
      // A database that stops answering (a network gone silent) fails the request after
      // this, its connection dropped, instead of holding it and the pool for ever.
      db: withTimeouts(db, { answerMs: CONSOLE_ANSWER_MS }),
      schema: context.schema,
      dispatcher: context.dispatcher,
      brokerName: context.brokerName,
      logger: context.logger,
      port: served.port,
      host: served.host,
      token: served.token,
    });
    context.logger.info(
      { host: served.host, port: server.port, token: served.token !== undefined },
      'serving the console',
    );
    return {
      port: server.port,
      async close() {
        await server.close();
        await db.close();
      },
    };
  } catch (error) {
    await db.close();
    if (error instanceof ConfigError) throw error;
    throw listenError(error, served);
  }
}

interface UiFlags extends ConsoleTokenFlags {
  databaseUrl?: string;
  schema: string;
  port: string;
  host: string;
  verbose?: boolean;
}

export function uiCommand(): Command {
  const command = new Command('ui')
    .alias('console')
    .description(
      'serve the web console: backlog, partitions, dead letters (retry, discard) and search, with its JSON API',
    )
    .addOption(settings.databaseUrl())
    .addOption(settings.schema())
    .addOption(
      new Option('--port <port>', 'port of the console (0: any free port)')
        .env('OUTBOX_UI_PORT')
        .default('8740'),
    )
    .addOption(
      new Option(
        '--host <address>',
        'address the console binds to; beyond loopback it needs a token',
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
Open http://127.0.0.1:8740/ in a browser. The page and its API (docs/console-api.yaml)
read the database like \`status\` and act on dead letters like \`dead retry|discard\`.
With a token, every API request must carry it (Authorization: Bearer <token>); the page
asks for it once per tab. Prefer OUTBOX_UI_TOKEN or --ui-token-file to a flag, which
other users of the machine can see. \`run --ui-port\` serves the same console from a
dispatcher, with its broker state and latency (occurred_at → broker ack).
SIGTERM or SIGINT: stop, exit 0. Exit codes: 1 failure; 2 bad setting (a port that cannot
be bound, a bind beyond loopback without a token), unreachable database, schema behind or
migrated by a later release.`,
    )
    .action(async (flags: UiFlags, command: Command) => {
      await execute(flags, async ({ logger }) => {
        settleTokenSources(command, flags, 'ui-token');
        const url = parseDatabaseUrl('database-url', flags.databaseUrl);
        quoteSchema(flags.schema);
        const served = parseConsoleSettings('port', flags.port, 'host', flags.host, flags);
        const stopped = new Promise<NodeJS.Signals>((resolve) => {
          onShutdownSignal(resolve, () => process.exit(130));
        });
        const check = await openDatabase(url, logger);
        try {
          await assertSchemaCurrent(check, flags.schema);
        } finally {
          await check.close();
        }
        const server = await serveConsole(served, {
          databaseUrl: url,
          schema: flags.schema,
          logger,
        });
        const signal = await stopped;
        logger.info({ signal }, 'stopping the console');
        await server.close();
        return 0;
      });
    });
}
