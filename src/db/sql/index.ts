/**
 * Every statement the runtime sends, named entity-first (outbox…, deadLetter…, inbox…,
 * consumer…, ownership…, privilege…, migration…), one file per entity, built per schema. Values are always
 * bound parameters; the schema is a validated, quoted identifier.
 */
import { quoteSchema } from '../identifier.js';
import {
  type ConsumerDeadLetterStatements,
  consumerDeadLetterStatements,
} from './consumer-dead-letter.js';
import { type DeadLetterStatements, deadLetterStatements } from './dead-letter.js';
import { type InboxStatements, inboxStatements } from './inbox.js';
import { type MigrationStatements, migrationStatements } from './migration.js';
import { type OutboxStatements, outboxStatements } from './outbox.js';
import { type OwnershipStatements, ownershipStatements } from './ownership.js';
import { type PrivilegeStatements, privilegeStatements } from './privilege.js';

export { deadLetterJanitorLockKey, migrationLockKey, pgArray, pgTextArray } from './fragments.js';

/** Proves a connection answers (the CLI's first statement on a database URL). */
export const connectionCheck = 'SELECT 1';

export interface Statements
  extends OutboxStatements,
    DeadLetterStatements,
    InboxStatements,
    ConsumerDeadLetterStatements,
    OwnershipStatements,
    PrivilegeStatements,
    MigrationStatements {}

export function statements(schema: string): Statements {
  const s = quoteSchema(schema);
  return {
    ...outboxStatements(s, schema),
    ...deadLetterStatements(s),
    ...inboxStatements(s, schema),
    ...consumerDeadLetterStatements(s),
    ...ownershipStatements(),
    ...privilegeStatements(),
    ...migrationStatements(s),
  };
}
