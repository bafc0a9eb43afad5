import type { Delivery } from '../brokers/source.js';
import { hasSqlState, hasSqlStateClass } from '../db/missing-table.js';
import { pgTextArray, statements } from '../db/sql/index.js';
import type { ConsumerSettings } from './options.js';

/** What was parked, for the `parked` event and the log. */
export interface Parked {
  origin: string;
  id: string | undefined;
  type: string | undefined;
  aggregateId: string | undefined;
  reason: string;
  /** Parked because it was older than its aggregate's last applied event. */
  stale: boolean;
}

/** The event fields known when the message was parked (none if it could not be decoded). */
export interface ParkedFields {
  id: string;
  /** The CloudEvent source: with the id, what makes the event one. */
  source: string;
  type: string;
  aggregateId: string;
  sequence: string | undefined;
}

/**
 * A value the dead letters' table refuses (a data exception, SQLSTATE class 22, or an
 * index entry over PostgreSQL's limit, 54000): parking the same fields again cannot help.
 */
export function unstorable(error: unknown): boolean {
  return hasSqlStateClass(error, '22') || hasSqlState(error, '54000');
}

// PostgreSQL text and jsonb cannot hold U+0000.
const withoutNul = (text: string) => text.replaceAll('\u0000', '\uFFFD');

/**
 * Stores the message as received, with the reason, in `consumer_dead_letter`. A dead
 * letter of the same event already there is parked anew: its retry, if `fromRetry`, is
 * over; otherwise the broker delivered the event again (a restart replays what was
 * parked but not yet past the ack floor or the committed offset), and a retry an
 * operator asked for meanwhile still waits.
 */
export async function parkMessage(
  settings: Pick<ConsumerSettings, 'database' | 'schema' | 'consumer'>,
  delivery: Delivery,
  fields: ParkedFields | undefined,
  reason: string,
  attempts: number,
  stale = false,
  fromRetry = false,
): Promise<Parked> {
  const sql = statements(settings.schema);
  const body = withoutNul(
    Buffer.from(delivery.body.buffer, delivery.body.byteOffset, delivery.body.byteLength).toString(
      'utf8',
    ),
  );
  // The protocol's content type (an AMQP property) is kept with the headers, so that a
  // retry decodes the message as it first came.
  const withType =
    delivery.contentType && !('content-type' in delivery.headers)
      ? { ...delivery.headers, 'content-type': delivery.contentType }
      : delivery.headers;
  const headers = JSON.stringify(withType).replace(/\\u0000/g, '\\ufffd');
  await settings.database.query(sql.consumerDeadLetterPark, [
    settings.consumer,
    fields?.id ?? null,
    fields?.type ?? null,
    fields?.aggregateId ?? null,
    fields?.sequence ?? null,
    delivery.origin,
    headers,
    body,
    attempts,
    withoutNul(reason),
    stale,
    fields?.source ?? '',
    delivery.aggregateType ?? null,
    fromRetry,
  ]);
  return {
    origin: delivery.origin,
    id: fields?.id,
    type: fields?.type,
    aggregateId: fields?.aggregateId,
    reason,
    stale,
  };
}

interface RetryRow {
  id: string;
  origin: string;
  headers: string;
  body: string;
  stale: boolean;
  routed_aggregate_type: string | null;
}

/** A dead letter an operator asked to retry, as a delivery. */
export interface RetryDelivery {
  /** The dead letter's id. */
  id: string;
  /** Its ack deletes the dead letter (unless it was parked anew meanwhile). */
  delivery: Delivery;
  /** Parked for being older than its aggregate's last applied event: the retry applies it after all. */
  stale: boolean;
  /** Gives the retry back, for the next consumer start to take, when this one will not finish it. */
  release(): Promise<void>;
}

/** Takes up to 100 of the consumer's dead letters an operator asked to retry. */
export async function takeRetryDeliveries(
  settings: Pick<ConsumerSettings, 'database' | 'schema' | 'consumer'>,
): Promise<RetryDelivery[]> {
  const sql = statements(settings.schema);
  const { rows } = await settings.database.query<RetryRow>(sql.consumerDeadLetterTakeRetries, [
    settings.consumer,
    100,
  ]);
  return rows.map((row) => {
    const headers = JSON.parse(row.headers) as Record<string, string>;
    const delivery: Delivery = {
      headers,
      contentType: headers['content-type'],
      body: Buffer.from(row.body, 'utf8'),
      // Once: a dead letter retried again keeps `retry of <where it first came from>`.
      origin: row.origin.startsWith('retry of ') ? row.origin : `retry of ${row.origin}`,
      // As the broker first routed it: another aggregate type's event stays refused.
      aggregateType: row.routed_aggregate_type ?? undefined,
      ack: async () => {
        await settings.database.query(sql.consumerDeadLetterResolve, [row.id]);
      },
    };
    const release = async () => {
      await settings.database.query(sql.consumerDeadLetterRelease, [row.id]);
    };
    return { id: row.id, delivery, stale: row.stale, release };
  });
}

/** Keeps the retries in flight taken (see consumerDeadLetterTouch). */
export async function keepRetries(
  settings: Pick<ConsumerSettings, 'database' | 'schema'>,
  ids: readonly string[],
): Promise<void> {
  await settings.database.query(statements(settings.schema).consumerDeadLetterTouch, [
    pgTextArray(ids),
  ]);
}
