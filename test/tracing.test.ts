/**
 * Trace propagation with the application's own OpenTelemetry SDK (here: the in-memory
 * exporter): enqueue stores the active context with the event, the dispatcher opens a
 * PRODUCER span per publish linked to it, and the message carries that span's context.
 */
import { randomUUID } from 'node:crypto';
import {
  context,
  createTraceState,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type Sampler,
  SamplingDecision,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  cloudEventAttributes,
  createDispatcher,
  createOutbox,
  LessonPublished,
  MemoryBroker,
} from '../src/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';

const exporter = new InMemorySpanExporter();
/** Samples every span, or with `alternate` every other one (as a ratio sampler might). */
const sampling = { alternate: false, count: 0 };
const sampler: Sampler = {
  shouldSample: () => ({
    decision:
      sampling.alternate && sampling.count++ % 2 === 1
        ? SamplingDecision.NOT_RECORD
        : SamplingDecision.RECORD_AND_SAMPLED,
  }),
  toString: () => 'test sampler',
};
const provider = new BasicTracerProvider({
  sampler,
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
let t: TestSchema;

beforeAll(() => {
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});

afterAll(async () => {
  trace.disable();
  propagation.disable();
  context.disable();
  await provider.shutdown();
});

beforeEach(async () => {
  exporter.reset();
  Object.assign(sampling, { alternate: false, count: 0 });
  t = await createPgTestSchema('tracing');
  return () => t.drop();
});

const lesson = () =>
  LessonPublished.create({
    lesson_id: randomUUID(),
    author_id: randomUUID(),
    title: 'Traced',
    published_at: '2026-11-27T09:30:00Z',
  });

/** Enqueues inside an application span; returns the span's context and the event ids. */
async function enqueueInSpan(count: number) {
  const outbox = createOutbox({ schema: t.schema });
  const span = trace.getTracer('app').startSpan('publish lesson (app)');
  const ids = await context.with(trace.setSpan(context.active(), span), () =>
    t.db.transaction((tx) => outbox.enqueue(tx, Array.from({ length: count }, lesson))),
  );
  span.end();
  return { app: span.spanContext(), ids };
}

const traceparentOf = (ctx: { traceId: string; spanId: string }) =>
  new RegExp(`^00-${ctx.traceId}-${ctx.spanId}-0[01]$`);

describe('tracing', () => {
  it('stores the context at enqueue, and publishes under a linked PRODUCER span', async () => {
    const { app, ids } = await enqueueInSpan(2);
    const { rows } = await t.db.query<{ headers: Record<string, string> }>(
      `SELECT headers FROM "${t.schema}".outbox ORDER BY seq`,
    );
    for (const row of rows) expect(row.headers.traceparent).toMatch(traceparentOf(app));

    const broker = new MemoryBroker();
    const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker });
    await dispatcher.drain();
    await dispatcher.stop();

    const producers = exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.PRODUCER);
    expect(producers).toHaveLength(2);
    for (const [i, message] of broker.messages.entries()) {
      const span = producers.find((s) => s.attributes['messaging.message.id'] === message.id);
      expect(span, `a span for ${message.id}`).toBeDefined();
      if (!span) continue;
      expect(message.id).toBe(ids[i]);
      expect(span.name).toBe('publish lesson-published');
      expect(span.attributes['outbox.aggregate_type']).toBe('lesson');
      expect(span.status.code).not.toBe(SpanStatusCode.ERROR);
      // Linked to the producer's context, not a child of it.
      expect(span.links.map((link) => link.context.spanId)).toEqual([app.spanId]);
      expect(span.links[0]?.context.traceId).toBe(app.traceId);
      // The message carries the PRODUCER span's own context, also as the CloudEvent attribute.
      const own = span.spanContext();
      expect(message.headers.traceparent).toMatch(traceparentOf(own));
      expect(cloudEventAttributes(message, '/test').traceparent).toBe(message.headers.traceparent);
    }
  });

  it('keeps the stored context where the SDK has no propagator that writes traceparent', async () => {
    const { app } = await enqueueInSpan(1);
    const broker = new MemoryBroker();
    // A tracer provider and no propagator (OTEL_PROPAGATORS=none, or a setup built by hand).
    propagation.disable();
    try {
      const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker });
      await dispatcher.drain();
      await dispatcher.stop();
    } finally {
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    }
    expect(broker.messages[0]?.headers.traceparent).toMatch(traceparentOf(app));
  });

  it('starts a trace of its own for each message, though the dispatcher runs inside a span', async () => {
    const { app } = await enqueueInSpan(1);
    const broker = new MemoryBroker();
    const startup = trace.getTracer('app').startSpan('service start-up');
    await context.with(trace.setSpan(context.active(), startup), async () => {
      const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker });
      await dispatcher.drain();
      await dispatcher.stop();
    });
    startup.end();
    const [producer] = exporter
      .getFinishedSpans()
      .filter((span) => span.kind === SpanKind.PRODUCER);
    expect(producer?.parentSpanContext).toBeUndefined();
    expect(producer?.spanContext().traceId).not.toBe(startup.spanContext().traceId);
    expect(producer?.links.map((link) => link.context.spanId)).toEqual([app.spanId]);
  });

  it('gives every message a span of its own when the sampler records only some', async () => {
    await enqueueInSpan(6);
    sampling.alternate = true;
    const broker = new MemoryBroker();
    const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker });
    await dispatcher.drain();
    await dispatcher.stop();
    expect(broker.messages).toHaveLength(6);
    // Every recorded span ended; a span not sampled is carried on with its flags 00, so a
    // consumer's parent-based sampler leaves it out too.
    const producers = exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.PRODUCER);
    expect(producers).toHaveLength(3);
    const spanIds = new Set<string>();
    for (const message of broker.messages) {
      const carried = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/.exec(
        message.headers.traceparent ?? '',
      );
      expect(carried, message.headers.traceparent).not.toBeNull();
      const [, , spanId, flags] = carried as RegExpExecArray;
      spanIds.add(spanId as string);
      const recorded = producers.find((span) => span.spanContext().spanId === spanId);
      expect(flags).toBe(recorded ? '01' : '00');
      if (recorded) expect(recorded.attributes['messaging.message.id']).toBe(message.id);
    }
    expect(spanIds.size).toBe(6);
  });

  it('marks the span of a refused message as an error', async () => {
    await enqueueInSpan(1);
    const broker = new MemoryBroker({
      onPublish: () => ({ ok: false, error: 'no route', permanent: true }),
    });
    const dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker, maxAttempts: 1 });
    await dispatcher.drain();
    await dispatcher.stop();
    const [span] = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.PRODUCER);
    expect(span?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'no route' });
  });

  /** One event with the producer's own traceparent, one without; the headers stored. */
  const OWN = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  async function enqueueOwnAndPlain(): Promise<Record<string, string>[]> {
    const outbox = createOutbox({ schema: t.schema });
    await t.db.transaction(async (tx) => {
      await outbox.enqueue(
        tx,
        LessonPublished.create(lesson().payload, { headers: { traceparent: OWN } }),
      );
      await outbox.enqueue(tx, lesson());
    });
    const { rows } = await t.db.query<{ headers: Record<string, string> }>(
      `SELECT headers FROM "${t.schema}".outbox ORDER BY seq`,
    );
    return rows.map((row) => row.headers);
  }

  it('keeps headers the producer set itself, and adds none outside a span', async () => {
    expect(await enqueueOwnAndPlain()).toEqual([{ traceparent: OWN }, {}]);
  });

  it("pairs a producer's own traceparent with none of the active context's tracestate", async () => {
    const active = trace.setSpanContext(context.active(), {
      traceId: 'a'.repeat(32),
      spanId: 'b'.repeat(16),
      traceFlags: 1,
      traceState: createTraceState('vendor=active'),
    });
    expect(await context.with(active, enqueueOwnAndPlain)).toEqual([
      { traceparent: OWN },
      { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, tracestate: 'vendor=active' },
    ]);
  });
});
