#!/usr/bin/env node
// Watches the events EduPulse Outbox publishes to Kafka: subscribes to the demo's topics
// (edupulse.lesson, edupulse.quiz, edupulse.course, edupulse.student) and prints one line
// per event: topic, key (the aggregate id), ce_id (the event id), ce_type, value.
//
//   node examples/consume-kafka.mjs [--from-beginning] [host:port[,host:port] | kafka://…]
//
// The servers come from the argument, else KAFKA_BROKERS, else 127.0.0.1:9092. The
// argument may be the very URL given to `edupulse-outbox --broker`; its `topic` template
// is then followed. In another terminal:
//
//   edupulse-outbox demo --events 200 --broker kafka://127.0.0.1:9092
//
// Standalone on purpose: only @platformatic/kafka, nothing from this package, so it shows
// what any consumer sees. Each run is a new consumer group that commits nothing, so it
// starts at the end of each topic (or at the start with --from-beginning). Ctrl-C stops it.
import { randomBytes } from 'node:crypto';
import { Admin, Consumer, stringDeserializers } from '@platformatic/kafka';

const aggregateTypes = ['lesson', 'quiz', 'course', 'student'];
const args = process.argv.slice(2);
const fromBeginning = args.includes('--from-beginning');
const target =
  args.find((arg) => !arg.startsWith('--')) ?? process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';

/** Servers and topic template from `host:port,…` or a `kafka://` broker URL. */
function parseTarget(text) {
  if (!text.startsWith('kafka://'))
    return { servers: text.split(','), template: 'edupulse.{aggregate_type}' };
  const [authority, query = ''] = text.slice('kafka://'.length).split('?');
  const hosts = decodeURIComponent(authority.replace(/\/$/, '').replace(/^.*@/, ''));
  const template = new URLSearchParams(query).get('topic') ?? 'edupulse.{aggregate_type}';
  return { servers: hosts.split(','), template };
}

const { servers, template } = parseTarget(target);
if (template.includes('{event_type}')) {
  process.stderr.write('consume-kafka: topic templates with {event_type} are not supported here\n');
  process.exit(2);
}
const topics = aggregateTypes.map((type) => template.replaceAll('{aggregate_type}', type));
const bootstrapBrokers = servers.map((server) =>
  server.includes(':') ? server : `${server}:9092`,
);

/** One line even when the stored payload is pretty-printed. */
function oneLine(value) {
  try {
    return JSON.stringify(JSON.parse(value));
  } catch {
    return value.replace(/\s*[\r\n]+\s*/g, ' ');
  }
}

function printEvent(message) {
  const line = [
    message.topic,
    message.key,
    message.headers.get('ce_id'),
    message.headers.get('ce_type'),
    oneLine(message.value ?? ''),
  ].join(' ');
  process.stdout.write(`${line}\n`);
}

// Created as the publisher creates them (3 partitions by default), so either may start
// first: a consumer cannot subscribe to a topic that does not exist yet.
const admin = new Admin({ clientId: 'edupulse-consume-kafka', bootstrapBrokers });
for (const topic of topics) {
  try {
    await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 });
  } catch (error) {
    if (!error.findBy?.('apiId', 'TOPIC_ALREADY_EXISTS')) throw error;
  }
}
await admin.close();

const consumer = new Consumer({
  clientId: 'edupulse-consume-kafka',
  groupId: `edupulse-consume-kafka-${randomBytes(4).toString('hex')}`,
  bootstrapBrokers,
  deserializers: stringDeserializers,
  autocommit: false,
  maxWaitTime: 500,
});
consumer.on('error', (error) => process.stderr.write(`consume-kafka: ${error.message}\n`));
const stream = await consumer.consume({ topics, mode: fromBeginning ? 'earliest' : 'latest' });
stream.on('data', printEvent);
stream.on('error', (error) => {
  process.stderr.write(`consume-kafka: ${error.message}\n`);
  process.exitCode = 1;
});
stream.on('close', () => process.exit(process.exitCode ?? 0));

process.stderr.write(
  `consume-kafka: watching ${topics.join(', ')} on ${bootstrapBrokers.join(',')}\n`,
);

const stop = () => consumer.close(true).finally(() => process.exit(process.exitCode ?? 0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
