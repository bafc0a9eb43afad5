/**
 * Whether an error means PostgreSQL could not be reached (as opposed to a statement it
 * refused): by SQLSTATE class and the drivers' socket error codes, through the `cause`
 * chain. A consumer retries a handler failing so without spending its attempts: the
 * event is fine, the database is away.
 */

/** SQLSTATEs of a lost or refused connection: class 08, and the server shutting down or starting. */
const unavailableStates = new Set(['57P01', '57P02', '57P03', '53300']);
/** Node socket errors, and postgres.js's connection errors. */
const unavailableCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
]);
/**
 * node-postgres reports a connection that died under a query, and a pool that could not
 * connect in time, without any code: these are its own fixed texts.
 */
const poolWaitText = 'timeout exceeded when trying to connect';
const codelessDriverTexts = [
  'Connection terminated',
  'connection error and is not queryable',
  poolWaitText,
];

/** `error` and its causes, a few deep. */
function* causeChain(error: unknown): Generator<{ code?: unknown; message?: unknown }> {
  for (let depth = 0; depth < 5 && typeof error === 'object' && error !== null; depth++) {
    yield error as { code?: unknown; message?: unknown };
    error = (error as { cause?: unknown }).cause;
  }
}

export function isDatabaseUnavailable(error: unknown): boolean {
  for (const { code, message } of causeChain(error)) {
    if (typeof code === 'string') {
      if (code.startsWith('08') && code.length === 5) return true;
      if (unavailableStates.has(code) || unavailableCodes.has(code)) return true;
    }
    if (
      code === undefined &&
      typeof message === 'string' &&
      codelessDriverTexts.some((text) => message.includes(text))
    ) {
      return true;
    }
  }
  return false;
}

/**
 * node-postgres's pool gave up waiting for one of its connections to come free: every
 * one was in use for the whole connect timeout. Taken as unavailable too (nothing is
 * wrong with the statement), but said apart: it is usually a pool too small for the
 * work, not an outage.
 */
export function waitedForPool(error: unknown): boolean {
  for (const { message } of causeChain(error)) {
    if (typeof message === 'string' && message.includes(poolWaitText)) return true;
  }
  return false;
}
