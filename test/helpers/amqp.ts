/**
 * RabbitMQ for tests through amqplib directly, never through the broker under test: an
 * independent consumer, and declarations / clean-up on the shared server.
 */
import { randomBytes } from 'node:crypto';
import amqp, { type Channel, type ConsumeMessage } from 'amqplib';
import type { Consumer, ReceivedMessage } from '../brokers/conformance.js';

/** The RabbitMQ the tests use: `AMQP_URL`, else the local server with the default user. */
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

const cloudEventsPrefix = 'cloudEvents:';

/** A fresh exchange name per test, so tests share the server without seeing each other. */
export function testExchange(): string {
  return `t.${randomBytes(6).toString('hex')}`;
}

/** Runs `use` on a channel of its own connection, then closes both. */
export async function withAmqpChannel<T>(use: (channel: Channel) => Promise<T>): Promise<T> {
  const connection = await amqp.connect(AMQP_URL);
  // A channel error (e.g. a failed declaration) also arrives as an event; the rejected
  // promise is what the caller sees.
  connection.on('error', () => {});
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    return await use(channel);
  } finally {
    await connection.close().catch(() => {});
  }
}

export async function deleteExchange(exchange: string): Promise<void> {
  await withAmqpChannel((channel) => channel.deleteExchange(exchange));
}

/** After a consumer test: the queues `consume()` declared for these consumers, then the exchange; errors ignored. */
export async function deleteConsumerQueues(
  exchange: string,
  ...consumers: string[]
): Promise<void> {
  await withAmqpChannel(async (channel) => {
    for (const consumer of consumers) await channel.deleteQueue(`${exchange}.${consumer}`);
    await channel.deleteExchange(exchange);
  }).catch(() => {});
}

/** What the independent consumer reads from a delivery. */
export function receivedMessage(message: ConsumeMessage): ReceivedMessage {
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) {
    if (name.startsWith(cloudEventsPrefix)) {
      attributes[name.slice(cloudEventsPrefix.length)] = String(value);
    }
  }
  return {
    dedupId: String(message.properties.messageId),
    attributes,
    contentType: String(message.properties.contentType),
    body: message.content.toString('utf8'),
  };
}

export interface AmqpConsumer extends Consumer {
  /** The deliveries as amqplib gave them, for property checks (delivery mode, timestamp). */
  readonly deliveries: ConsumeMessage[];
}

export interface ConsumeExchangeOptions {
  /**
   * A quorum queue instead of the exclusive classic one: replicated on every node of a
   * cluster, so it outlives the loss of one. Quorum queues cannot be exclusive: this one
   * is durable and named, and close() deletes it. With `leaderUrl`, it is declared through
   * that server, which RabbitMQ then makes the queue's leader (its default leader locator
   * is the declaring client's node).
   */
  quorum?: { leaderUrl?: string };
}

/**
 * Consumes everything routed to `exchange` with `pattern`, on an exclusive server-named
 * queue that goes with the connection (or a quorum queue). Declares the exchange as the
 * broker does (durable topic), since the consumer may start first. `url`: another server
 * than the shared one.
 */
export async function consumeExchange(
  exchange: string,
  pattern: string,
  url = AMQP_URL,
  { quorum }: ConsumeExchangeOptions = {},
): Promise<AmqpConsumer> {
  const connection = await amqp.connect(url);
  connection.on('error', () => {});
  const channel = await connection.createChannel();
  const queue = quorum
    ? await declareQuorumQueue(`${exchange}.quorum`, quorum.leaderUrl ?? url)
    : (await channel.assertQueue('', { exclusive: true, autoDelete: true })).queue;
  await channel.assertExchange(exchange, 'topic', { durable: true });
  await channel.bindQueue(queue, exchange, pattern);
  const received: ReceivedMessage[] = [];
  const deliveries: ConsumeMessage[] = [];
  // A quorum queue's deliveries are acknowledged, so that those a leader change cuts off
  // on the way are delivered again rather than counted as lost by the test.
  if (quorum) await channel.prefetch(1000);
  await channel.consume(
    queue,
    (message) => {
      if (!message) return;
      deliveries.push(message);
      received.push(receivedMessage(message));
      if (quorum) channel.ack(message);
    },
    { noAck: !quorum },
  );
  return {
    received,
    deliveries,
    async close() {
      if (quorum) await channel.deleteQueue(queue).catch(() => {});
      await connection.close().catch(() => {});
    },
  };
}

/** A durable quorum queue `name`, declared through a connection to `url`. */
async function declareQuorumQueue(name: string, url: string): Promise<string> {
  const connection = await amqp.connect(url);
  connection.on('error', () => {});
  try {
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue(name, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum' },
    });
    return queue;
  } finally {
    await connection.close().catch(() => {});
  }
}
