import { errorMessage } from '../../common/errors.js';
import { formatBytes } from '../../common/text.js';
import { type PublishResult, published } from '../broker.js';
import { type Entry, entryPartition, partitionKey } from './records.js';

/** Broker refusals that concern the message itself: sending it unchanged will fail again. */
export const permanentErrors = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_RECORD',
  'INVALID_TIMESTAMP',
]);

/** Errors that refuse this client as a whole, not one message: reported as unavailability. */
export const clientRefusals = new Set([
  'CLUSTER_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
  'ILLEGAL_SASL_STATE',
  'UNSUPPORTED_SASL_MECHANISM',
]);

/** A partition's error in a produce response. */
export interface PartitionFailure {
  reason: string;
  permanent: boolean;
}

/**
 * Fills in the results of a send that failed, partition by partition; returns the entries
 * to send again alone, to find which record of a refused partition batch is at fault.
 */
export function settleFailedSend(
  error: unknown,
  entries: readonly Entry[],
  results: PublishResult[],
  isolate: boolean,
): Entry[] {
  const failures = partitionFailures(error);
  const batchSizes = countBy(entries, entryPartition);
  const again: Entry[] = [];
  for (const entry of entries) {
    const failure = failures.get(entryPartition(entry));
    const shared = (batchSizes.get(entryPartition(entry)) ?? 0) > 1;
    if (failure === null) results[entry.index] = published;
    else if (failure === undefined)
      results[entry.index] = { ok: false, permanent: false, error: describeError(error) };
    else if (failure.permanent && isolate && shared) again.push(entry);
    else {
      results[entry.index] = {
        ok: false,
        permanent: failure.permanent,
        error: shared ? failure.reason : `${failure.reason}${sizeHint(failure.reason, entry)}`,
      };
    }
  }
  return again;
}

/**
 * For a record refused alone as too large: its size and where the limit is set, which
 * the server's reason does not say.
 */
function sizeHint(reason: string, entry: Entry): string {
  if (!reason.startsWith('MESSAGE_TOO_LARGE') && !reason.startsWith('RECORD_LIST_TOO_LARGE')) {
    return '';
  }
  const { record } = entry;
  let bytes = Buffer.byteLength(record.value ?? '') + Buffer.byteLength(record.key ?? '');
  const headers = record.headers;
  const pairs = headers instanceof Map ? [...headers] : Object.entries(headers ?? {});
  for (const [name, value] of pairs) bytes += name.length + value.length;
  return ` (a record of about ${formatBytes(bytes)} with its key and headers, to topic "${record.topic}": over the topic's max.message.bytes or the broker's message.max.bytes)`;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

/** The tree of errors the client nests (retries, one request per leader, one per partition). */
export function* errorTree(error: unknown): Generator<ClientError> {
  if (!error || typeof error !== 'object') return;
  const node = error as ClientError;
  yield node;
  for (const child of node.errors ?? []) yield* errorTree(child);
  if (node.cause) yield* errorTree(node.cause);
}

export interface ClientError {
  code?: string;
  message?: string;
  apiId?: string;
  serverErrorMessage?: string | null;
  /** Where in the response a protocol error was found: `/responses/0/partition_responses/1`. */
  path?: string;
  errors?: unknown[];
  cause?: unknown;
  response?: ProduceResponse;
}

interface ProduceResponse {
  responses?: {
    name: string;
    partitionResponses?: { index: number; errorCode: number; errorMessage: string | null }[];
  }[];
}

/**
 * The ACL that refused the client (`TOPIC_AUTHORIZATION_FAILED: …` with what it needs), or
 * undefined. Every event would be refused the same way and no retry can help: a setting.
 */
export function authorizationRefusal(error: unknown): string | undefined {
  for (const node of errorTree(error)) {
    const needs = node.apiId ? aclNeeded[node.apiId] : undefined;
    if (needs) return `${reason(node)} (${needs})`;
  }
  return undefined;
}

const aclNeeded: Record<string, string> = {
  TOPIC_AUTHORIZATION_FAILED: 'the user needs WRITE and DESCRIBE on the topic',
  CLUSTER_AUTHORIZATION_FAILED:
    'the idempotent producer needs IDEMPOTENT_WRITE on the cluster, which WRITE on any topic implies',
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 'the user needs WRITE on the transactional id',
};

/** The server cannot be reached or refuses this client: no message is at fault. */
export function isUnavailable(error: unknown): boolean {
  for (const node of errorTree(error)) {
    if (node.code === 'PLT_KFK_NETWORK' || node.code === 'PLT_KFK_AUTHENTICATION') return true;
    if (node.apiId && clientRefusals.has(node.apiId)) return true;
  }
  return false;
}

export function findProtocolError(error: unknown): ClientError | undefined {
  for (const node of errorTree(error)) if (node.apiId) return node;
  return undefined;
}

/**
 * Per partition of the produce responses in `error`: `null` when the partition's batch was
 * written, its failure otherwise. A partition absent from the map got no answer. A send
 * goes to each leader at once; the error holds the answers of the leaders that refused,
 * and `produced.offsets` the partitions the others wrote.
 */
function partitionFailures(error: unknown): Map<string, PartitionFailure | null> {
  const outcomes = new Map<string, PartitionFailure | null>();
  const written = (error as { produced?: { offsets?: unknown } } | null)?.produced?.offsets;
  if (Array.isArray(written)) {
    for (const { topic, partition } of written as { topic: string; partition: number }[]) {
      outcomes.set(partitionKey(topic, partition), null);
    }
  }
  for (const node of errorTree(error)) {
    if (node.code !== 'PLT_KFK_RESPONSE' || !node.response?.responses) continue;
    const protocolErrors = (node.errors ?? []) as ClientError[];
    node.response.responses.forEach(({ name, partitionResponses = [] }, i) => {
      partitionResponses.forEach(({ index, errorCode }, j) => {
        const path = `/responses/${i}/partition_responses/${j}`;
        const failure = protocolErrors.find((e) => e.path === path);
        outcomes.set(
          partitionKey(name, index),
          errorCode === 0 ? null : partitionFailure(failure, errorCode),
        );
      });
    });
  }
  return outcomes;
}

function partitionFailure(error: ClientError | undefined, errorCode: number): PartitionFailure {
  if (!error) return { reason: `Kafka error code ${errorCode}`, permanent: false };
  return { reason: reason(error), permanent: permanentErrors.has(error.apiId ?? '') };
}

/** `MESSAGE_TOO_LARGE: The request included a message larger than …` (the server's words if it sent any). */
export function reason(error: ClientError): string {
  return `${error.apiId}: ${error.serverErrorMessage || error.message}`;
}

/** The innermost useful text of a client error: `fetch failed 4 times` says little. */
export function describeError(error: unknown): string {
  const messages: string[] = [];
  for (const node of errorTree(error)) {
    const text = node.apiId ? reason(node) : node.message;
    if (text && !node.errors?.length && !messages.includes(text)) messages.push(text);
  }
  return messages.length > 0 ? messages.slice(-3).join('; ') : errorMessage(error);
}
