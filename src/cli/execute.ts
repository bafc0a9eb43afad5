import { ConfigError, errorMessage, SchemaVersionError } from '../errors.js';
import { createLogger, type Logger } from '../observability/logger.js';

export interface CommandContext {
  logger: Logger;
  verbose: boolean;
}

/** Exit codes of every command. */
export const exitCodes = { ok: 0, failure: 1, badSetting: 2 } as const;

/**
 * Runs a command's body and turns what it throws into one line on stderr and an exit
 * code: a setting the command cannot use (bad value, unreachable target, schema behind)
 * is 2, anything else 1. `--verbose` adds the stack.
 */
export async function execute(
  flags: { verbose?: boolean },
  body: (context: CommandContext) => Promise<number>,
): Promise<void> {
  const verbose = flags.verbose === true;
  const logger = createLogger(verbose ? 'debug' : 'info');
  try {
    process.exitCode = await body({ logger, verbose });
  } catch (error) {
    const usage = error instanceof ConfigError || error instanceof SchemaVersionError;
    process.stderr.write(`edupulse-outbox: ${errorMessage(error)}\n`);
    if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    process.exitCode = usage ? exitCodes.badSetting : exitCodes.failure;
  }
}
