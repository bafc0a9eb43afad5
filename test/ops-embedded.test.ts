/**
 * The operations endpoints inside an application's own server: the Fastify plugin and the
 * Express handler answer /metrics, /healthz and /readyz as the standalone ops server does
 * (same status codes, bodies and content types), under the prefix or mount path the
 * application chose, and leave its other routes alone. Real Fastify and Express servers
 * on ephemeral ports, a started dispatcher, the real PostgreSQL.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createDispatcher,
  type Database,
  type Dispatcher,
  MemoryBroker,
  pgDatabase,
} from '../src/index.js';
import {
  dispatcherMetrics,
  type OpsEndpointsOptions,
  outboxFastify,
  outboxHandler,
  startOpsServer,
} from '../src/ops/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { enqueueLesson } from './helpers/outbox.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
/** The endpoints' own connection, as the README advises. */
let opsDb: Database;

beforeAll(async () => {
  t = await createPgTestSchema('ops_embed');
  opsDb = pgDatabase({ connectionString: PG_URL, maxConnections: 1 });
});

afterAll(async () => {
  await opsDb?.close();
  await t?.drop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Served {
  status: number;
  body: string;
  type: string | null;
}

async function get(url: string, method = 'GET'): Promise<Served> {
  const response = await fetch(url, { method });
  return {
    status: response.status,
    body: await response.text(),
    type: response.headers.get('content-type'),
  };
}

/** A started dispatcher with its metrics, one event published (so the counters have series). */
async function startDispatcher(): Promise<{ dispatcher: Dispatcher; ops: OpsEndpointsOptions }> {
  const broker = new MemoryBroker();
  const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker, logger: false });
  cleanups.push(() => dispatcher.stop());
  const registry = dispatcherMetrics({ dispatcher, db: opsDb, schema: t.schema, broker: 'memory' });
  await dispatcher.start();
  // The broker holds the message before the dispatcher settles it and counts it published.
  let settled = 0;
  dispatcher.on('settled', (batch) => {
    settled += batch.published.length;
  });
  await enqueueLesson(t);
  await waitFor('the event to be published and settled', () => settled === 1);
  expect(broker.messages).toHaveLength(1);
  return { dispatcher, ops: { dispatcher, db: opsDb, schema: t.schema, registry } };
}

async function standalone(ops: OpsEndpointsOptions): Promise<string> {
  const registry = ops.registry;
  if (!registry) throw new Error('a registry is needed');
  const server = await startOpsServer({ ...ops, registry, port: 0 });
  cleanups.push(() => server.close());
  return `http://127.0.0.1:${server.port}`;
}

async function fastifyApp(plugin: OpsEndpointsOptions): Promise<string> {
  const app = Fastify();
  app.get('/hello', async () => 'hello from the app');
  await app.register(outboxFastify, { ...plugin, prefix: '/ops' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(() => app.close());
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

async function expressApp(handler: OpsEndpointsOptions): Promise<string> {
  const app = express();
  app.use('/ops', outboxHandler(handler));
  app.get('/hello', (_request, response) => {
    response.send('hello from the app');
  });
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe.each([
  ['Fastify plugin', fastifyApp],
  ['Express handler', expressApp],
])('%s', (_name, serve) => {
  it('serves /metrics, /healthz and /readyz as the ops server does; /readyz turns 503 once the dispatcher stops', async () => {
    const { dispatcher, ops } = await startDispatcher();
    const app = await serve(ops);
    const reference = await standalone(ops);

    const metrics = await get(`${app}/ops/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.type).toBe((await get(`${reference}/metrics`)).type);
    for (const name of [
      'outbox_events_published_total{event_type="lesson-published",broker="memory"} 1',
      'outbox_pending_events 0',
      'outbox_dispatcher_state{state="stopped"} 0',
      'outbox_broker_connected{broker="memory"} 1',
    ]) {
      expect(metrics.body).toContain(name);
    }

    for (const path of ['/healthz', '/readyz']) {
      const served = await get(`${app}/ops${path}`);
      expect(served).toEqual({ status: 200, body: 'ok\n', type: 'text/plain; charset=utf-8' });
      expect(served).toEqual(await get(`${reference}${path}`));
      expect((await get(`${app}/ops${path}`, 'HEAD')).status).toBe(200);
    }
    // The application's own routes are its own.
    expect(await get(`${app}/hello`)).toMatchObject({ status: 200, body: 'hello from the app' });

    await dispatcher.stop();
    for (const path of ['/healthz', '/readyz']) {
      const served = await get(`${app}/ops${path}`);
      expect(served).toEqual({
        status: 503,
        body: 'dispatcher is not running\n',
        type: 'text/plain; charset=utf-8',
      });
      expect(served).toEqual(await get(`${reference}${path}`));
    }
    expect(await get(`${app}/ops/metrics`)).toMatchObject({ status: 200 });
    expect((await get(`${app}/ops/metrics`)).body).toContain(
      'outbox_dispatcher_state{state="stopped"} 1',
    );
  });

  it('without a registry leaves /metrics to the application', async () => {
    const { ops } = await startDispatcher();
    const { registry: _, ...withoutRegistry } = ops;
    const app = await serve(withoutRegistry);
    expect((await get(`${app}/ops/metrics`)).status).toBe(404);
    expect(await get(`${app}/ops/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
  });
});
