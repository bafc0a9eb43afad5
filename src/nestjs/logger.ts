import type { LoggerService } from '@nestjs/common';
import type { Logger } from '../common/logger.js';

/**
 * The library's logger (pino's `(fields, message)` shape) over a Nest logger, so the
 * dispatcher's lines (broker connected, outages, dead letters) go where the application's
 * do: `broker unavailable; retrying {"target":"broker","attempt":1,…}`.
 */
export function nestLogger(nest: LoggerService): Logger {
  const line = (fields: Record<string, unknown>, message: string) =>
    Object.keys(fields).length > 0 ? `${message} ${JSON.stringify(fields)}` : message;
  return {
    debug: (fields, message) => nest.debug?.(line(fields, message)),
    info: (fields, message) => nest.log(line(fields, message)),
    warn: (fields, message) => nest.warn(line(fields, message)),
    error: (fields, message) => nest.error(line(fields, message)),
  };
}
