/**
 * consume() on RabbitMQ: the consumer conformance suite. Each target has its own exchange
 * on the machine's RabbitMQ; its queues and the exchange are deleted afterwards. The
 * outage target reaches RabbitMQ through a TCP proxy the test cuts.
 */
import amqp from 'amqplib';
import { afterAll } from 'vitest';
import { AMQP_URL, testExchange, withAmqpChannel } from '../helpers/amqp.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { type ConsumerHarness, consumerConformance } from './conformance.js';

const proxies: TcpProxy[] = [];
afterAll(async () => {
  for (const proxy of proxies) await proxy.stop();
});

const harness: ConsumerHarness = {
  name: 'amqp',
  deliversUnknownTypes: false,
  async target(options) {
    const exchange = testExchange();
    const shared = new URL(AMQP_URL);
    let server = AMQP_URL;
    let outage: { stop(): Promise<void>; start(): Promise<void> } | undefined;
    if (options?.outage) {
      const proxy = await startTcpProxy({
        host: shared.hostname,
        port: Number(shared.port || 5672),
      });
      proxies.push(proxy);
      const through = new URL(AMQP_URL);
      through.port = String(proxy.port);
      server = through.href.replace(/\/$/, '');
      outage = { stop: () => proxy.stop(), start: () => proxy.start() };
    }
    return {
      // accept_unroutable: an event type no queue is bound for is dropped, as RabbitMQ does.
      url: `${server}?exchange=${exchange}&accept_unroutable=true`,
      outage,
      async publishRaw(message) {
        // A confirm channel: closing right after a plain publish may drop it unsent.
        const connection = await amqp.connect(AMQP_URL);
        try {
          const channel = await connection.createConfirmChannel();
          channel.publish(
            exchange,
            `${message.aggregateType}.${message.eventType}`,
            Buffer.from(message.body),
            { contentType: message.contentType, headers: message.headers, persistent: true },
          );
          await channel.waitForConfirms();
        } finally {
          await connection.close();
        }
      },
      consumerName: (base) => base,
      cleanup: (consumers) =>
        withAmqpChannel(async (channel) => {
          for (const consumer of consumers) await channel.deleteQueue(`${exchange}.${consumer}`);
          await channel.deleteExchange(exchange);
        }),
    };
  },
};

consumerConformance(harness);
