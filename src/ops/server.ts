import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { checkTokenAccess, requestGuard } from '../common/http-access.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import {
  notFound,
  type OpsEndpointsOptions,
  opsAnswer,
  opsPaths,
  servedPath,
} from './endpoints.js';
import { assertHealthNumbers, healthOptionKeys } from './health.js';

export interface OpsServerOptions extends OpsEndpointsOptions {
  registry: Registry;
  port: number;
  /** Default 127.0.0.1: metrics and health stay on this machine unless told otherwise. */
  host?: string;
  /**
   * Required on every request as `Authorization: Bearer <token>` (Prometheus:
   * `authorization: { credentials_file: … }`; a Kubernetes probe: `httpHeaders`); at least
   * 16 characters. Any `host` beyond loopback needs one.
   */
  token?: string | undefined;
}

const serverOptions = optionNames<OpsServerOptions>({
  ...healthOptionKeys,
  registry: true,
  port: true,
  host: true,
  token: true,
});

const ENDPOINTS = 'the metrics and health endpoints';

/** The endpoints' access rule (a bind beyond loopback needs a token), as `run` names its flags. */
export function checkMetricsAccess(host: string, token: string | undefined, setting: string) {
  checkTokenAccess(
    host,
    token,
    setting,
    ENDPOINTS,
    'OUTBOX_METRICS_TOKEN, --metrics-token-file or --metrics-token',
  );
}

/**
 * The operations endpoints on a port of their own: `GET /metrics` (Prometheus text),
 * `GET /healthz` and `GET /readyz` (200 `ok`, or 503 with one reason per line). Resolves
 * once listening. Pass as `db` (here and to `dispatcherMetrics`) an executor apart from
 * the dispatcher's, with one connection: then no request, however many, takes a
 * connection a claim needs. In an application's own server: `outboxFastify`,
 * `outboxHandler`.
 */
export async function startOpsServer(options: OpsServerOptions): Promise<{
  server: Server;
  port: number;
  close(): Promise<void>;
}> {
  assertKnownOptions('startOpsServer', options, serverOptions);
  assertHealthNumbers(options);
  const host = options.host ?? '127.0.0.1';
  checkTokenAccess(host, options.token, 'token', ENDPOINTS, 'the token option');
  const guard = requestGuard(options.token);
  const server = createServer((request, response) => {
    const reply = (
      status: number,
      body: string,
      type = 'text/plain; charset=utf-8',
      extra: Record<string, string> = {},
    ) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...extra });
      response.end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      reply(405, 'only GET\n');
      return;
    }
    const url = new URL(request.url ?? '/', 'http://ops');
    const refused = guard(request, url);
    if (refused) {
      const challenge = refused.status === 401 ? { 'www-authenticate': 'Bearer' } : {};
      reply(refused.status, `${refused.reason}\n`, undefined, challenge);
      return;
    }
    const path = servedPath(options, url.pathname);
    const answer = path ? opsAnswer(options, path) : Promise.resolve(notFound(opsPaths(options)));
    answer.then(({ status, body, contentType }) => reply(status, body, contentType));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
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
