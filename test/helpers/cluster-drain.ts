/**
 * What the broker-cluster tests share: the schema and cluster of the file, the backlog
 * (StepTaken events over many walks, enqueued before the dispatcher starts) and `run`
 * draining it, the check of what was read back, and the table they print.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { createOutbox } from '../../src/index.js';
import { type CliProcess, killChildren, spawnCli } from './cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './db.js';
import { StepTaken } from './outbox.js';

/**
 * A cluster test file's schema and cluster: both started before its tests (within
 * `startTimeoutMs`, else the hook timeout), removed after them with every CLI process the
 * file spawned. Read them inside a test: they are set once the hook has run.
 */
export function clusterDrainFixture<Cluster extends { destroy(): Promise<void> }>(
  schemaPrefix: string,
  startCluster: () => Promise<Cluster>,
  startTimeoutMs?: number,
): { readonly t: TestSchema; readonly cluster: Cluster } {
  const fixture = {} as { t: TestSchema; cluster: Cluster };
  beforeAll(async () => {
    [fixture.t, fixture.cluster] = await Promise.all([
      createPgTestSchema(schemaPrefix),
      startCluster(),
    ]);
  }, startTimeoutMs);
  afterAll(async () => {
    await killChildren();
    await fixture.cluster?.destroy();
    await fixture.t?.drop();
  });
  return fixture;
}

/** The backlog: StepTaken events over walks w0…w199, steps 0, 1, 2… of each. */
export const DRAIN_EVENTS = 20_000;
const WALKS = 200;

/**
 * Enqueues the backlog (in transactions of 2,000 events, each walk's steps in order),
 * then starts `run` on `broker` with batches of 200 (and `options`, flags of `run`).
 */
export async function startDrain(
  t: TestSchema,
  broker: string,
  options: readonly string[] = [],
): Promise<CliProcess> {
  const outbox = createOutbox({ schema: t.schema });
  for (let from = 0; from < DRAIN_EVENTS / WALKS; from += 10) {
    await t.db.transaction((tx) =>
      outbox.enqueue(
        tx,
        Array.from({ length: WALKS * 10 }, (_, i) =>
          StepTaken.create({ walk: `w${i % WALKS}`, n: from + Math.floor(i / WALKS) }),
        ),
      ),
    );
  }
  return spawnCli(
    ['run', '--schema', t.schema, '--broker', broker, '--batch-size', '200', ...options],
    { env: { DATABASE_URL: PG_URL } },
  );
}

/** Rows still in the outbox, counting those a batch in flight has claimed. */
export async function outboxRows(t: TestSchema): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${t.schema}".outbox`,
  );
  return rows[0]?.n ?? 0;
}

/**
 * Waits until a third of the backlog has been published (the outbox asked, not the broker:
 * one query on an open pool answers within the 20 ms between looks, where a broker client
 * connecting per look may miss the whole drain), then pauses `run` with SIGSTOP, so the
 * test can read the cluster and kill a node before the dispatcher publishes the rest.
 * The caller resumes it with SIGCONT.
 */
export async function pauseAfterAThird(run: CliProcess, t: TestSchema): Promise<void> {
  await run.waitFor(
    'a third of the events published',
    async () => (await outboxRows(t)) <= DRAIN_EVENTS - DRAIN_EVENTS / 3,
    60_000,
  );
  run.child.kill('SIGSTOP');
}

/** Waits until the outbox is empty, then stops `run` with SIGTERM: it must exit 0. */
export async function finishDrain(run: CliProcess, t: TestSchema): Promise<void> {
  await run.waitFor('the outbox drained', async () => (await outboxRows(t)) === 0, 90_000);
  run.child.kill('SIGTERM');
  expect((await run.exited).code).toBe(0);
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
    sent: DRAIN_EVENTS,
    received: messages.length,
    lost: DRAIN_EVENTS - ids.size,
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
