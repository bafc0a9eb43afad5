import type { Delivery, MessageSource } from '../brokers/source.js';
import { errorMessage } from '../common/errors.js';
import { type DecodedCloudEvent, decodeCloudEvent, UndecodableMessageError } from './decode.js';
import type { AnyEventDefinition, ConsumedEvent } from './event.js';
import type { ParkedFields } from './park.js';

/** A message no handler will see: unreadable, of an unknown type, or with data its schema refuses. */
export class RejectedMessage extends Error {
  constructor(
    readonly kind: 'invalid' | 'unknown',
    message: string,
    readonly fields: ParkedFields | undefined,
    /** A type this consumer handles, routed under another aggregate type than its definition's. */
    readonly otherAggregate = false,
  ) {
    super(message);
  }
}

/**
 * The typed event a delivery carries, or a RejectedMessage saying why there is none: not a
 * CloudEvent (`invalid`), a type no definition declares (`unknown`), or data its schema
 * refuses (`invalid`, naming the field).
 */
export function toConsumedEvent(
  binding: MessageSource['binding'],
  definitions: ReadonlyMap<string, AnyEventDefinition>,
  delivery: Delivery,
): ConsumedEvent {
  let cloudEvent: DecodedCloudEvent;
  try {
    cloudEvent = decodeCloudEvent(binding, delivery);
  } catch (error) {
    // Headers that named the event keep it findable by its id, as one parked after decoding.
    const known = error instanceof UndecodableMessageError ? error.known : undefined;
    throw new RejectedMessage('invalid', errorMessage(error), known);
  }
  const fields: ParkedFields = {
    id: cloudEvent.id,
    source: cloudEvent.source,
    type: cloudEvent.type,
    aggregateId: cloudEvent.aggregateId,
    sequence: cloudEvent.sequence,
  };
  const definition = definitions.get(cloudEvent.type);
  if (!definition) {
    throw new RejectedMessage(
      'unknown',
      `event type "${cloudEvent.type}" is not one this consumer handles`,
      fields,
    );
  }
  // Another aggregate type's event of the same name (a student's `created` to a consumer
  // of a course's): not this definition's, whose data and aggregate it would be taken for.
  const routed = delivery.aggregateType;
  if (routed !== undefined && routed !== definition.aggregateType) {
    throw new RejectedMessage(
      'unknown',
      `event type "${cloudEvent.type}" of aggregate type "${routed}" is not one this consumer handles (it handles "${cloudEvent.type}" of "${definition.aggregateType}")`,
      fields,
      true,
    );
  }
  let data: unknown;
  try {
    data = definition.parse(cloudEvent.data);
  } catch (error) {
    throw new RejectedMessage('invalid', errorMessage(error), fields);
  }
  return {
    id: cloudEvent.id,
    type: cloudEvent.type,
    source: cloudEvent.source,
    subject: cloudEvent.subject,
    time: cloudEvent.time,
    sequence: cloudEvent.sequence,
    aggregateType: definition.aggregateType,
    aggregateId: cloudEvent.aggregateId,
    data,
    traceparent: cloudEvent.traceparent,
    tracestate: cloudEvent.tracestate,
    extensions: cloudEvent.extensions,
    origin: delivery.origin,
    attempt: 1,
  };
}
