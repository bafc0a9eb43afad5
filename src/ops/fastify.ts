import { assertKnownOptions } from '../common/options.js';
import { endpointsOptions, type OpsEndpointsOptions, opsAnswer, opsPaths } from './endpoints.js';
import { assertHealthNumbers } from './health.js';

// Fastify hands the plugin its own register options (`prefix`, `logLevel`,
// `logSerializers`) with ours.
const pluginOptions: ReadonlySet<string> = new Set([
  ...endpointsOptions,
  'prefix',
  'logLevel',
  'logSerializers',
]);

/**
 * The part of a Fastify reply the plugin uses. Fastify is not imported (its types
 * neither): applications without it load and compile nothing of it.
 */
export interface FastifyReplyLike {
  code(statusCode: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  send(payload: string): FastifyReplyLike;
}

/** The part of a Fastify instance the plugin uses. */
export interface FastifyInstanceLike {
  get(
    path: string,
    handler: (request: unknown, reply: FastifyReplyLike) => Promise<FastifyReplyLike>,
  ): unknown;
}

/**
 * The operations endpoints as a Fastify plugin: `GET` (and `HEAD`) `/metrics`, `/healthz`
 * and `/readyz`, with the ops server's bodies and status codes.
 *
 *   await app.register(outboxFastify, { dispatcher, db: opsDb, schema, registry, prefix: '/ops' });
 *
 * It only adds routes, so it stays encapsulated (not wrapped in fastify-plugin): that is
 * what makes Fastify apply the `prefix`.
 */
export async function outboxFastify(
  app: FastifyInstanceLike,
  options: OpsEndpointsOptions,
): Promise<void> {
  assertKnownOptions('outboxFastify', options, pluginOptions);
  assertHealthNumbers(options);
  for (const path of opsPaths(options)) {
    app.get(path, async (_request, reply) => {
      const { status, contentType, body } = await opsAnswer(options, path);
      return reply
        .code(status)
        .header('content-type', contentType)
        .header('cache-control', 'no-store')
        .send(body);
    });
  }
}

// What fastify-plugin would set, by hand: the name Fastify shows for the plugin (in
// errors, printPlugins(), hasPlugin()). No `skip-override`: see above.
Object.assign(outboxFastify, {
  [Symbol.for('fastify.display-name')]: 'edupulse-outbox',
  [Symbol.for('plugin-meta')]: { name: 'edupulse-outbox' },
});
