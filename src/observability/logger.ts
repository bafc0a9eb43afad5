import pino from 'pino';

type LogFn = (object: Record<string, unknown>, message: string) => void;

/** The logging the library does: pino's shape, so a pino logger can be passed straight in. */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const noop: LogFn = () => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** JSON lines on stderr (stdout may carry events, e.g. the log broker's). */
export function createLogger(level: LogLevel = 'info'): Logger {
  return pino(
    { level, base: { name: 'edupulse-outbox' } },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** The URL with any password replaced, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
  }
}
