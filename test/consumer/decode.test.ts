import { describe, expect, it } from 'vitest';
import { headerValue } from '../../src/brokers/nats/subjects.js';
import { decodeCloudEvent, type UndecodableMessageError } from '../../src/consumer/decode.js';
import {
  binaryModeHeaders,
  bindingPrefix,
  type OutboxMessage,
  structuredCloudEvent,
} from '../../src/index.js';

const message: OutboxMessage = {
  id: '0b6b6a43-4bb5-4d0c-9a55-0f2f0b8a9c11',
  seq: '42',
  aggregateType: 'quiz',
  aggregateId: 'quiz 7 ü',
  eventType: 'quiz-submitted',
  payload: '{"quiz_id":"q","score":12345678901234567890}',
  headers: {
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    tenant: 'north ü 100%',
    'x-request-id': 'stays in the row',
    type: 'not the type',
  },
  partition: 3,
  occurredAt: '2026-12-01T10:00:00.000000Z',
  attempts: 0,
};
const body = new TextEncoder().encode(message.payload);

describe('decodeCloudEvent', () => {
  it('reads binary mode as the dispatcher publishes it, on each binding', () => {
    const nats = binaryModeHeaders(message, 'svc', bindingPrefix.nats);
    const natsEncoded = Object.fromEntries(
      Object.entries(nats).map(([k, v]) => [k, headerValue(v)]),
    );
    const kafka = binaryModeHeaders(message, 'svc', bindingPrefix.kafka);
    const { 'content-type': contentType, ...amqp } = binaryModeHeaders(
      message,
      'svc',
      bindingPrefix.amqp,
    );
    const cases = [
      decodeCloudEvent('nats', { headers: natsEncoded, contentType: undefined, body }),
      decodeCloudEvent('kafka', { headers: kafka, contentType: undefined, body }),
      decodeCloudEvent('amqp', { headers: amqp, contentType, body }),
    ];
    for (const event of cases) {
      expect(event).toMatchObject({
        id: message.id,
        type: 'quiz-submitted',
        source: 'svc',
        subject: 'quiz 7 ü',
        aggregateId: 'quiz 7 ü',
        sequence: '42',
        time: message.occurredAt,
        traceparent: message.headers.traceparent,
      });
      // Headers named as extension attributes travel; others, and the outbox's own names, do not.
      expect(event.extensions).toEqual({ tenant: 'north ü 100%' });
      expect(event.data).toEqual(JSON.parse(message.payload));
    }
  });

  it('reads structured mode, with data or data_base64', () => {
    const text = structuredCloudEvent(message, 'svc');
    const event = decodeCloudEvent('amqp', {
      headers: {},
      contentType: 'application/cloudevents+json; charset=utf-8',
      body: new TextEncoder().encode(text),
    });
    expect(event).toMatchObject({
      id: message.id,
      type: 'quiz-submitted',
      sequence: '42',
      aggregateId: 'quiz 7 ü',
      extensions: { tenant: 'north ü 100%' },
    });
    const base64 = JSON.stringify({
      specversion: '1.0',
      id: 'other-1',
      source: 'other',
      type: 'quiz-submitted',
      partitionkey: 'q1',
      data_base64: Buffer.from('{"score":3}').toString('base64'),
    });
    const other = decodeCloudEvent('kafka', {
      headers: { 'content-type': 'application/cloudevents+json' },
      contentType: undefined,
      body: new TextEncoder().encode(base64),
    });
    expect(other).toMatchObject({
      id: 'other-1',
      aggregateId: 'q1',
      sequence: undefined,
      data: { score: 3 },
    });
    const garbled = JSON.stringify({ ...JSON.parse(base64), data_base64: '!!!not base64***' });
    expect(() =>
      decodeCloudEvent('kafka', {
        headers: { 'content-type': 'application/cloudevents+json' },
        contentType: undefined,
        body: new TextEncoder().encode(garbled),
      }),
    ).toThrow('structured CloudEvent: data_base64 is not base64');
  });

  it("reads the NATS binding's structured mode: no headers, the event as the payload", () => {
    const text = structuredCloudEvent(message, 'svc');
    const headerless = {
      headers: {},
      contentType: undefined,
      body: new TextEncoder().encode(text),
    };
    expect(decodeCloudEvent('nats', headerless)).toMatchObject({
      id: message.id,
      type: 'quiz-submitted',
      aggregateId: 'quiz 7 ü',
      data: JSON.parse(message.payload),
    });
    // Kafka and AMQP say structured mode with the content type; without it, not a CloudEvent.
    expect(() => decodeCloudEvent('kafka', headerless)).toThrow(
      /not a CloudEvent: no ce_\* headers/,
    );
    // A NATS payload that is JSON but no CloudEvent stays refused as before.
    expect(() =>
      decodeCloudEvent('nats', { ...headerless, body: new TextEncoder().encode('{"score":3}') }),
    ).toThrow(/not a CloudEvent: no ce-\* headers and content type absent/);
  });

  it('refuses what it cannot read, saying why', () => {
    const bytes = (text: string) => new TextEncoder().encode(text);
    const kafka = binaryModeHeaders(message, 'svc', bindingPrefix.kafka);
    const refuse =
      (headers: Record<string, string>, payload: Uint8Array, contentType?: string) => () =>
        decodeCloudEvent('kafka', { headers, contentType, body: payload });
    expect(refuse({}, body)).toThrow(/not a CloudEvent: no ce_\* headers/);
    expect(refuse({ ...kafka, ce_specversion: '0.3' }, body)).toThrow(
      /specversion "0.3" is not 1.0/,
    );
    const { ce_id: _id, ...noId } = kafka;
    expect(refuse(noId, body)).toThrow(/attribute "id" is missing/);
    const { ce_subject: _s, ce_partitionkey: _p, ...noAggregate } = kafka;
    expect(refuse(noAggregate, body)).toThrow(/neither "subject" nor "partitionkey"/);
    expect(refuse(kafka, bytes('{"score":'))).toThrow(/body is not valid JSON/);
    expect(refuse(kafka, new Uint8Array([0xff, 0xfe]))).toThrow(/not valid UTF-8/);
    expect(refuse({ ...kafka, 'content-type': 'application/avro' }, body)).toThrow(
      /"application\/avro" is not JSON/,
    );
    expect(refuse({}, bytes('[1]'), 'application/cloudevents+json')).toThrow(
      /body is not a JSON object/,
    );
    // NATS: the binding's ce-datacontenttype says what the data is, even when the body
    // would parse as JSON.
    const nats = binaryModeHeaders(message, 'svc', bindingPrefix.nats);
    const natsText = { ...nats, 'ce-datacontenttype': 'text/plain' };
    expect(() =>
      decodeCloudEvent('nats', { headers: natsText, contentType: undefined, body }),
    ).toThrow(/"text\/plain" is not JSON/);
    const natsOnlyCe: Record<string, string> = {
      ...nats,
      'ce-datacontenttype': 'application/json',
    };
    delete natsOnlyCe['content-type'];
    expect(
      decodeCloudEvent('nats', { headers: natsOnlyCe, contentType: undefined, body }).data,
    ).toEqual(JSON.parse(message.payload));
  });

  it('says a batch is a batch, and what the headers of unreadable data named', () => {
    const bytes = (text: string) => new TextEncoder().encode(text);
    const batch = JSON.stringify([{ specversion: '1.0', id: 'a', type: 't', source: 's' }]);
    const refusal = (
      headers: Record<string, string>,
      payload: Uint8Array,
      contentType?: string,
    ) => {
      try {
        decodeCloudEvent('kafka', { headers, contentType, body: payload });
      } catch (error) {
        return error as UndecodableMessageError;
      }
      throw new Error('decoded');
    };
    // Headers of another kind (an id, as an AMQP message id) do not hide what it is.
    expect(refusal({}, bytes(batch), 'application/cloudevents-batch+json').message).toMatch(
      /^a CloudEvents batch \(application\/cloudevents-batch\+json\), parked whole/,
    );
    // Binary mode whose headers name the whole event: the event is known by them.
    const kafka = binaryModeHeaders(message, 'svc', bindingPrefix.kafka);
    expect(refusal(kafka, bytes('{bad')).known).toEqual({
      id: message.id,
      source: 'svc',
      type: 'quiz-submitted',
      aggregateId: 'quiz 7 ü',
      sequence: '42',
    });
    expect(refusal({ ...kafka, 'content-type': 'text/csv' }, body).known?.id).toBe(message.id);
    // Headers that are not a whole event name nothing.
    const { ce_id: _id, ...noId } = kafka;
    expect(refusal(noId, bytes('{bad')).known).toBeUndefined();
  });

  it('counts an aggregate id in characters, as the producer does: 500 emoji are taken', () => {
    const of = (aggregateId: string) => {
      const headers = binaryModeHeaders({ ...message, aggregateId }, 'svc', bindingPrefix.kafka);
      return () => decodeCloudEvent('kafka', { headers, contentType: undefined, body });
    };
    // 1,000 UTF-16 units, 500 characters: what enqueue accepts.
    expect(of('😀'.repeat(500))().aggregateId).toBe('😀'.repeat(500));
    expect(of('😀'.repeat(501))).toThrow(
      'CloudEvent attribute "subject" is 501 characters long, over the 500 a consumer keeps',
    );
  });

  /** The Kafka binding's headers of `message`, with `changed` over them, decoded. */
  const decodedWith = (changed: Record<string, string>) =>
    decodeCloudEvent('kafka', {
      headers: { ...binaryModeHeaders(message, 'svc', bindingPrefix.kafka), ...changed },
      contentType: undefined,
      body,
    });

  it('parks keys that bytes not UTF-8 or control characters made: two ids must not read as one', () => {
    // What a Kafka or NATS header of the bytes 6e ff decodes to.
    const mangled = Buffer.from([0x6e, 0xff]).toString('utf8');
    const decode = (headers: Record<string, string>) => () => decodedWith(headers);
    expect(decode({ ce_id: mangled })).toThrow(
      /attribute "id" holds U\+FFFD, the replacement character: bytes that were not UTF-8/,
    );
    expect(decode({ ce_source: `/svc${mangled}` })).toThrow(/attribute "source" holds U\+FFFD/);
    // An aggregate id with it goes through: the producer sends such ids, and one merged
    // with another loses nothing (their events are kept in one order).
    expect(decodedWith({ ce_subject: `quiz-${mangled}` }).aggregateId).toBe(`quiz-${mangled}`);
    expect(decode({ ce_subject: 'quiz-7\u001b[2J' })).toThrow(
      /attribute "subject" contains U\+001B, a character no CloudEvents attribute may carry/,
    );
    expect(decode({ ce_source: 'svc\r\nx' })).toThrow(/attribute "source" contains U\+000D/);
    // A producer's source may be 2,048 characters: only the keys the inbox indexes are kept to 500.
    const longSource = `/platform/${'s'.repeat(2000)}`;
    expect(decodedWith({ ce_source: longSource }).source).toBe(longSource);
  });

  it('takes a time that is not RFC 3339 as none', () => {
    const timeOf = (value: string) => decodedWith({ ce_time: value }).time;
    expect(timeOf('2026-12-01T10:00:00.123456Z')).toBe('2026-12-01T10:00:00.123456Z');
    expect(timeOf('2026-12-01T11:00:00+01:00')).toBe('2026-12-01T11:00:00+01:00');
    expect(timeOf('yesterday')).toBeUndefined();
    expect(timeOf('2026-13-45T10:00:00Z')).toBeUndefined();
    expect(timeOf('1733050000')).toBeUndefined();
    // What Date.parse would roll over to another day.
    expect(timeOf('2026-02-30T10:00:00Z')).toBeUndefined();
    expect(timeOf('2026-12-01T24:00:00Z')).toBeUndefined();
    expect(timeOf('2028-02-29T10:00:00Z')).toBe('2028-02-29T10:00:00Z');
  });

  it('keeps a sequence only when it is decimal digits, without padding', () => {
    const kafka = binaryModeHeaders(message, 'svc', bindingPrefix.kafka);
    expect(kafka.ce_sequence).toBe('0000000000000000042');
    const odd = decodeCloudEvent('kafka', {
      headers: { ...kafka, ce_sequence: 'abc' },
      contentType: undefined,
      body,
    });
    expect(odd.sequence).toBeUndefined();
    const sequenceOf = (value: string) => decodedWith({ ce_sequence: value }).sequence;
    // Any padding; up to PostgreSQL's bigint, which the inbox keeps it in.
    expect(sequenceOf('00000000000000000000042')).toBe('42');
    expect(sequenceOf('9223372036854775807')).toBe('9223372036854775807');
    expect(sequenceOf('9223372036854775808')).toBeUndefined();
    expect(sequenceOf('9'.repeat(30))).toBeUndefined();
    expect(sequenceOf('-5')).toBeUndefined();
  });
});
