/**
 * OpenTelemetry context carried from the enqueuing transaction to the broker message. Only
 * the API is a dependency: without an SDK registered by the application, every call here
 * is a no-op and no header is written.
 */
import { context, propagation, trace } from '@opentelemetry/api';

/** The library's tracer (a no-op one until an SDK is registered). */
export const tracer = () => trace.getTracer('edupulse-outbox');

/** The W3C trace-context headers an event carries. */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

/**
 * The active OpenTelemetry context as W3C trace headers (`traceparent`, `tracestate`),
 * stored with each event at enqueue; empty without an SDK or an active span.
 */
export function activeTraceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const headers: Record<string, string> = {};
  for (const name of TRACE_HEADERS) {
    const value = carrier[name];
    if (value) headers[name] = value;
  }
  return headers;
}
