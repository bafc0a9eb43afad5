import { ConfigError } from '../common/errors.js';
import { escapeControl } from '../common/text.js';

// Lower-case, unquoted-style identifiers only: they need no case folding rules, and the
// longest one leaves room for the derived names (`<schema>.outbox_dead_letter`, the
// NOTIFY channel `edupulse_outbox_<schema>`) inside PostgreSQL's 63-byte limit.
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,39}$/;

// PostgreSQL keeps pg_* for its own schemas (pg_catalog, pg_temp, pg_toast, …) and refuses
// to create one; information_schema is the SQL standard's. Tables there would not be ours.
const RESERVED = /^(pg_|information_schema$)/;

/** Validates a schema name given by `setting` and returns it double-quoted for SQL. */
export function quoteSchema(name: string, setting = 'schema'): string {
  if (!IDENTIFIER.test(name)) {
    throw new ConfigError(
      setting,
      `"${escapeControl(name)}" is not a valid schema name (lower-case letters, digits and _; starts with a letter or _; at most 40 characters)`,
    );
  }
  if (RESERVED.test(name)) {
    throw new ConfigError(
      setting,
      `"${name}" is reserved by PostgreSQL (names starting with pg_, and information_schema)`,
    );
  }
  return `"${name}"`;
}

/** The NOTIFY channel the outbox trigger signals for a schema. */
export function notifyChannel(schema: string): string {
  quoteSchema(schema);
  return `edupulse_outbox_${schema}`;
}
