/**
 * `edupulse-outbox/metrics`: the operations endpoints for a dispatcher you start
 * yourself. A separate entry point, so services that only enqueue never load the
 * Prometheus client. Give the endpoints a database of their own (one connection), so no
 * request takes a connection the dispatcher's claims need:
 *
 *   const opsDb = pgDatabase({ connectionString, maxConnections: 1, applicationName: 'edupulse-outbox ops' });
 *   const registry = dispatcherMetrics({ dispatcher, db: opsDb, schema: 'public', broker: 'nats' });
 *   await startOpsServer({ port: 9464, registry, dispatcher, db: opsDb, schema: 'public' });
 *
 * or the same endpoints in the application's own server: Fastify
 * `app.register(outboxFastify, { registry, dispatcher, db: opsDb, schema: 'public', prefix: '/ops' })`,
 * Express or Connect `app.use('/ops', outboxHandler({ registry, dispatcher, db: opsDb, schema: 'public' }))`;
 * and for a consumer: `consumerMetrics({ consumer, name: 'grades' })` (a registry to
 * serve), `consumerReadiness(consumer)` (a readiness check to answer with).
 */
export {
  type ConsumerMetricsOptions,
  consumerMetrics,
  consumerReadiness,
} from './consumer-metrics.js';
export type { OpsEndpointsOptions } from './endpoints.js';
export { type FastifyInstanceLike, type FastifyReplyLike, outboxFastify } from './fastify.js';
export { type OpsHandler, outboxHandler } from './handler.js';
export { type CheckResult, type HealthOptions, liveness, readiness } from './health.js';
export { dispatcherMetrics, type MetricsOptions } from './metrics.js';
export { type OpsServerOptions, startOpsServer } from './server.js';
