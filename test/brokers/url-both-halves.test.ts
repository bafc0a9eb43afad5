/**
 * One broker URL for both halves: the dispatcher takes the consumer's parameters (and
 * checks them) and the consumer the dispatcher's, so a service may give both the same
 * setting. Built without connecting: no server needed.
 */
import { describe, expect, it } from 'vitest';
import { brokerFromUrl, sourceFromUrl } from '../../src/brokers/index.js';
import { silentLogger } from '../../src/common/logger.js';
import { ConfigError } from '../../src/index.js';

const urls = [
  'nats://127.0.0.1:4222?stream=BOTH&max_in_flight=64&ack_wait_s=60&deliver=new',
  'amqp://guest:guest@127.0.0.1:5672?exchange=both&max_in_flight=64&queue_type=quorum&queue=both.q',
  'kafka://127.0.0.1:9092?partitions=6&from=latest&session_timeout_ms=20000&group_instance_id=pod-1',
];

describe('a broker URL with the parameters of both halves', () => {
  it.each(urls)('%s: taken by the dispatcher and by the consumer', (url) => {
    expect(() => brokerFromUrl(url, { source: '/test' })).not.toThrow();
    const options = {
      consumer: 'c',
      maxInFlight: 16,
      events: [{ type: 'quiz-submitted', aggregateType: 'quiz' }],
      logger: silentLogger,
    };
    expect(() => sourceFromUrl(url, options)).not.toThrow();
  });

  it('takes every URL it took before: an exchange of the longest name RabbitMQ allows', () => {
    const url = `amqp://guest:guest@127.0.0.1:5672?exchange=${'e'.repeat(255)}`;
    expect(() => brokerFromUrl(url, { source: '/test' })).not.toThrow();
  });

  it("the dispatcher checks the consumer's parameters as the consumer would", () => {
    for (const [url, text] of [
      ['amqp://guest:guest@127.0.0.1:5672?queue_type=lazy', /queue_type="lazy"/],
      ['kafka://127.0.0.1:9092?from=yesterday', /from="yesterday"/],
      ['nats://127.0.0.1:4222?deliver=last', /deliver="last"/],
    ] as const) {
      const build = () => brokerFromUrl(url, { source: '/test' });
      expect(build, url).toThrow(ConfigError);
      expect(build, url).toThrow(text);
    }
  });
});
