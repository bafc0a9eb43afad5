/**
 * The log broker (`log:`): one structured-mode CloudEvent per line, with `data` the stored
 * payload byte for byte (line breaks outside strings removed) and a valid `time`.
 */
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { OutboxMessage } from '../../src/brokers/broker.js';
import { LogBroker } from '../../src/brokers/log.js';
import { ConfigError } from '../../src/index.js';
import { badInputSuite } from './bad-input.js';
import type { ReceivedMessage } from './conformance.js';

const SOURCE = '/edupulse/test';

/** A log broker writing into a stream this test reads back line by line. */
function logTarget() {
  const output = new PassThrough();
  const lines: string[] = [];
  let partial = '';
  output.setEncoding('utf8');
  output.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  const parse = (line: string): ReceivedMessage => {
    const { data: _data, ...attributes } = JSON.parse(line) as Record<string, unknown>;
    // The raw text after `"data":`: attribute values are JSON strings, whose quotes are
    // escaped, so this marker first appears where the data begins.
    const body = line.slice(line.indexOf(',"data":') + ',"data":'.length, -1);
    return {
      dedupId: String(attributes.id),
      attributes: attributes as Record<string, string>,
      contentType: String(attributes.datacontenttype),
      body,
    };
  };
  return { output, lines, parse };
}

badInputSuite({
  name: 'log',
  async target() {
    const { output, lines, parse } = logTarget();
    return {
      broker: () => new LogBroker({ source: SOURCE, output }),
      async consume() {
        const received: ReceivedMessage[] = [];
        let read = 0;
        const timer = setInterval(() => {
          for (; read < lines.length; read++) received.push(parse(lines[read] as string));
        }, 10);
        return { received, close: async () => clearInterval(timer) };
      },
      async cleanup() {
        output.destroy();
      },
    };
  },
});

describe('log broker', () => {
  const message = (payload: string): OutboxMessage => ({
    id: '6f1c2a9e-0000-4000-8000-000000000001',
    seq: '7',
    aggregateType: 'lesson',
    aggregateId: 'lesson-1',
    eventType: 'lesson-published',
    payload,
    headers: {},
    partition: 0,
    occurredAt: '2026-12-01T10:00:00.000000Z',
    attempts: 0,
  });

  it('writes the payload as stored: big numbers, duplicate keys and key order kept', async () => {
    const { output, lines, parse } = logTarget();
    const payload = '{"z": 12345678901234567890, "a": 1, "a": 2, "f": 1.50}';
    await new LogBroker({ source: SOURCE, output }).publish([message(payload)]);
    expect(lines).toHaveLength(1);
    expect(parse(lines[0] as string).body).toBe(payload);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ time: '2026-12-01T10:00:00.000000Z' });
  });

  it('keeps one event on one line by removing only the line breaks of a pretty payload', async () => {
    const { output, lines, parse } = logTarget();
    const payload = '{\r\n  "text": "a\\nb",\n  "list": [\n    1,\n    2\n  ]\n}';
    await new LogBroker({ source: SOURCE, output }).publish([message(payload)]);
    expect(lines).toHaveLength(1);
    expect(parse(lines[0] as string).body).toBe('{  "text": "a\\nb",  "list": [    1,    2  ]}');
    expect(JSON.parse(parse(lines[0] as string).body)).toEqual({ text: 'a\nb', list: [1, 2] });
  });

  it('a closed output (a pipe whose reader left) is a ConfigError that stops, not a crash', async () => {
    // As process.stdout does when `| head` has exited: the write fails, then 'error'.
    const output = new Writable({
      write(_chunk, _encoding, callback) {
        callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      },
    });
    const broker = new LogBroker({ source: SOURCE, output });
    for (let i = 0; i < 2; i++) {
      const error = await broker.publish([message('{}')]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toBe(
        'broker: log: the output is closed: write EPIPE; nothing more can be written (the events stay in the outbox)',
      );
    }
    await broker.close();
    expect(output.listenerCount('error')).toBe(0);
  });
});
