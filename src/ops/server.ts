import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { assertKnownOptions, optionNames } from '../common/options.js';
import {
  notFound,
  type OpsEndpointsOptions,
  opsAnswer,
  opsPaths,
  servedPath,
} from './endpoints.js';
import { healthOptionKeys } from './health.js';

export interface OpsServerOptions extends OpsEndpointsOptions {
  registry: Registry;
  port: number;
  /** Default 127.0.0.1: metrics and health stay on this machine unless told otherwise. */
  host?: string;
}

const serverOptions = optionNames<OpsServerOptions>({
  ...healthOptionKeys,
  registry: true,
  port: true,
  host: true,
});

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
  const server = createServer((request, response) => {
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      reply(405, 'only GET\n');
      return;
    }
    const path = servedPath(options, (request.url ?? '/').split('?')[0] ?? '/');
    const answer = path ? opsAnswer(options, path) : Promise.resolve(notFound(opsPaths(options)));
    answer.then(({ status, body, contentType }) => reply(status, body, contentType));
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
