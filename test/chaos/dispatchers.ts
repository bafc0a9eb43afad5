/**
 * The dispatcher side of a chaos run: N `edupulse-outbox run` processes in a supervised
 * pool (process-pool.ts), of which the chaos driver SIGKILLs a random one every so often.
 */
import { spawnCli } from '../helpers/cli.js';
import { type ProcessPool, startProcessPool } from './process-pool.js';

export type { UnexpectedExit } from './process-pool.js';

export interface DispatcherPoolOptions {
  count: number;
  /** Arguments of `edupulse-outbox` (`run …`). */
  args: readonly string[];
  random: () => number;
}

export type DispatcherPool = ProcessPool;

export function startDispatchers(options: DispatcherPoolOptions): DispatcherPool {
  return startProcessPool({
    count: options.count,
    random: options.random,
    spawn: () => spawnCli(options.args),
    // `run` logs this (on stderr) once its dispatcher has started.
    started: (cli) => cli.stderr.includes('"msg":"dispatching"'),
  });
}
