/**
 * What the broker-cluster tests share: the backlog (StepTaken events over many walks,
 * enqueued before the dispatcher starts), the check of what was read back, and the table
 * they print.
 */
import { createOutbox } from '../../src/index.js';
import type { TestSchema } from './db.js';
import { StepTaken } from './outbox.js';

/** Enqueues `events` StepTaken events: walks w0…w<walks-1>, steps 0, 1, 2… of each in order. */
export async function enqueueWalks(t: TestSchema, events: number, walks: number): Promise<void> {
  const outbox = createOutbox({ schema: t.schema });
  const perWalk = events / walks;
  for (let from = 0; from < perWalk; from += 10) {
    await t.db.transaction((tx) =>
      outbox.enqueue(
        tx,
        Array.from({ length: walks * 10 }, (_, i) =>
          StepTaken.create({ walk: `w${i % walks}`, n: from + Math.floor(i / walks) }),
        ),
      ),
    );
  }
}

/** The count of rows left in the test schema's outbox. */
export async function outboxCount(t: TestSchema): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${t.schema}".outbox`,
  );
  return rows[0]?.n ?? -1;
}

export interface DrainSummary {
  sent: number;
  received: number;
  lost: number;
  outOfOrder: number;
  duplicates: number;
  recoverySeconds: number;
}

/**
 * Counts what a reader got, message by message in the order one walk's messages were
 * stored: an event id seen before is a duplicate; a new event whose step is not above the
 * walk's highest step so far is out of order. A duplicate is not also out of order: it
 * repeats an event already delivered in its place, which a consumer's inbox drops.
 */
export function summarizeDrain(
  sent: number,
  messages: readonly { id: string; body: string }[],
  recoveryMs: number,
): DrainSummary {
  const ids = new Set<string>();
  const lastStep = new Map<string, number>();
  let outOfOrder = 0;
  let duplicates = 0;
  for (const message of messages) {
    if (ids.has(message.id)) {
      duplicates++;
      continue;
    }
    ids.add(message.id);
    const { walk, n } = JSON.parse(message.body) as { walk: string; n: number };
    if ((lastStep.get(walk) ?? -1) >= n) outOfOrder++;
    lastStep.set(walk, Math.max(n, lastStep.get(walk) ?? -1));
  }
  return {
    sent,
    received: messages.length,
    lost: sent - ids.size,
    outOfOrder,
    duplicates,
    recoverySeconds: Number((recoveryMs / 1000).toFixed(1)),
  };
}

/** The summary as the markdown table the cluster tests print. */
export function printDrainSummary(summary: DrainSummary): void {
  console.log(
    [
      '| sent | received | lost | out of order | duplicates | recovery s |',
      '|------|----------|------|--------------|------------|------------|',
      `| ${Object.values(summary).join(' | ')} |`,
    ].join('\n'),
  );
}
