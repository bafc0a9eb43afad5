import type { OutboxMessage, PublishResult } from '../brokers/broker.js';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../common/errors.js';

/** One message the batch could not publish. */
export interface FailedMessage {
  message: OutboxMessage;
  error: string;
  /** The broker refused the message itself (see PublishResult). */
  permanent: boolean;
  /** The row can never become a publishable message: dead-letter it now, not after retries. */
  invalid?: boolean;
}

/** What a batch's publishing decided for each row; rows in none of these stay untouched. */
export interface BatchOutcome {
  published: OutboxMessage[];
  failed: FailedMessage[];
  /**
   * Events left for a later batch, untouched: later events of an aggregate whose earlier
   * event failed in this batch, and those the batch had no time left for (ROUNDS_BUDGET_MS).
   */
  held: OutboxMessage[];
}

/**
 * How long a batch starts new rounds for. The batch is one transaction, idle between its
 * claim and its settle while the rounds run, and PostgreSQL ends a transaction idle for
 * five minutes (the pool's idle_in_transaction_session_timeout): a long chain of one
 * aggregate behind a slow broker (500 rounds of 0.6 s) would lose its batch every time and
 * publish it again and again. A round started within the budget ends within twice
 * publishTimeoutMs (at most 120 s; twice when an adapter's error has it sent again one
 * message per call), so the settle comes before that; what is left is claimed again at
 * once, in order, by the next batch.
 */
export const ROUNDS_BUDGET_MS = 45_000;

type Publish = (round: readonly OutboxMessage[]) => Promise<PublishResult[]>;

/**
 * Publishes claimed rows (ordered by seq) so that one aggregate's events reach the broker
 * in order: round k sends the k-th event of every aggregate, in parallel; an aggregate
 * whose event failed sends nothing more in this batch. Other aggregates are not held back.
 * `problems` holds, by seq, the rows found unfit when claimed: they fail without being sent.
 * No round starts after `deadline` (a time in ms) but the first: the rest are held.
 */
export async function publishInRounds(
  brokerName: string,
  messages: readonly OutboxMessage[],
  publish: Publish,
  problems: ReadonlyMap<string, string> = new Map(),
  deadline = Number.POSITIVE_INFINITY,
): Promise<BatchOutcome> {
  const chains = new Map<string, OutboxMessage[]>();
  for (const message of messages) {
    const key = `${message.aggregateType}\u0000${message.aggregateId}`;
    const chain = chains.get(key);
    if (chain) chain.push(message);
    else chains.set(key, [message]);
  }
  const outcome: BatchOutcome = { published: [], failed: [], held: [] };
  let live = [...chains.values()];
  for (let k = 0; live.length > 0; k++) {
    // The first round always goes: a batch publishes something however slow the broker.
    if (k > 0 && Date.now() >= deadline) {
      for (const chain of live) outcome.held.push(...chain.slice(k));
      break;
    }
    const next: OutboxMessage[][] = [];
    const fail = (chain: OutboxMessage[], failure: FailedMessage) => {
      outcome.failed.push(failure);
      outcome.held.push(...chain.slice(k + 1));
    };
    const sending: OutboxMessage[][] = [];
    for (const chain of live) {
      const message = chain[k] as OutboxMessage;
      const problem = problems.get(message.seq);
      if (problem) fail(chain, { message, error: problem, permanent: true, invalid: true });
      else sending.push(chain);
    }
    const round = sending.map((chain) => chain[k] as OutboxMessage);
    const results = round.length > 0 ? await publishContained(brokerName, round, publish) : [];
    round.forEach((message, i) => {
      const result = results[i] ?? {
        ok: false,
        error: 'broker returned no result',
        permanent: false,
      };
      const chain = sending[i] as OutboxMessage[];
      if (result.ok) {
        outcome.published.push(message);
        if (chain.length > k + 1) next.push(chain);
      } else {
        fail(chain, { message, error: result.error, permanent: result.permanent });
      }
    });
    live = next;
  }
  return outcome;
}

/**
 * `publish(round)`, with whatever an adapter throws other than "the broker is unavailable"
 * or "the broker refuses its configuration" made a failure of the messages that caused
 * it: a round that throws is published again one message per call, and each message that
 * throws alone fails (retried, then dead-lettered) with the error. A bug an odd row
 * triggers in an adapter thus costs that row its attempts, not the batch a rollback.
 */
async function publishContained(
  brokerName: string,
  round: readonly OutboxMessage[],
  publish: Publish,
): Promise<PublishResult[]> {
  try {
    // Inside a promise: an adapter that throws instead of rejecting is caught too.
    return await Promise.resolve().then(() => publish(round));
  } catch (error) {
    if (isBrokerWide(error)) throw error;
    if (round.length === 1) return [adapterFailure(brokerName, error)];
  }
  return Promise.all(
    round.map(async (message) => {
      try {
        const [result] = await Promise.resolve().then(() => publish([message]));
        return result ?? adapterFailure(brokerName, new Error('no result'));
      } catch (error) {
        if (isBrokerWide(error)) throw error;
        return adapterFailure(brokerName, error);
      }
    }),
  );
}

function isBrokerWide(error: unknown): boolean {
  return error instanceof BrokerUnavailableError || error instanceof ConfigError;
}

function adapterFailure(brokerName: string, error: unknown): PublishResult {
  return {
    ok: false,
    permanent: false,
    error: `the ${brokerName} adapter failed on this event: ${errorMessage(error)}`,
  };
}
