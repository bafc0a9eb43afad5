/**
 * The consumer side of the consumer chaos phase: N consumer processes
 * (consumer-process.mjs, `consume()` with an inbox, on the built package) under one
 * consumer name, in a supervised pool (process-pool.ts) of which the driver SIGKILLs a
 * random one every so often and starts its replacement at once.
 *
 * Each process prints its stats on stdout every 500 ms and once more after a SIGTERM
 * stopped it; `reports()` sums the last such line of every process life. A SIGKILLed life
 * loses what it counted after its last line, so those sums are a lower bound.
 */
import { fileURLToPath } from 'node:url';
import type { ConsumerStats } from '../../src/consumer/index.js';
import { jsonLines, spawnNode } from '../helpers/cli.js';
import { type ProcessPool, startProcessPool } from './process-pool.js';

const SCRIPT = fileURLToPath(new URL('./consumer-process.mjs', import.meta.url));

export interface ConsumerPoolOptions {
  count: number;
  random: () => number;
  /** The broker URL `consume()` reads. */
  brokerUrl: string;
  /** Kafka: `group_instance_id=<consumer>-<slot>` added to each slot's URL. */
  instanceNames?: boolean;
  databaseUrl: string;
  schema: string;
  /** The consumer name all the processes share. */
  consumer: string;
}

/** Sums over the process lives of what their last stats line said. */
export interface ConsumerReports {
  /** Each of the consumers' stats summed (absent: no life printed any). */
  stats: Partial<ConsumerStats>;
  lives: number;
  /** Lives whose last line is the one printed after a SIGTERM (complete counts). */
  finals: number;
}

export interface ConsumerPool extends ProcessPool {
  /**
   * Resolves once `count` of the slots' processes have started (receiving or standing by):
   * consume() declared what it needs (on RabbitMQ, the queue bound to the exchange).
   */
  ready(count: number, timeoutMs: number, signal?: AbortSignal): Promise<void>;
  reports(): ConsumerReports;
}

type Line = { ready?: boolean; final?: boolean; stats?: ConsumerStats };

export function startConsumers(options: ConsumerPoolOptions): ConsumerPool {
  const pool = startProcessPool({
    count: options.count,
    random: options.random,
    spawn: (slot) =>
      spawnNode(SCRIPT, [], {
        env: {
          BROKER_URL: options.instanceNames
            ? `${options.brokerUrl}&group_instance_id=${options.consumer}-${slot}`
            : options.brokerUrl,
          DATABASE_URL: options.databaseUrl,
          SCHEMA: options.schema,
          CONSUMER: options.consumer,
        },
      }),
    started: (cli) => cli.stdout.includes('"ready":true'),
  });
  const lines = (stdout: string) => jsonLines(stdout) as Line[];
  return Object.assign(pool, {
    async ready(count: number, timeoutMs: number, signal?: AbortSignal) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        signal?.throwIfAborted();
        const waiting = pool.current().filter((cli) => !lines(cli.stdout).some((l) => l.ready));
        if (pool.current().length - waiting.length >= count) return;
        if (Date.now() > deadline) {
          const stderr = waiting.map((cli) =>
            cli.stderr.trimEnd().split('\n').slice(-5).join('\n'),
          );
          throw new Error(
            `consumers not started within ${timeoutMs} ms:\n${stderr.join('\n--\n')}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    reports() {
      const stats: Partial<Record<keyof ConsumerStats, number>> = {};
      let finals = 0;
      for (const life of pool.lives()) {
        const last = lines(life.cli.stdout).findLast((line) => line.stats);
        if (!last?.stats) continue;
        if (last.final) finals++;
        for (const [key, value] of Object.entries(last.stats) as [keyof ConsumerStats, number][]) {
          stats[key] = (stats[key] ?? 0) + value;
        }
      }
      return { stats, lives: pool.lives().length, finals };
    },
  });
}
