import type { Registry } from 'prom-client';
import { errorMessage } from '../common/errors.js';
import { optionNames } from '../common/options.js';
import { scrubSecrets } from '../common/secrets.js';
import {
  type CheckResult,
  type HealthOptions,
  healthOptionKeys,
  liveness,
  readiness,
} from './health.js';

/** What the operations endpoints need: the health checks' options and the metrics. */
export interface OpsEndpointsOptions extends HealthOptions {
  /**
   * Served as `/metrics` (from `dispatcherMetrics`). Leave it out where the application
   * serves `/metrics` itself: pass its registry to `dispatcherMetrics` instead.
   */
  registry?: Registry;
}

export const endpointsOptions = optionNames<OpsEndpointsOptions>({
  ...healthOptionKeys,
  registry: true,
});

/** One answer of the endpoints, whatever serves it. */
export interface OpsAnswer {
  status: number;
  contentType: string;
  body: string;
}

export type OpsPath = '/metrics' | '/healthz' | '/readyz';

/** The paths the endpoints answer, `/metrics` only with a registry. */
export function opsPaths(options: OpsEndpointsOptions): OpsPath[] {
  return options.registry ? ['/metrics', '/healthz', '/readyz'] : ['/healthz', '/readyz'];
}

/** `path` if the endpoints answer it, else undefined. */
export function servedPath(options: OpsEndpointsOptions, path: string): OpsPath | undefined {
  return opsPaths(options).find((served) => served === path);
}

const TEXT = 'text/plain; charset=utf-8';

function reply(status: number, body: string, contentType = TEXT): OpsAnswer {
  // Reasons quote servers' and libraries' words: swept for the settings' secrets.
  return { status, contentType, body: scrubSecrets(body) };
}

/** The metrics as the registry writes them: names, event types and counts, not swept. */
function metricsReply(body: string, contentType: string): OpsAnswer {
  return { status: 200, contentType, body };
}

function answerCheck(result: CheckResult): OpsAnswer {
  return result.ok ? reply(200, 'ok\n') : reply(503, `${result.reasons.join('\n')}\n`);
}

/** A 404 naming what is served. */
export function notFound(paths: readonly string[]): OpsAnswer {
  const listed = `${paths.slice(0, -1).join(', ')} or ${paths.at(-1)}`;
  return reply(404, `not found: try ${listed}\n`);
}

/**
 * `GET /metrics` (Prometheus text), `/healthz` and `/readyz` (200 `ok`, or 503 with one
 * reason per line); a failure to answer is a 500 with its message. The same answers
 * wherever they are served: the ops server, a Fastify plugin, an Express handler.
 */
export async function opsAnswer(options: OpsEndpointsOptions, path: OpsPath): Promise<OpsAnswer> {
  try {
    switch (path) {
      case '/metrics':
        if (!options.registry) return notFound(opsPaths(options));
        return metricsReply(await options.registry.metrics(), options.registry.contentType);
      case '/healthz':
        return answerCheck(liveness(options));
      case '/readyz':
        return answerCheck(await readiness(options));
    }
  } catch (error) {
    return reply(500, `${errorMessage(error)}\n`);
  }
}
