import { ConfigError, errorMessage, PrivilegeError, SchemaVersionError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/logger.js';
import { registerSecret, registerUrlSecrets, scrubSecrets } from '../common/secrets.js';
import { escapeControl } from '../common/text.js';
import { loneUserIsSecret, parseUrl } from '../common/url.js';
import { hasSqlState } from '../db/missing-table.js';
import { READ_ONLY_HINT } from '../dispatcher/database-errors.js';

export interface CommandContext {
  logger: Logger;
  verbose: boolean;
}

/** Exit codes of every command. */
export const exitCodes = { ok: 0, failure: 1, badSetting: 2 } as const;

/** The flags that carry connection URLs, and whether a lone user in them is a token. */
const URL_FLAGS = ['databaseUrl', 'broker'] as const;

/**
 * Remembers the secrets of the command's URL settings, so that the logger and the error
 * printing below can sweep them out of anything a server or library quotes back.
 */
function registerFlagSecrets(flags: Record<string, unknown>): void {
  for (const name of URL_FLAGS) {
    const value = flags[name];
    if (typeof value !== 'string') continue;
    // A lone NATS user is a token, unless password_file holds its password.
    const url = parseUrl(value);
    const userIsSecret = url !== undefined && loneUserIsSecret(url);
    registerUrlSecrets(value, { userIsSecret });
  }
  // The console's token (`--ui-token`).
  if (typeof flags.uiToken === 'string') registerSecret(flags.uiToken);
}

/** Settings of this run whose value came from an environment variable: setting → variable. */
let fromEnvironment = new Map<string, string>();

/** The settings of the command about to run that were read from the environment. */
export function settingsFromEnvironment(settings: Map<string, string>): void {
  fromEnvironment = settings;
}

/** `metrics-port: …` as `metrics-port (from OUTBOX_METRICS_PORT): …` when the value came from there. */
function nameTheVariable(error: unknown, message: string): string {
  if (!(error instanceof ConfigError)) return message;
  const variable = fromEnvironment.get(error.setting);
  const prefix = `${error.setting}: `;
  if (variable === undefined || !message.startsWith(prefix)) return message;
  return `${error.setting} (from ${variable}): ${message.slice(prefix.length)}`;
}

/**
 * Runs a command's body and turns what it throws into one line on stderr and an exit
 * code: a setting the command cannot use (bad value, unreachable target, schema behind,
 * a privilege the database role lacks) is 2, anything else 1. `--verbose` adds the stack. Neither shows a secret of the settings.
 */
export async function execute(
  flags: { verbose?: boolean },
  body: (context: CommandContext) => Promise<number>,
): Promise<void> {
  registerFlagSecrets(flags as Record<string, unknown>);
  const verbose = flags.verbose === true;
  const logger = createLogger(verbose ? 'debug' : 'info');
  try {
    process.exitCode = await body({ logger, verbose });
  } catch (error) {
    const usage =
      error instanceof ConfigError ||
      error instanceof SchemaVersionError ||
      error instanceof PrivilegeError;
    // A value quoted back in a message may hold control characters: shown escaped.
    // A writing command (retry, discard, purge) on a read-only server: what to change.
    const message = hasSqlState(error, '25006')
      ? `${errorMessage(error)} (${READ_ONLY_HINT})`
      : errorMessage(error);
    let text = `edupulse-outbox: ${escapeControl(nameTheVariable(error, message))}\n`;
    if (verbose && error instanceof Error && error.stack) {
      text += `${error.stack.split('\n').map(escapeControl).join('\n')}\n`;
    }
    process.stderr.write(scrubSecrets(text));
    process.exitCode = usage ? exitCodes.badSetting : exitCodes.failure;
  }
}
