/**
 * Processes of a chaos run in slots, kept running the way a process supervisor would (one
 * that exits on its own is started again after a short pause), with a killer that SIGKILLs
 * a random one and starts its replacement right away. The dispatchers (dispatchers.ts) and
 * the consumers (consumers.ts) are such pools.
 */
import type { CliProcess } from '../helpers/cli.js';

export interface ProcessPoolOptions {
  count: number;
  /** Starts the process of a slot (a first start, a replacement, a restart after an exit). */
  spawn: (slot: number) => CliProcess;
  random: () => number;
  /**
   * Whether a process has started (its signal handlers set): `stop` waits for it, bounded,
   * before its SIGTERM. A Node process signalled while Node still loads it (a replacement
   * started just before) dies of the signal, as any Node program would, having done
   * nothing; the exit codes asserted are those of a stop after the start.
   */
  started?: (cli: CliProcess) => boolean;
}

/** A process that ended without being asked to: its exit and the end of its stderr. */
export interface UnexpectedExit {
  slot: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  atMs: number;
  stderrTail: string;
}

/** One process of the pool, from its start to its end: a life. */
export interface ProcessLife {
  label: string;
  slot: number;
  cli: CliProcess;
  /** SIGKILLed by the killer. */
  killed: boolean;
}

export interface ProcessPool {
  /** SIGKILLs the process of a random slot and starts its replacement at once. */
  killRandom(): number;
  /** SIGTERMs every process; resolves with their exit codes. The pool starts nothing after. */
  stop(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }[]>;
  /** SIGKILLs whatever is left (clean-up after a failure). */
  destroy(): Promise<void>;
  /** The process in each slot now. */
  current(): CliProcess[];
  /** Every process started so far, in start order. */
  lives(): readonly ProcessLife[];
  readonly kills: number;
  readonly started: number;
  readonly unexpectedExits: UnexpectedExit[];
  /** stdout and stderr of every process so far, labelled, for a post-mortem. */
  logs(): { label: string; stdout: string; stderr: string }[];
}

/** A process's exit code, or the name of the signal that ended it. */
export const exitCode = (exit: { code: number | null; signal: NodeJS.Signals | null }) =>
  exit.code ?? exit.signal;

const alive = (cli: CliProcess) => cli.child.exitCode === null && cli.child.signalCode === null;

export function startProcessPool(options: ProcessPoolOptions): ProcessPool {
  const began = Date.now();
  const slots: CliProcess[] = [];
  const history: ProcessLife[] = [];
  const unexpectedExits: UnexpectedExit[] = [];
  let stopping = false;
  let kills = 0;

  const start = (slot: number) => {
    const cli = options.spawn(slot);
    slots[slot] = cli;
    const life: ProcessLife = {
      label: `slot ${slot} #${history.length} pid ${cli.child.pid}`,
      slot,
      cli,
      killed: false,
    };
    history.push(life);
    void cli.exited.then(
      (result) => {
        if (life.killed || stopping) return;
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
      if (stopping) return slot;
      const victim = history.findLast((life) => life.cli === slots[slot]);
      if (victim && alive(victim.cli)) {
        victim.killed = true;
        victim.cli.child.kill('SIGKILL');
        kills++;
      }
      start(slot);
      return slot;
    },
    async stop(timeoutMs) {
      stopping = true;
      const running = [...slots];
      const until = Date.now() + Math.min(timeoutMs, 20_000);
      const starting = () =>
        running.some((cli) => alive(cli) && options.started && !options.started(cli));
      while (starting() && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
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
          if (alive(cli)) cli.child.kill('SIGKILL');
          await cli.exited.catch(() => {});
        }),
      );
    },
    current: () => [...slots],
    lives: () => history,
    get kills() {
      return kills;
    },
    get started() {
      return history.length;
    },
    unexpectedExits,
    logs: () =>
      history.map(({ label, cli }) => ({ label, stdout: cli.stdout, stderr: cli.stderr })),
  };
}
