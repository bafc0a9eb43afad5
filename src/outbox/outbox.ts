import { randomUUID } from 'node:crypto';
import { ValidationError } from '../common/errors.js';
import { activeTraceHeaders } from '../common/trace-context.js';
import { type TransactionLike, toExecutor } from '../db/executor.js';
import { quoteSchema } from '../db/identifier.js';
import { statements } from '../db/sql/index.js';
import { eventEnvelopeSchema, type OutboxEvent, parseOrThrow } from '../events/define.js';

export interface OutboxOptions {
  /** Schema holding the outbox tables. Default `public`. */
  schema?: string;
}

export interface Outbox {
  /**
   * Writes events into the outbox inside the caller's transaction, in one statement.
   * Commit and they will be published; roll back and they never existed. Every event is
   * validated first: an invalid one throws ValidationError and nothing is written.
   * The active OpenTelemetry context (when the application registered an SDK) is stored
   * with each event as `traceparent`/`tracestate` headers. Returns the event ids, in order.
   */
  enqueue(tx: TransactionLike, events: OutboxEvent | readonly OutboxEvent[]): Promise<string[]>;
}

interface Row {
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: unknown;
  headers: Record<string, string> | null;
  occurred_at: string | null;
}

function toRow(
  event: OutboxEvent,
  index: number,
  many: boolean,
  trace: Record<string, string> | undefined,
): Row {
  const prefix = many ? `events[${index}]` : '';
  const valid = parseOrThrow(eventEnvelopeSchema, event, prefix, event?.type ?? 'event');
  let json: string | undefined;
  try {
    json = JSON.stringify(valid.payload);
  } catch (error) {
    throw new ValidationError(
      `${prefix ? `${prefix}.` : ''}payload`,
      `is not JSON-serialisable (${valid.type})`,
      {
        cause: error,
      },
    );
  }
  if (json === undefined) {
    throw new ValidationError(`${prefix ? `${prefix}.` : ''}payload`, `is missing (${valid.type})`);
  }
  const occurredAt = valid.occurredAt;
  return {
    id: valid.id ?? randomUUID(),
    aggregate_type: valid.aggregateType,
    aggregate_id: valid.aggregateId,
    event_type: valid.type,
    payload: valid.payload,
    // The caller's own trace headers win over the active context.
    headers: trace ? { ...trace, ...valid.headers } : (valid.headers ?? null),
    occurred_at: occurredAt instanceof Date ? occurredAt.toISOString() : (occurredAt ?? null),
  };
}

/** The producer side: `createOutbox().enqueue(tx, LessonPublished.create({…}))`. */
export function createOutbox(options: OutboxOptions = {}): Outbox {
  const schema = options.schema ?? 'public';
  quoteSchema(schema);
  const sql = statements(schema);
  return {
    async enqueue(tx, events) {
      const list: readonly OutboxEvent[] = Array.isArray(events) ? events : [events as OutboxEvent];
      if (list.length === 0) return [];
      // Validate everything before touching the database: one bad event refuses the call.
      const traceHeaders = activeTraceHeaders();
      const trace = Object.keys(traceHeaders).length > 0 ? traceHeaders : undefined;
      const rows = list.map((event, index) => toRow(event, index, Array.isArray(events), trace));
      await toExecutor(tx).query(sql.outboxInsert, [JSON.stringify(rows)]);
      return rows.map((row) => row.id);
    },
  };
}
