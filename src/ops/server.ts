import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '../common/errors.js';
import { scrubSecrets } from '../common/secrets.js';
import { type CheckResult, type HealthOptions, liveness, readiness } from './health.js';

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
