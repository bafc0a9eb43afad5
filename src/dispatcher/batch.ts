import type { EventBroker, PublishResult } from '../brokers/broker.js';
import type { OutboxMessage } from '../events/cloudevents.js';

/** What a batch's publishing decided for each row; rows in none of these stay untouched. */
export interface BatchOutcome {
  published: OutboxMessage[];
  failed: { message: OutboxMessage; error: string; permanent: boolean }[];
  /** Later events of an aggregate whose earlier event failed in this batch: left for later. */
  held: OutboxMessage[];
}

/**
 * Publishes claimed rows (ordered by seq) so that one aggregate's events reach the broker
 * in order: round k sends the k-th event of every aggregate, in parallel; an aggregate
 * whose event failed sends nothing more in this batch. Other aggregates are not held back.
 */
export async function publishInRounds(
  broker: EventBroker,
  messages: readonly OutboxMessage[],
  publish: (round: readonly OutboxMessage[]) => Promise<PublishResult[]> = (round) =>
    broker.publish(round),
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
    const round = live.map((chain) => chain[k] as OutboxMessage);
    const results = await publish(round);
    const next: OutboxMessage[][] = [];
    round.forEach((message, i) => {
      const result = results[i] ?? {
        ok: false,
        error: 'broker returned no result',
        permanent: false,
      };
      const chain = live[i] as OutboxMessage[];
      if (result.ok) {
        outcome.published.push(message);
        if (chain.length > k + 1) next.push(chain);
      } else {
        outcome.failed.push({ message, error: result.error, permanent: result.permanent });
        outcome.held.push(...chain.slice(k + 1));
      }
    });
    live = next;
  }
  return outcome;
}
