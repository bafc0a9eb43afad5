/**
 * The privileges each part of the library needs on the schema's objects, so that a role
 * given less is told at start what to grant, instead of failing batch after batch.
 * docs/operations.md ("Least-privilege roles") prints these as GRANT statements, and a
 * test runs every command with exactly those.
 */
import { PrivilegeError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Executor } from './executor.js';
import { quoteSchema } from './identifier.js';
import { hasSqlState } from './missing-table.js';
import { statements } from './sql/index.js';

/** SQLSTATE insufficient_privilege: a privilege, an ownership or a row-level security policy refused. */
export const INSUFFICIENT_PRIVILEGE = '42501';

export interface Grant {
  on: 'schema' | 'table' | 'sequence';
  /** The table or sequence; absent for the schema itself. */
  name?: string;
  privileges: readonly string[];
}

const SCHEMA: Grant = { on: 'schema', privileges: ['USAGE'] };

/**
 * What each part needs. `dispatch-retention` and `inbox-retention` come on top of
 * `dispatch` and `inbox` where dead letters or inbox records expire (the purges lock the
 * rows they delete, which takes UPDATE).
 */
export const PRIVILEGES = {
  /** `enqueue` and raw-SQL producers: the insert trigger draws the seq and reads the sequence. */
  enqueue: [
    SCHEMA,
    { on: 'table', name: 'outbox', privileges: ['INSERT'] },
    { on: 'sequence', name: 'outbox_write_seq', privileges: ['USAGE'] },
  ],
  /** `run`, `createDispatcher`: claim, publish, settle, dead-letter; the endpoints' counts. */
  dispatch: [
    SCHEMA,
    { on: 'table', name: 'outbox_migrations', privileges: ['SELECT'] },
    { on: 'table', name: 'outbox_settings', privileges: ['SELECT'] },
    { on: 'table', name: 'outbox', privileges: ['SELECT', 'UPDATE', 'DELETE'] },
    { on: 'table', name: 'outbox_dead_letter', privileges: ['SELECT', 'INSERT'] },
    { on: 'sequence', name: 'outbox_write_seq', privileges: ['SELECT'] },
    { on: 'sequence', name: 'outbox_restore_seq', privileges: ['SELECT'] },
  ],
  'dispatch-retention': [
    { on: 'table', name: 'outbox_dead_letter', privileges: ['UPDATE', 'DELETE'] },
  ],
  /** `consume()`: the schema check, parking messages and taking back the ones to retry. */
  consume: [
    SCHEMA,
    { on: 'table', name: 'outbox_migrations', privileges: ['SELECT'] },
    {
      on: 'table',
      name: 'consumer_dead_letter',
      privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    },
  ],
  /** `consume()` on NATS: where it resumes when its durable consumer is re-created. */
  'consume-nats': [
    {
      on: 'table',
      name: 'consumer_resume',
      privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    },
  ],
  /** `inbox.process` in the handler's transaction. */
  inbox: [
    SCHEMA,
    { on: 'table', name: 'inbox', privileges: ['SELECT', 'INSERT'] },
    { on: 'table', name: 'inbox_mark', privileges: ['SELECT', 'INSERT', 'UPDATE'] },
  ],
  'inbox-retention': [{ on: 'table', name: 'inbox', privileges: ['DELETE'] }],
  /** `status`, `dead list|show|groups` (also `--consumer`), what `ui` shows. */
  observe: [
    SCHEMA,
    { on: 'table', name: 'outbox_migrations', privileges: ['SELECT'] },
    { on: 'table', name: 'outbox_settings', privileges: ['SELECT'] },
    { on: 'table', name: 'outbox', privileges: ['SELECT'] },
    { on: 'table', name: 'outbox_dead_letter', privileges: ['SELECT'] },
    { on: 'table', name: 'consumer_dead_letter', privileges: ['SELECT'] },
  ],
  /**
   * On top of `observe`: `dead retry|discard` (also `--consumer`), `purge`, `inbox purge`,
   * the console's retry and discard.
   */
  operate: [
    { on: 'table', name: 'outbox', privileges: ['INSERT'] },
    { on: 'table', name: 'outbox_dead_letter', privileges: ['UPDATE', 'DELETE'] },
    { on: 'table', name: 'consumer_dead_letter', privileges: ['UPDATE', 'DELETE'] },
    { on: 'table', name: 'inbox', privileges: ['SELECT', 'DELETE'] },
    { on: 'sequence', name: 'outbox_write_seq', privileges: ['USAGE'] },
    { on: 'sequence', name: 'outbox_restore_seq', privileges: ['USAGE'] },
  ],
} as const satisfies Record<string, readonly Grant[]>;

