/**
 * The dispatcher side of a chaos run: N `edupulse-outbox run` processes in slots, kept
 * running the way a process supervisor would (one that exits on its own is started again
 * after a short pause), and a killer that SIGKILLs a random one every so often and starts
 * its replacement right away.
 */
import { type CliProcess, spawnCli } from '../helpers/cli.js';

export interface DispatcherPoolOptions {
  count: number;
  /** Arguments of `edupulse-outbox` (`run …`). */
  args: readonly string[];
  random: () => number;
}

/** A process that ended without being asked to: its exit and the end of its stderr. */
export interface UnexpectedExit {
  slot: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  atMs: number;
  stderrTail: string;
}

export interface DispatcherPool {
  /** SIGKILLs the process of a random slot and starts its replacement at once. */
  killRandom(): number;
  /** SIGTERMs every process; resolves with their exit codes. The pool starts nothing after. */
  stop(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }[]>;
  /** SIGKILLs whatever is left (clean-up after a failure). */
  destroy(): Promise<void>;
  readonly kills: number;
  readonly started: number;
  readonly unexpectedExits: UnexpectedExit[];
  /** stderr of every process so far, labelled, for a post-mortem. */
  logs(): { label: string; stderr: string }[];
}

export function startDispatchers(options: DispatcherPoolOptions): DispatcherPool {
  const began = Date.now();
  const slots: (CliProcess | undefined)[] = new Array(options.count).fill(undefined);
  const history: { label: string; cli: CliProcess }[] = [];
  const killed = new WeakSet<CliProcess>();
  const unexpectedExits: UnexpectedExit[] = [];
  let stopping = false;
  let kills = 0;

  const start = (slot: number) => {
    const cli = spawnCli(options.args);
    slots[slot] = cli;
    history.push({ label: `slot ${slot} #${history.length} pid ${cli.child.pid}`, cli });
    void cli.exited.then(
      (result) => {
        if (killed.has(cli) || stopping) return;
        unexpectedExits.push({
          slot,
          code: result.code,
          signal: result.signal,
          atMs: Date.now() - began,
          stderrTail: result.stderr.trimEnd().split('\n').slice(-40).join('\n'),
        });
        // As a supervisor would: start it again after a pause.
        setTimeout(() => {
          if (!stopping && slots[slot] === cli) start(slot);
        }, 500);
      },
      () => {},
    );
  };

  for (let slot = 0; slot < options.count; slot++) start(slot);

  return {
    killRandom() {
      const slot = Math.floor(options.random() * options.count);
      const victim = slots[slot];
      if (victim && victim.child.exitCode === null && victim.child.signalCode === null) {
        killed.add(victim);
        victim.child.kill('SIGKILL');
        kills++;
      }
      start(slot);
      return slot;
    },
    async stop(timeoutMs) {
      stopping = true;
      const running = slots.filter((cli): cli is CliProcess => cli !== undefined);
      for (const cli of running) cli.child.kill('SIGTERM');
      const timer = setTimeout(() => {
        for (const cli of running) cli.child.kill('SIGKILL');
      }, timeoutMs);
      try {
        return await Promise.all(
          running.map(async (cli) => {
            const { code, signal } = await cli.exited;
            return { code, signal };
          }),
        );
      } finally {
        clearTimeout(timer);
      }
    },
    async destroy() {
      stopping = true;
      await Promise.all(
        history.map(async ({ cli }) => {
          if (cli.child.exitCode === null && cli.child.signalCode === null) {
            cli.child.kill('SIGKILL');
          }
          await cli.exited.catch(() => {});
        }),
      );
    },
    get kills() {
      return kills;
    },
    get started() {
      return history.length;
    },
    unexpectedExits,
    logs: () => history.map(({ label, cli }) => ({ label, stderr: cli.stderr })),
  };
}
