#!/usr/bin/env node
// Watches the events EduPulse Outbox publishes to RabbitMQ: binds an exclusive queue to the
// exchange with `#` and prints one line per event: routing key, message id (the event id),
// CloudEvents type, body.
//
//   node examples/consume-amqp.mjs [amqp://guest:guest@127.0.0.1:5672[/vhost][?exchange=edupulse.events]]
//
// The URL comes from the argument, else AMQP_URL, else the local default; it may be the
// very URL given to `edupulse-outbox --broker`. In another terminal:
//
//   edupulse-outbox demo --events 200 --broker amqp://guest:guest@127.0.0.1:5672
//
// Standalone on purpose: only amqplib, nothing from this package, so it shows what any
// consumer sees. Ctrl-C stops it; the queue goes with the connection.
import amqp from 'amqplib';

const url = new URL(process.argv[2] ?? process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
const exchange = url.searchParams.get('exchange') ?? 'edupulse.events';
// The rest of the broker URL's parameters are the publisher's, not amqplib's.
url.search = '';

/** One line even when the stored payload is pretty-printed. */
function oneLine(body) {
  try {
    return JSON.stringify(JSON.parse(body));
  } catch {
    return body.replace(/\s*[\r\n]+\s*/g, ' ');
  }
}

function printEvent(message) {
  const headers = message.properties.headers ?? {};
  const line = [
    message.fields.routingKey,
    message.properties.messageId,
    headers['cloudEvents:type'],
    oneLine(message.content.toString('utf8')),
  ].join(' ');
  process.stdout.write(`${line}\n`);
}

const connection = await amqp.connect(url.href);
connection.on('error', (error) => process.stderr.write(`consume-amqp: ${error.message}\n`));
connection.on('close', () => process.exit(process.exitCode ?? 0));
const channel = await connection.createChannel();
// Declared as the publisher declares it, so either may start first.
await channel.assertExchange(exchange, 'topic', { durable: true });
const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
await channel.bindQueue(queue, exchange, '#');
await channel.consume(queue, (message) => message && printEvent(message), { noAck: true });

const shown = new URL(url.href);
if (shown.password) shown.password = '***';
process.stderr.write(`consume-amqp: watching exchange "${exchange}" on ${shown.href}\n`);

process.once('SIGINT', () => connection.close());
process.once('SIGTERM', () => connection.close());
