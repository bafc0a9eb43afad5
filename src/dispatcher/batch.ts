import type { OutboxMessage } from '../brokers/broker.js';
import type { Database } from '../db/database.js';
import { pgArray, type Statements } from '../db/sql/index.js';
import type { BrokerLink } from './broker-link.js';
import { markDatabaseErrors } from './database-errors.js';
import type { SettledBatch } from './events.js';
import { claimWithinHorizon } from './horizon.js';
import { type ClaimedRow, toMessage } from './message.js';
import { publishTraced } from './publish-span.js';
import { publishInRounds, ROUNDS_BUDGET_MS } from './rounds.js';
import { type Settlement, type SettlePolicy, settle } from './settle.js';

/** What a batch needs from its dispatcher. */
export interface BatchContext extends SettlePolicy {
  db: Database;
  sql: Statements;
  schema: string;
  batchSize: number;
  onDeadLetter: 'continue' | 'hold';
  link: BrokerLink;
}

/** A committed batch: its settlement, and when the broker had answered. */
export interface CommittedBatch extends Settlement {
  events: SettledBatch;
}

/** A row the claim returns: to publish, or held back (see outboxClaim). */
type CandidateRow = ClaimedRow & { held: boolean; passed_over: boolean; restores: string };

/** What the lane knows before a claim from its cursor (see Lane.clean). */
export interface ClaimLook {
  /** No row of the partitions lies below the cursor: candidates' order needs no probes. */
  trusted: boolean;
  /** The count of restores (`dead retry`) the lane last saw. */
  restores: string;
}

/** What one claim found: the batch it committed, if any. */
export interface BatchResult {
  committed: CommittedBatch | undefined;
  /**
   * An open writing transaction bounded one of the partitions claimed from: events it
   * holds back become claimable when it commits, which moves no sequence, so the lane
   * looks again by itself soon.
   */
  writersOpen: boolean;
  /**
   * An earlier event of an aggregate claimed here is in another claim (another dispatcher's
   * during a handover, or another lane's), so its later events were held back. That claim's
   * end moves no sequence either: the lane looks again by itself soon.
   */
  claimedElsewhere: boolean;
  /** Some event (of any partition) waits for its retry: the lane keeps polling for it. */
  retrying: boolean;
  /**
   * The rows the claim returned, held back ones included, and the last one's seq: a claim
   * that filled its batch goes on after it, though every row in it was held back.
   */
  returned: number;
  lastReturnedSeq: string | undefined;
  /**
   * When the claim returned rows: whether rows of its partitions may now lie below its
   * last one (it passed some over, or checked every candidate's aggregate because it
   * could not tell), and the count of restores it read.
   */
  seen?: { passedOver: boolean; restores: string };
}

/**
 * One transaction: claim, publish, settle. A crash or error before COMMIT returns every
 * claimed row to the outbox. `committed` is undefined when nothing was claimable.
 */
export async function dispatchBatch(
  context: BatchContext,
  partitions: readonly number[],
  from: string,
  look: ClaimLook = { trusted: false, restores: '0' },
): Promise<BatchResult> {
  const { db, sql, batchSize, onDeadLetter, link } = context;
  if (partitions.length === 0) {
    return {
      committed: undefined,
      writersOpen: false,
      claimedElsewhere: false,
      retrying: false,
      returned: 0,
      lastReturnedSeq: undefined,
    };
  }
  let writersOpen = false;
  let claimedElsewhere = false;
  let retrying = false;
  let seen: BatchResult['seen'];
  let returned = 0;
  let lastReturnedSeq: string | undefined;
  const committed = await markDatabaseErrors(db, async (tx) => {
    const deadline = Date.now() + ROUNDS_BUDGET_MS;
    const claim = onDeadLetter === 'hold' ? sql.outboxClaimHoldingDeadLetters : sql.outboxClaim;
    const claimed = await claimWithinHorizon<CandidateRow>(tx, sql, claim, [
      batchSize,
      pgArray(partitions),
      from,
      look.trusted ? '1' : '0',
      look.restores,
    ]);
    returned = claimed.rows.length;
    lastReturnedSeq = claimed.rows.at(-1)?.seq;
    const first = claimed.rows[0];
    if (first) seen = { passedOver: first.passed_over, restores: first.restores };
    const { horizon } = claimed;
    writersOpen = horizon.bounded.size > 0 && partitions.some((p) => horizon.bounded.has(p));
    retrying = horizon.retrying;
    const rows = claimed.rows.filter((row) => !row.held);
    claimedElsewhere = rows.length < claimed.rows.length;
    if (rows.length === 0) return undefined;
    const { messages, problems } = checkRows(rows, link);
    const outcome = await publishInRounds(
      link.name,
      messages,
      (round) => publishTraced(link.name, round, (traced) => link.publish(traced)),
      problems,
      deadline,
    );
    const acknowledgedAt = Date.now();
    const settlement = await settle(tx, sql, rows.length, outcome, context);
    // What this batch scheduled for a retry waits too.
    if (settlement.report.retried > 0) retrying = true;
    return { ...settlement, events: { ...settlement.events, acknowledgedAt } };
  });
  return {
    committed,
    writersOpen,
    claimedElsewhere,
    retrying,
    returned,
    lastReturnedSeq,
    ...(seen ? { seen } : {}),
  };
}

/**
 * The claimed rows as messages, and by seq why a row can never be published: unfit as a
 * CloudEvent (toMessage), or unfit for this broker (its `validate`).
 */
function checkRows(
  rows: readonly ClaimedRow[],
  link: BrokerLink,
): { messages: OutboxMessage[]; problems: Map<string, string> } {
  const messages: OutboxMessage[] = [];
  const problems = new Map<string, string>();
  for (const row of rows) {
    const { message, problem } = toMessage(row);
    messages.push(message);
    let refusal = problem;
    try {
      refusal ??= link.validate(message);
    } catch {
      // A check that throws decides nothing: publishing will tell.
    }
    if (refusal) problems.set(message.seq, refusal);
  }
  return { messages, problems };
}
