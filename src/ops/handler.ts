import type { IncomingMessage, ServerResponse } from 'node:http';
import { assertKnownOptions } from '../common/options.js';
import {
  endpointsOptions,
  notFound,
  type OpsEndpointsOptions,
  opsAnswer,
  opsPaths,
  servedPath,
} from './endpoints.js';
import { assertHealthNumbers } from './health.js';

/** A Connect-style request handler: Express's `app.use`, Connect, or `http.createServer`. */
export type OpsHandler = (
  request: IncomingMessage,
  response: ServerResponse,
  next?: (error?: unknown) => void,
) => void;

/**
 * The operations endpoints as a handler for the application's own server: `GET` (and
 * `HEAD`) `/metrics`, `/healthz` and `/readyz`, with the ops server's bodies and status
 * codes. Anything else goes to `next` (a 404 where there is none). Mounted under a path
 * (`app.use('/ops', outboxHandler(…))`), it serves below it: Express hands a mounted
 * handler the URL without the mount path.
 */
export function outboxHandler(options: OpsEndpointsOptions): OpsHandler {
  assertKnownOptions('outboxHandler', options, endpointsOptions);
  assertHealthNumbers(options);
  return (request, response, next) => {
    const method = request.method;
    const path =
      method === 'GET' || method === 'HEAD'
        ? servedPath(options, (request.url ?? '/').split('?')[0] ?? '/')
        : undefined;
    if (!path && next) {
      next();
      return;
    }
    const answer = path ? opsAnswer(options, path) : Promise.resolve(notFound(opsPaths(options)));
    answer.then(({ status, contentType, body }) => {
      response.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
      response.end(body);
    }, next);
  };
}
