import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../common/errors.js';
import { checkTokenAccess, requestGuard } from '../common/http-access.js';
import type { Logger } from '../common/logger.js';
import { scrubSecretsIn } from '../common/secrets.js';
import { answerApi, type ConsoleApiOptions, SharedStatus } from './api.js';
import { History } from './history.js';

export interface ConsoleServerOptions extends Omit<ConsoleApiOptions, 'history' | 'status'> {
  port: number;
  /** Default 127.0.0.1. Any address beyond loopback needs a `token`. */
  host?: string;
  /** Required on every API request as `Authorization: Bearer <token>`; at least 16 characters. */
  token?: string | undefined;
  logger?: Logger | undefined;
  /** Where the built page is (index.html and assets/). Default: the package's dist/ui. */
  pageDir?: string;
  /** How often the history samples the outbox. Default 2000 ms. */
  sampleIntervalMs?: number;
}

export interface ConsoleServer {
  port: number;
  close(): Promise<void>;
}

const BODY_MAX = 1024 * 1024;

// The page is ours alone: its own scripts, styles and API, nothing inline, nothing from
// elsewhere, never framed.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TEXT = 'text/plain; charset=utf-8';
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

/** The console's access rule (checkTokenAccess), naming its settings. */
export function checkConsoleAccess(host: string, token: string | undefined, setting = 'ui-token') {
  checkTokenAccess(
    host,
    token,
    setting,
    'the console',
    'OUTBOX_UI_TOKEN, --ui-token-file or --ui-token',
  );
}

/** A request another site's page sent: its Origin is not this server's. */
function crossOrigin(request: IncomingMessage): boolean {
  const origin = request.headers.origin;
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== request.headers.host;
  } catch {
    return true;
  }
}

/** A POST's JSON body, or the status and reason it is refused with. */
async function readJson(
  request: IncomingMessage,
): Promise<{ body: unknown } | { status: number; error: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > BODY_MAX) return { status: 413, error: `body: larger than ${BODY_MAX} bytes` };
    chunks.push(chunk as Buffer);
  }
  try {
    return { body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown };
  } catch {
    return { status: 400, error: 'body: is not JSON' };
  }
}

/**
 * Serves the web console: the page (built into the package) and the admin API
 * (docs/console-api.yaml) on one port. Refuses a bind beyond loopback without a token
 * (ConfigError naming `ui-token`); resolves once listening. Give it a database pool of
 * its own (a few connections), not a dispatcher's.
 */
export async function startConsoleServer(options: ConsoleServerOptions): Promise<ConsoleServer> {
  const host = options.host ?? '127.0.0.1';
  checkConsoleAccess(host, options.token);
  const guard = requestGuard(options.token);
  const pageDir = options.pageDir ?? fileURLToPath(new URL('../ui/', import.meta.url));
  const history = new History({
    db: options.db,
    schema: options.schema,
    dispatcher: options.dispatcher,
    logger: options.logger,
    ...(options.sampleIntervalMs !== undefined ? { intervalMs: options.sampleIntervalMs } : {}),
  });
  const api = { ...options, history, status: new SharedStatus(options.db, options.schema) };

  const send = (
    response: ServerResponse,
    status: number,
    body: string | Buffer,
    type: string,
    extra: Record<string, string> = {},
  ) => {
    response.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': type,
      'cache-control': 'no-store',
      ...extra,
    });
    response.end(body);
  };
  const json = (response: ServerResponse, status: number, body: unknown, extra = {}) =>
    // Swept, but for the events' own data: a session's application_name, say, is anyone's text.
    send(
      response,
      status,
      `${JSON.stringify(scrubSecretsIn(body))}\n`,
      'application/json; charset=utf-8',
      extra,
    );

  const servePage = async (response: ServerResponse, path: string, head: boolean) => {
    const file =
      path === '/' ? 'index.html' : /^\/assets\/[\w.-]+$/.test(path) ? path.slice(1) : '';
    const type = TYPES[file.slice(file.lastIndexOf('.'))];
    if (!file || !type) {
      json(response, 404, { error: `no such page: ${path}` });
      return;
    }
    let content: Buffer;
    try {
      content = await readFile(`${pageDir}/${file}`);
    } catch {
      if (file === 'index.html') {
        send(response, 503, 'The console page is not built: run npm run build.\n', TEXT);
      } else {
        json(response, 404, { error: `no such file: ${path}` });
      }
      return;
    }
    // Asset names carry a hash of their content: they never change under one name.
    const cache =
      file === 'index.html' ? {} : { 'cache-control': 'public, max-age=31536000, immutable' };
    send(response, 200, head ? Buffer.alloc(0) : content, type, cache);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://console.invalid');
    const method = request.method ?? 'GET';
    if (!url.pathname.startsWith('/api/')) {
      if (method !== 'GET' && method !== 'HEAD') {
        json(response, 405, { error: 'use GET' }, { allow: 'GET, HEAD' });
        return;
      }
      await servePage(response, url.pathname, method === 'HEAD');
      return;
    }
    const refused = guard(request, url);
    if (refused) {
      const challenge = refused.status === 401 ? { 'www-authenticate': 'Bearer' } : {};
      json(response, refused.status, { error: refused.reason }, challenge);
      return;
    }
    if (crossOrigin(request)) {
      json(response, 403, { error: 'requests from another origin are refused' });
      return;
    }
    let body: unknown;
    if (method === 'POST') {
      if (!/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
        json(response, 415, { error: 'send the body as application/json' });
        return;
      }
      const read = await readJson(request);
      if ('status' in read) {
        json(response, read.status, { error: read.error, field: 'body' });
        return;
      }
      body = read.body;
    }
    const answer = await answerApi(api, method, url.pathname, url.searchParams, body);
    json(response, answer.status, answer.body, answer.headers);
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      options.logger?.warn({ err: errorMessage(error) }, 'console: request failed');
      if (!response.headersSent) json(response, 500, { error: 'internal error' });
      else response.destroy();
    });
  });
  // Requests Node refuses before they reach the handler (headers over its limit, bytes
  // that are not HTTP): answered in the API's JSON form rather than with an empty body.
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason, message] =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'the request line and headers are too large']
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', 'the request did not arrive in time']
          : [400, 'Bad Request', 'not an HTTP request this server can read'];
    const body = `${JSON.stringify({ error: message })}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  history.start();
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      await history.stop();
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
