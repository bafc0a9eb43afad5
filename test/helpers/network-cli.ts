/**
 * The CLI as the network suite drives it: every command's output kept, for the check at
 * the end of a file that none of it held a secret; `run` against a test schema and a
 * broker URL; a clean stop; the one error line of a command that refused to start.
 */
import { expect } from 'vitest';
import { consume } from '../../src/consumer/index.js';
import { LessonPublished } from '../../src/index.js';
import { type CliProcess, type CliResult, lines, runCli, spawnCli } from './cli.js';
import { PG_URL, type TestSchema } from './db.js';
import { enqueueLesson, outboxIds } from './outbox.js';
import { waitFor } from './wait.js';

export interface RecordedCli {
  /** stdout and stderr of every command run through `cli` or stopped by `stopCleanly`. */
  readonly outputs: string[];
  /** The CLI to completion, its output kept. */
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  /** SIGTERM, then a clean stop (exit 0); the output is kept. */
  stopCleanly(run: CliProcess): Promise<void>;
}

export function recordedCli(): RecordedCli {
  const outputs: string[] = [];
  return {
    outputs,
    async cli(args, timeoutMs = 60_000) {
      const result = await runCli(args, { timeoutMs });
      outputs.push(result.stdout, result.stderr);
      return result;
    },
    async stopCleanly(run) {
      run.child.kill('SIGTERM');
      const result = await run.exited;
      outputs.push(result.stdout, result.stderr);
      expect(result.code).toBe(0);
    },
  };
}

/**
 * `run` on `schema` with `broker`, retrying after 100 ms; verbose (debug logs and stacks:
 * the most output to sweep) unless told.
 */
export function runArgs(
  schema: string,
  broker: string,
  { verbose = true, extra = [] }: { verbose?: boolean; extra?: string[] } = {},
): string[] {
  return [
    'run',
    '--database-url',
    PG_URL,
    '--schema',
    schema,
    '--broker',
    broker,
    '--retry-base-delay-ms',
    '100',
    ...extra,
    ...(verbose ? ['--verbose'] : []),
  ];
}

/** The CLI's one error line, among the dispatcher's JSON log lines and (verbose) the stack. */
export function errorLine(result: CliResult): string {
  const errors = lines(result.stderr).filter((line) => line.startsWith('edupulse-outbox: '));
  expect(errors).toHaveLength(1);
  return errors[0] ?? '';
}

/**
 * Five lesson events enqueued, consume() on `broker` as `consumer`, and `run` publishing
 * with `runBroker` (the same URL unless given: a user of its own) until the consumer has
 * received every one; both stopped after.
 */
export async function consumeWhileRunPublishes(
  t: TestSchema,
  broker: string,
  consumer: string,
  recorded: RecordedCli,
  runBroker = broker,
): Promise<void> {
  for (let n = 0; n < 5; n++) await enqueueLesson(t);
  const ids = await outboxIds(t);
  const received: string[] = [];
  const running = await consume({
    broker,
    consumer,
    database: t.db,
    schema: t.schema,
    events: [LessonPublished],
    handler: (event) => {
      received.push(event.id);
    },
  });
  try {
    const run = spawnCli(runArgs(t.schema, runBroker));
    await waitFor('the consumer to receive every event', () => received.length >= ids.length, {
      timeoutMs: 90_000,
    });
    await recorded.stopCleanly(run);
  } finally {
    await running.stop();
  }
  expect([...new Set(received)].sort()).toEqual([...ids].sort());
}

/** The events left in the outbox and the dead letters, by count. */
export async function outboxRows(t: TestSchema): Promise<{ pending: number; dead: number }> {
  const count = async (table: string) =>
    Number((await t.db.query(`SELECT count(*) AS n FROM "${t.schema}".${table}`)).rows[0]?.n);
  return { pending: await count('outbox'), dead: await count('outbox_dead_letter') };
}

/** consume() with a URL the broker refuses: the promise, for the test to check its rejection. */
export function consumeRefused(t: TestSchema, broker: string): Promise<unknown> {
  return consume({
    broker,
    consumer: 'refused',
    database: t.db,
    schema: t.schema,
    events: [LessonPublished],
    handler: () => {},
  });
}
