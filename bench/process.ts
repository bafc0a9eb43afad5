import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database } from 'edupulse-outbox';
import { packageBin } from './packages.js';
import { quoteSchema } from './schema.js';

/** Keeps the end of a child's stderr (its JSON logs), to explain a failure. */
const STDERR_KEPT = 4096;

/**
 * Peak and current resident set size of process `pid` in MiB, from /proc/<pid>/status
 * (VmHWM, VmRSS); undefined once the process is gone or where /proc does not exist.
 */
export async function processMemory(
  pid: number,
): Promise<{ peakMb: number; rssMb: number } | undefined> {
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  const peak = kib('VmHWM');
  const rss = kib('VmRSS');
  if (!Number.isFinite(peak) || !Number.isFinite(rss)) return undefined;
  return { peakMb: peak / 1024, rssMb: rss / 1024 };
}

/**
 * A `run` dispatcher in a child process, publishing to `broker` (by default the log broker
 * into /dev/null).
 */
export class DispatcherProcess {
  readonly pid: number;
  private readonly child: ChildProcess;
  private stderr = '';
  private readonly exited: Promise<number | string>;

  constructor(
    databaseUrl: string,
    schema: string,
    extraArgs: readonly string[] = [],
    broker = 'log:',
  ) {
    // The CLI as a deployment runs it: the package's own executable, a process of its own.
    const cli = packageBin('edupulse-outbox', 'edupulse-outbox');
    // log: writes every event to stdout; 'ignore' points stdout at /dev/null, the
    // cheapest sink a real broker-less run has, so what is measured is the dispatcher.
    this.child = spawn(
      process.execPath,
      [
        cli,
        'run',
        '--database-url',
        databaseUrl,
        '--schema',
        schema,
        '--broker',
        broker,
        ...extraArgs,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    // A failed spawn also emits 'error'; without a listener that would end the bench.
    this.child.once('error', (error) => {
      this.stderr += `\n${error.message}`;
    });
    if (this.child.pid === undefined) throw new Error('could not start a dispatcher process');
    this.pid = this.child.pid;
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-STDERR_KEPT);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });
  }

  /** Whether the process is still running (not yet exited). */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Peak and current resident set size (see `processMemory`). */
  memory(): Promise<{ peakMb: number; rssMb: number } | undefined> {
    return processMemory(this.pid);
  }

  /** SIGTERM, then waits for the exit; throws unless it was the clean stop (exit 0). */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    const timeout = sleep(timeoutMs, 'timeout' as const, { ref: false });
    const outcome = await Promise.race([this.exited, timeout]);
    if (outcome === 'timeout') {
      this.child.kill('SIGKILL');
      throw new Error(`dispatcher ${this.pid} did not stop within ${timeoutMs} ms`);
    }
    if (outcome !== 0) {
      throw new Error(`dispatcher ${this.pid} exited with ${outcome}: ${this.stderr.trim()}`);
    }
  }

  /** For `finally`: gone for sure, whatever state it is in. */
  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }

  /** Throws, with its last log lines, when the process has exited early. */
  assertRunning(): void {
    if (!this.running) {
      throw new Error(`dispatcher ${this.pid} exited early: ${this.stderr.trim()}`);
    }
  }
}

export interface WaitUntilEmptyOptions {
  /** How often to count. Default 50. */
  intervalMs?: number;
  /** Give up after this. Default 10 minutes. */
  timeoutMs?: number;
  /** Called after every count (e.g. to sample memory); its rejection aborts the wait. */
  onPoll?: (pending: number) => Promise<void> | void;
}

/**
 * Counts the schema's outbox every `intervalMs` until it is empty. Returns the time of
 * the first count below `backlog` (the drain has started) and of the empty one, both
 * from `process.hrtime.bigint()`.
 */
export async function waitUntilEmpty(
  db: Database,
  schema: string,
  backlog: number,
  options: WaitUntilEmptyOptions = {},
): Promise<{ firstDrained: bigint; empty: bigint }> {
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + (options.timeoutMs ?? 600_000);
  const count = `SELECT count(*)::int AS pending FROM ${quoteSchema(schema)}.outbox`;
  let firstDrained: bigint | undefined;
  for (;;) {
    const { rows } = await db.query<{ pending: number }>(count);
    const now = process.hrtime.bigint();
    const pending = Number(rows[0]?.pending);
    if (pending < backlog) firstDrained ??= now;
    await options.onPoll?.(pending);
    if (pending === 0) return { firstDrained: firstDrained ?? now, empty: now };
    if (Date.now() > deadline) {
      throw new Error(`${pending} events still pending after ${options.timeoutMs ?? 600_000} ms`);
    }
    await sleep(intervalMs);
  }
}
