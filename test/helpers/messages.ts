import { randomUUID } from 'node:crypto';
import type { OutboxMessage } from '../../src/brokers/broker.js';

let seq = 0;

/** An outbox row as a broker receives it: a lesson-published event with a trace context, unless overridden. */
export function outboxMessage(overrides: Partial<OutboxMessage> = {}): OutboxMessage {
  seq++;
  return {
    id: randomUUID(),
    seq: String(seq),
    aggregateType: 'lesson',
    aggregateId: `lesson-${seq}`,
    eventType: 'lesson-published',
    payload: '{}',
    headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    partition: 0,
    occurredAt: new Date().toISOString(),
    attempts: 0,
    ...overrides,
  };
}

/** A quiz-submitted row of `aggregateId` that QuizSubmitted accepts, unless `payload` is given. */
export function quizMessage(
  aggregateId: string,
  { score = 1, payload }: { score?: number; payload?: string } = {},
): OutboxMessage {
  return outboxMessage({
    aggregateType: 'quiz',
    aggregateId,
    eventType: 'quiz-submitted',
    headers: {},
    payload:
      payload ??
      JSON.stringify({
        quiz_id: aggregateId,
        student_id: randomUUID(),
        score,
        submitted_at: '2026-12-01T10:00:00Z',
      }),
  });
}