export type PrivilegedPart = keyof typeof PRIVILEGES;

/** Who does what, for messages: "the dispatcher needs …". */
const DOER: Record<PrivilegedPart, string> = {
  enqueue: 'enqueue',
  dispatch: 'the dispatcher',
  'dispatch-retention': 'the dispatcher with dead-letter retention',
  consume: 'consume()',
  'consume-nats': 'consume() on NATS',
  inbox: 'the inbox',
  'inbox-retention': 'the consumer with inbox retention',
  observe: 'the admin commands',
  operate: 'the admin commands that retry, discard or purge',
};

const GUIDE = 'docs/operations.md, "Least-privilege roles"';

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

function grantObject(schema: string, grant: Grant): string {
  const s = quoteSchema(schema);
  if (grant.on === 'schema') return `SCHEMA ${s}`;
  return `${grant.on === 'sequence' ? 'SEQUENCE ' : ''}${s}.${grant.name}`;
}

/** The GRANT statements that give `role` what `parts` need on `schema`, one per object. */
export function grantStatements(
  schema: string,
  role: string,
  parts: readonly PrivilegedPart[],
): string[] {
  const merged = new Map<string, Set<string>>();
  for (const part of parts) {
    for (const grant of PRIVILEGES[part] as readonly Grant[]) {
      const object = grantObject(schema, grant);
      const privileges = merged.get(object) ?? new Set<string>();
      for (const privilege of grant.privileges) privileges.add(privilege);
      merged.set(object, privileges);
    }
  }
  return [...merged].map(
    ([object, privileges]) =>
      `GRANT ${[...privileges].join(', ')} ON ${object} TO ${quoteIdent(role)};`,
  );
}

interface MissingRow {
  role: string;
  kind: 'schema' | 'table' | 'sequence' | 'row security';
  name: string | null;
  privilege: string;
}

/** What `checkPrivileges` finds: the grants missing, and the tables row-level security filters. */
export interface PrivilegeCheck {
  /** The role and the GRANT statements to run; undefined when nothing is missing. */
  missing: PrivilegeError | undefined;
  /** `"schema".table` of each table a row-level security policy applies to for the role. */
  rowSecurity: string[];
}

/**
 * What the current role lacks of what `parts` need on `schema`, and where row-level
 * security applies to it. Objects not there yet are left to the schema version check.
 */
export async function checkPrivileges(
  db: Executor,
  schema: string,
  parts: readonly PrivilegedPart[],
  cause?: unknown,
): Promise<PrivilegeCheck> {
  const needed = parts.flatMap((part) =>
    (PRIVILEGES[part] as readonly Grant[]).flatMap((grant) =>
      grant.privileges.map((privilege) => ({
        kind: grant.on,
        name: grant.name ?? schema,
        privilege,
      })),
    ),
  );
  const { rows } = await db.query<MissingRow>(statements(schema).privilegeMissing, [
    schema,
    JSON.stringify(needed),
  ]);
  const rowSecurity = rows
    .filter((row) => row.kind === 'row security')
    .map((row) => `"${schema}".${row.name}`);
  const lacking = rows.filter((row) => row.kind !== 'row security');
  const role = lacking[0]?.role;
  if (role === undefined) return { missing: undefined, rowSecurity };
  const doer = DOER[parts[0] as PrivilegedPart];
  const byObject = new Map<string, string[]>();
  for (const row of lacking) {
    const grant: Grant =
      row.kind === 'schema'
        ? { on: 'schema', privileges: [] }
        : { on: row.kind as 'table' | 'sequence', name: row.name ?? '', privileges: [] };
    const object = grantObject(schema, grant);
    byObject.set(object, [...(byObject.get(object) ?? []), row.privilege]);
  }
  const missing = [...byObject].map(
    ([object, privileges]) => `${privileges.join(', ')} ON ${object}`,
  );
  return {
    missing: new PrivilegeError(
      `role "${role}" lacks privileges needed by ${doer} in schema "${schema}": ${missing
        .map((what) => `GRANT ${what} TO ${quoteIdent(role)};`)
        .join(' ')} See ${GUIDE}`,
      { role, missing },
      { cause },
    ),
    rowSecurity,
  };
}

