/** The admin API's answers, as docs/console-api.yaml describes them. */

export interface Share {
  pending: number;
  oldestAgeSeconds: number;
}

export interface Dispatcher {
  pid: number;
  name: string;
  partitions: number[];
}

export interface Status {
  schema: string;
  partitions: number;
  pending: number;
  oldestAgeSeconds: number;
  pendingByPartition: Record<string, Share>;
  pendingByEventType: Record<string, Share>;
  deadLetters: number;
  oldestDeadLetterAgeSeconds: number;
  consumerDeadLetters: number;
  dispatchers: Dispatcher[];
}

export interface Overview {
  status: Status;
  dispatcher: {
    broker: string;
    brokerHealthy: boolean;
    brokerError?: string;
    published: number;
    retried: number;
    deadLettered: number;
  } | null;
}

export interface Sample {
  t: number;
  pending: number;
  oldestAgeSeconds: number;
  deadLetters: number;
  publishedPerSecond: number | null;
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
}

export interface History {
  intervalMs: number;
  samples: Sample[];
}

export interface PendingEvent {
  seq: string;
  id: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  partition: number;
  occurredAt: string;
  attempts: number;
  lastError?: string | null;
}

export interface DeadLetter extends PendingEvent {
  deadAt: string;
  lastError: string;
}

export interface DeadLetterDetail extends DeadLetter {
  payload: string;
  headers: Record<string, string>;
}

export interface DeadLetterGroup {
  eventType: string;
  error: string;
  count: number;
  firstDeadAt: string;
  lastDeadAt: string;
}

export interface ConsumerDeadLetter {
  id: string;
  consumer: string;
  eventId: string | null;
  eventType: string | null;
  aggregateId: string | null;
  sequence: string | null;
  origin: string;
  attempts: number;
  lastError: string;
  deadAt: string;
  retrying: boolean;
}

export interface SearchResult {
  pending: PendingEvent[];
  deadLetters: DeadLetter[];
  consumerDeadLetters: ConsumerDeadLetter[];
}

/** The dead-letter filter: every field narrows (the CLI's `dead` flags). */
export interface DeadLetterFilter {
  eventType?: string;
  aggregateType?: string;
  aggregateId?: string;
  error?: string;
  errorContains?: string;
  since?: string;
  until?: string;
}

/** Which dead letters a retry or discard touches: ids, or a filter. */
export type Selection = { ids: string[] } | { filter: DeadLetterFilter };
