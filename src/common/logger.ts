import pino from 'pino';
import { ConfigError } from './errors.js';
import { scrubSecrets, scrubSecretsIn } from './secrets.js';
import { clip, describeValue } from './text.js';

/** One level's log method: structured fields first, then the message. */
export type LogFn = (object: Record<string, unknown>, message: string) => void;

/** The logging the library does: pino's shape, so a pino logger can be passed straight in. */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const noop: LogFn = () => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * Refuses, naming `setting`, a logger without pino's four methods (a level name, `{}`,
 * `console.log`): the first message logged would otherwise throw where no caller catches
 * it. Undefined passes (the default), and `false` where the option takes it.
 */
export function assertLogger(value: unknown, setting: string, falseAllowed = false): void {
  if (value === undefined || (falseAllowed && value === false)) return;
  const missing =
    typeof value === 'object' && value !== null
      ? LEVELS.filter((level) => typeof (value as Record<string, unknown>)[level] !== 'function')
      : LEVELS;
  if (missing.length === 0) return;
  throw new ConfigError(
    setting,
    `must be a logger of pino's shape (debug, info, warn and error methods taking (fields, message)${falseAllowed ? ') or false' : ')'}; ${describeValue(value)} has no ${missing.join(', ')}`,
  );
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/**
 * The longest text field a log line carries. What comes from the table (an aggregate id,
 * an error quoting a payload) is cut shorter where it is logged; this keeps a whole
 * sentence of ours (a refusal saying what to grant runs to a few hundred characters)
 * and still stops a 100 KB value from flooding the log.
 */
const LOG_FIELD_CHARS = 2000;

/** Long text fields are cut. */
function clipFields(object: Record<string, unknown>): Record<string, unknown> {
  const clipped: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) {
    clipped[key] = typeof value === 'string' ? clip(value, LOG_FIELD_CHARS) : value;
  }
  return clipped;
}

/**
 * JSON lines on stderr (stdout may carry events, e.g. the log broker's). Text fields are
 * cut to a readable length, and the message, the fields and errors are swept for the
 * secrets of this process's settings (src/secrets.ts) before they are written, all but
 * the events' own data (ids, types, aggregates: see scrubSecretsIn).
 */
export function createLogger(level: LogLevel = 'info'): Logger {
  return pino(
    {
      level,
      base: { name: 'edupulse-outbox' },
      formatters: { log: (object) => scrubSecretsIn(clipFields(object)) },
      serializers: { err: (error) => scrubSecretsIn(pino.stdSerializers.err(error)) },
      hooks: {
        logMethod(args, method) {
          method.apply(
            this,
            args.map((arg) => (typeof arg === 'string' ? scrubSecrets(arg) : arg)) as typeof args,
          );
        },
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
