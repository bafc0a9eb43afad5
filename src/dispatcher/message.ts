import type { OutboxMessage } from '../brokers/broker.js';
import { isPublishedHeader } from '../brokers/cloudevents.js';
import { clip, escapeControl, unsendableCharacter, unsendableReason } from '../common/text.js';

/** A row as the claim returns it (every value as text, see outboxClaim). */
export interface ClaimedRow {
  seq: string;
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: string;
  headers: string;
  partition: number;
  /** RFC 3339 in UTC; for a time no CloudEvent can carry, PostgreSQL's own text of it. */
  occurred_at: string;
  attempts: number;
}

/** A claimed row as a message, and why it can never be published, if it cannot. */
export interface CheckedMessage {
  message: OutboxMessage;
  /** `headers.traceparent: not a string (a number)`: names the column or field at fault. */
  problem?: string;
}

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function textProblem(field: string, text: string): string | undefined {
  const code = unsendableCharacter(text);
  return code === undefined ? undefined : `${field}: ${unsendableReason(code)}`;
}

function timeProblem(text: string): string | undefined {
  if (RFC3339_UTC.test(text)) return undefined;
  if (/infinity/i.test(text)) return `occurred_at: "${text}" is not a finite time`;
  return `occurred_at: "${clip(escapeControl(text), 60)}" is outside the years 0001-9999 a CloudEvents time can carry`;
}

/**
 * Checks once, when a row is claimed and whatever the broker, what makes a row unfit to be
 * a CloudEvent: a header value that is not a string, a time that is not a finite RFC 3339
 * time, a control character in a name. The table accepts all of these from raw SQL; such a
 * row is dead-lettered with the returned reason instead of reaching a broker adapter.
 */
export function toMessage(row: ClaimedRow): CheckedMessage {
  const rawHeaders = JSON.parse(row.headers) as Record<string, unknown>;
  const headers: Record<string, string> = {};
  const problems: string[] = [];
  for (const [name, value] of Object.entries(rawHeaders)) {
    if (typeof value === 'string') headers[name] = value;
    else problems.push(`headers.${clip(escapeControl(name), 60)}: not a string (${kindOf(value)})`);
  }
  const message: OutboxMessage = {
    id: row.id,
    seq: row.seq,
    aggregateType: row.aggregate_type,
    aggregateId: row.aggregate_id,
    eventType: row.event_type,
    payload: row.payload,
    headers,
    partition: Number(row.partition),
    occurredAt: row.occurred_at,
    attempts: Number(row.attempts),
  };
  const checks = [
    timeProblem(row.occurred_at),
    textProblem('event_type', row.event_type),
    textProblem('aggregate_type', row.aggregate_type),
    textProblem('aggregate_id', row.aggregate_id),
    ...Object.entries(headers).map(([name, value]) =>
      isPublishedHeader(name) ? textProblem(`headers.${name}`, value) : undefined,
    ),
  ];
  for (const problem of checks) if (problem) problems.push(problem);
  return problems.length > 0 ? { message, problem: problems.join('; ') } : { message };
}