/** The PrivilegeError naming what the current role lacks of what `parts` need, if anything. */
export async function missingPrivileges(
  db: Executor,
  schema: string,
  parts: readonly PrivilegedPart[],
  cause?: unknown,
): Promise<PrivilegeError | undefined> {
  return (await checkPrivileges(db, schema, parts, cause)).missing;
}

/**
 * At start: throws the PrivilegeError of what the role lacks, if anything. A policy may
 * let the role see every row, so row-level security is a warning, not a refusal: rows a
 * policy hides from the dispatcher are never published, and from a consumer's role its
 * own dead letters or inbox records go unseen.
 */
export async function assertPrivileges(
  db: Executor,
  schema: string,
  parts: readonly PrivilegedPart[],
  logger: Pick<Logger, 'warn'>,
): Promise<void> {
  const { missing, rowSecurity } = await checkPrivileges(db, schema, parts);
  if (missing) throw missing;
  if (rowSecurity.length > 0) {
    logger.warn(
      { tables: rowSecurity },
      `row-level security applies to this role on ${rowSecurity.join(', ')}: rows its policies hide are never handled by ${DOER[parts[0] as PrivilegedPart]}; unless a policy lets the role see every row, disable it on these tables or give the role BYPASSRLS (${GUIDE})`,
    );
  }
}

/**
 * A statement refused for want of a privilege, in a transaction that can ask nothing more
 * (the caller's, aborted by the refusal): PostgreSQL's message and what `part` needs, as a
 * PrivilegeError. Any other error: undefined.
 */
export function refusedPrivilege(
  error: unknown,
  schema: string,
  part: PrivilegedPart,
): PrivilegeError | undefined {
  if (!hasSqlState(error, INSUFFICIENT_PRIVILEGE)) return undefined;
  const message = error instanceof Error ? error.message : String(error);
  const needs = (PRIVILEGES[part] as readonly Grant[])
    .map((grant) => `${grant.privileges.join(', ')} ON ${grantObject(schema, grant)}`)
    .join('; ');
  return new PrivilegeError(
    `${message}: ${DOER[part]} needs ${needs} (${GUIDE})`,
    { missing: [] },
    { cause: error },
  );
}

/**
 * A statement refused for want of a privilege, on a database that can still be asked: as
 * `missingPrivileges` says it (the role, the grants), or PostgreSQL's message with the
 * role's name when the check finds nothing missing (an ownership, a function). Any other
 * error: undefined.
 */
export async function privilegeErrorOf(
  error: unknown,
  db: Executor,
  schema: string,
  parts: readonly PrivilegedPart[],
): Promise<PrivilegeError | undefined> {
  if (!hasSqlState(error, INSUFFICIENT_PRIVILEGE)) return undefined;
  const found = await missingPrivileges(db, schema, parts, error).catch(() => undefined);
  if (found) return found;
  const { rows } = await db
    .query<{ role: string }>(statements(schema).privilegeRole)
    .catch(() => ({ rows: [] as { role: string }[] }));
  const role = rows[0]?.role;
  const message = error instanceof Error ? error.message : String(error);
  // A refusal of ours (the inbox's) names the guide already.
  const guide = message.includes(GUIDE) ? '' : ` (${GUIDE})`;
  return new PrivilegeError(
    `${role === undefined ? '' : `role "${role}": `}${message}${guide}`,
    { role },
    { cause: error },
  );
}
