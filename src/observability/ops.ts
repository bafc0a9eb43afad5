/**
 * `edupulse-outbox/metrics`: the operations endpoints for a dispatcher you start
 * yourself. A separate entry point, so services that only enqueue never load the
 * Prometheus client.
 *
 *   const registry = dispatcherMetrics({ dispatcher, db, schema: 'public', broker: 'nats' });
 *   await startOpsServer({ port: 9464, registry, dispatcher, db, schema: 'public' });
 */
export {
  type CheckResult,
  type HealthOptions,
  liveness,
  type OpsServerOptions,
  readiness,
  startOpsServer,
} from './health.js';
export { dispatcherMetrics, type MetricsOptions } from './metrics.js';
