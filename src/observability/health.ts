import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Executor } from '../db/executor.js';
import { statements } from '../db/statements.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import { errorMessage } from '../errors.js';
import { scrubSecrets } from '../secrets.js';
import { withTimeout } from '../timeout.js';

export interface CheckResult {
  ok: boolean;
  /** Why not, one line per problem; empty when ok. */
  reasons: string[];
}

export interface HealthOptions {
  dispatcher: Dispatcher;
  /**
   * Where `/readyz` measures the lag. Give it a connection of its own (e.g. a second
   * `pgDatabase` with `maxConnections: 1`), not the dispatcher's pool: a check waiting
   * for a pooled connection delays a claim, and a claim delays the check.
   */
  db: Executor;
  schema: string;
  /** Not ready while the oldest pending event is older than this. Default 60. */
  maxLagSeconds?: number;
  /** A round of the loop running longer than this is a stall (not ready). Default 10000. */
  stallAfterMs?: number;
  /** A round running longer than this means the loop is stuck (not alive). Default 150000. */
  stuckAfterMs?: number;
  /** The readiness check gives up on the database after this. Default 2000. */
  queryTimeoutMs?: number;
  /**
   * One database answer serves every readiness check for this long after it arrived.
   * Default 1000.
   */
  databaseCacheMs?: number;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * A database check that concurrent callers share: at most one runs at a time, and its
 * outcome (failure included) answers every caller for `cacheMs` after it arrived, so a
 * flood of requests costs the database one statement per `cacheMs`.
 */
export class SharedCheck<T> {
  private running: Promise<Outcome<T>> | undefined;
  private last: { outcome: Outcome<T>; at: number } | undefined;

  /** `run` is called only when no check is running and the last outcome is too old. */
  get(run: () => Promise<T>, cacheMs: number, now = Date.now()): Promise<Outcome<T>> {
    if (this.last && now - this.last.at < cacheMs) return Promise.resolve(this.last.outcome);
    this.running ??= run()
      .then(
        (value): Outcome<T> => ({ ok: true, value }),
        (error: unknown): Outcome<T> => ({ ok: false, error }),
      )
      .then((outcome) => {
        this.last = { outcome, at: Date.now() };
        this.running = undefined;
        return outcome;
      });
    return this.running;
  }
}

// Keyed by the executor, so every caller of `readiness` on one database and schema (the
// ops server's requests, a service's own probes) shares the check.
const lagChecks = new WeakMap<Executor, Map<string, SharedCheck<number>>>();

function lagCheck(db: Executor, schema: string): SharedCheck<number> {
  let bySchema = lagChecks.get(db);
  if (!bySchema) {
    bySchema = new Map();
    lagChecks.set(db, bySchema);
  }
  let check = bySchema.get(schema);
  if (!check) {
    check = new SharedCheck();
    bySchema.set(schema, check);
  }
  return check;
}

/** `/healthz`: the loop is alive (running, and no round stuck far beyond any timeout). */
export function liveness(options: HealthOptions, now = Date.now()): CheckResult {
  const health = options.dispatcher.health();
  const reasons: string[] = [];
  if (health.state === 'stopped') {
    reasons.push(
      health.problem
        ? `dispatcher stopped: ${health.problem.message}`
        : 'dispatcher is not running',
    );
  } else if (
    health.state === 'dispatching' &&
    now - health.lastRoundAt > (options.stuckAfterMs ?? 150_000)
  ) {
    reasons.push(
      `dispatch loop stuck: one round has run for ${secondsSince(health.lastRoundAt, now)} s`,
    );
  }
  return { ok: reasons.length === 0, reasons };
}

/**
 * `/readyz`: alive, the database and the broker reachable, progress being made (no round
 * of the loop running longer than `stallAfterMs`), and the oldest pending event younger
 * than `maxLagSeconds`. Concurrent calls on one `db` and schema share one database query,
 * and its answer serves for `databaseCacheMs`; the dispatcher's state is read afresh.
 */
export async function readiness(options: HealthOptions, now = Date.now()): Promise<CheckResult> {
  const { reasons } = liveness(options, now);
  const health = options.dispatcher.health();
  if (health.state === 'backoff' && health.problem) {
    reasons.push(`${health.problem.target} unavailable: ${health.problem.message}`);
  } else if (health.state !== 'stopped' && !health.brokerConnected) {
    reasons.push('broker not connected');
  }
  if (
    health.state === 'dispatching' &&
    now - health.lastRoundAt > (options.stallAfterMs ?? 10_000)
  ) {
    reasons.push(
      `stalled: one round of the loop has run for ${secondsSince(health.lastRoundAt, now)} s`,
    );
  }
  const timeoutMs = options.queryTimeoutMs ?? 2000;
  const measured = await lagCheck(options.db, options.schema).get(
    async () => {
      const { rows } = await withTimeout(
        options.db.query<{ oldest_age_s: number }>(statements(options.schema).outboxBacklog),
        timeoutMs,
        () => new Error(`no answer within ${timeoutMs} ms`),
      );
      return Number(rows[0]?.oldest_age_s ?? 0);
    },
    options.databaseCacheMs ?? 1000,
    now,
  );
  if (measured.ok) {
    const maxLag = options.maxLagSeconds ?? 60;
    if (measured.value > maxLag) {
      reasons.push(
        `lagging: the oldest pending event is ${measured.value.toFixed(1)} s old (limit ${maxLag} s)`,
      );
    }
  } else {
    reasons.push(`database unreachable: ${errorMessage(measured.error)}`);
  }
  return { ok: reasons.length === 0, reasons: [...new Set(reasons)] };
}

function secondsSince(then: number, now: number): string {
  return ((now - then) / 1000).toFixed(1);
}

export interface OpsServerOptions extends HealthOptions {
  registry: Registry;
  port: number;
  /** Default 127.0.0.1: metrics and health stay on this machine unless told otherwise. */
  host?: string;
}

/**
 * The operations endpoints: `GET /metrics` (Prometheus text), `GET /healthz` and
 * `GET /readyz` (200 `ok`, or 503 with one reason per line). Resolves once listening.
 * Pass as `db` (here and to `dispatcherMetrics`) an executor apart from the dispatcher's,
 * with one connection: then no request, however many, takes a connection a claim needs.
 */
export async function startOpsServer(options: OpsServerOptions): Promise<{
  server: Server;
  port: number;
  close(): Promise<void>;
}> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      // Reasons quote servers' and libraries' words: swept for the settings' secrets.
      response.end(scrubSecrets(body));
    };
    const answer = (result: CheckResult) =>
      result.ok ? reply(200, 'ok\n') : reply(503, `${result.reasons.join('\n')}\n`);
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      reply(405, 'only GET\n');
      return;
    }
    switch (path) {
      case '/metrics':
        options.registry
          .metrics()
          .then((text) => reply(200, text, options.registry.contentType))
          .catch((error: unknown) => reply(500, `${errorMessage(error)}\n`));
        return;
      case '/healthz':
        answer(liveness(options));
        return;
      case '/readyz':
        readiness(options)
          .then(answer)
          .catch((error: unknown) => reply(500, `${errorMessage(error)}\n`));
        return;
      default:
        reply(404, 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
