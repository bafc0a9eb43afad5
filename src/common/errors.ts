import { inspect } from 'node:util';

/**
 * The error classes callers can branch on. Each carries a stable `code`; messages are for
 * people and may change.
 */
export class OutboxError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A setting has a value the library cannot use. `setting` names it as the user wrote it. */
export class ConfigError extends OutboxError {
  readonly setting: string;
  constructor(setting: string, message: string, options?: ErrorOptions) {
    super('CONFIG', `${setting}: ${message}`, options);
    this.setting = setting;
  }
}

/**
 * The same refusal under the name the caller knows the setting by (`dispatcher.batchSize`
 * for the `batchSize` of the dispatcher options it gave), the original as its cause.
 */
export function renamedSetting(error: ConfigError, setting: string): ConfigError {
  return new ConfigError(setting, error.message.slice(`${error.setting}: `.length), {
    cause: error,
  });
}

/** An event was refused before anything was written. `path` is the failing field, e.g. `payload.score`. */
export class ValidationError extends OutboxError {
  readonly path: string;
  constructor(path: string, message: string, options?: ErrorOptions) {
    super('VALIDATION', `${path}: ${message}`, options);
    this.path = path;
  }
}

/** The broker could not be reached or refused the whole batch; no event was counted as attempted. */
export class BrokerUnavailableError extends OutboxError {
  constructor(message: string, options?: ErrorOptions) {
    super('BROKER_UNAVAILABLE', message, options);
  }
}

/** The database schema is older (or newer) than this version of the library expects. */
export class SchemaVersionError extends OutboxError {
  constructor(message: string, options?: ErrorOptions) {
    super('SCHEMA_VERSION', message, options);
  }
}

/**
 * PostgreSQL refused the role a privilege this part of the library needs (a table it may
 * not read or write, a schema it may not use, row-level security hiding rows from it).
 * A configuration error like ConfigError: retrying cannot help until someone grants it.
 * `role` is the refused role when known; `missing` lists what to grant, e.g.
 * `DELETE ON TABLE "s".outbox`, when the library could tell.
 */
export class PrivilegeError extends OutboxError {
  readonly role: string | undefined;
  readonly missing: readonly string[];
  constructor(
    message: string,
    details: { role?: string | undefined; missing?: readonly string[] } = {},
    options?: ErrorOptions,
  ) {
    super('PRIVILEGE', message, options);
    this.role = details.role;
    this.missing = details.missing ?? [];
  }
}

/** The longest text errorMessage makes of a thrown object that is not an Error. */
const THROWN_OBJECT_CHARS = 500;

/**
 * `new Error(…)` text of anything thrown, for logs and `last_error`: an object's string
 * `message`, else its JSON. Never throws itself, whatever was thrown (a getter that
 * throws, an object without a prototype, a revoked proxy).
 */
export function errorMessage(error: unknown): string {
  try {
    if (error instanceof Error) return error.message || error.name;
    if (typeof error === 'object' && error !== null) {
      const { message } = error as { message?: unknown };
      if (typeof message === 'string' && message !== '') return message;
      const text = jsonOf(error);
      if (text !== '{}') {
        return text.length > THROWN_OBJECT_CHARS ? `${text.slice(0, THROWN_OBJECT_CHARS)}…` : text;
      }
    }
    return String(error);
  } catch {
    return UNREADABLE_THROWN;
  }
}

/** What errorMessage says of a value that throws when read. */
export const UNREADABLE_THROWN = 'a thrown value that cannot be read';

/** An object as JSON, or as Node prints it where JSON cannot carry it (a cycle, a BigInt). */
function jsonOf(value: object): string {
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch {}
  return inspect(value, { depth: 2, breakLength: Number.POSITIVE_INFINITY });
}
