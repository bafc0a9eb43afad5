#!/usr/bin/env node
// Watches the events EduPulse Outbox publishes to NATS JetStream: an ordered consumer on the
// stream prints one line per event: subject, ce-id (the event id), ce-type, body.
//
//   node examples/consume-nats.mjs [--all] [nats://[user:pass@]127.0.0.1:4222[?stream=EDUPULSE&subject_prefix=edupulse]]
//
// The URL comes from the argument, else NATS_URL, else the local default; it may be the
// very URL given to `edupulse-outbox --broker`. In another terminal:
//
//   edupulse-outbox demo --events 200 --broker nats://127.0.0.1:4222
//
// New events only; `--all` replays what the stream holds first. Standalone on purpose: only
// the NATS client, nothing from this package, so it shows what any consumer sees. Ctrl-C
// stops it; the ordered consumer is ephemeral and goes with the connection.
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

const args = process.argv.slice(2);
const replay = args.includes('--all');
const url = new URL(
  args.find((arg) => !arg.startsWith('--')) ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
);
const stream = url.searchParams.get('stream') ?? 'EDUPULSE';
const prefix = url.searchParams.get('subject_prefix') ?? 'edupulse';
const duplicateWindowS = Number(url.searchParams.get('duplicate_window_s') ?? 120);

const user = decodeURIComponent(url.username);
const pass = decodeURIComponent(url.password);
const nc = await connect({
  servers: `${url.hostname || '127.0.0.1'}:${url.port || 4222}`,
  // A user without a password is a token, as in the publisher's URL.
  ...(pass ? { user, pass } : user ? { token: user } : {}),
  maxReconnectAttempts: -1,
});

// Declared as the publisher declares it, so either may start first.
const jsm = await jetstreamManager(nc);
try {
  await jsm.streams.info(stream);
} catch (error) {
  if (error?.code !== 10059) throw error; // 10059: stream not found
  await jsm.streams.add({
    name: stream,
    subjects: [`${prefix}.>`],
    duplicate_window: duplicateWindowS * 1e9,
  });
}

/** ce-* header values are percent-encoded (CloudEvents NATS binding). */
function header(message, name) {
  const value = message.headers?.get(name) ?? '';
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** One line even when the stored payload is pretty-printed. */
function oneLine(body) {
  try {
    return JSON.stringify(JSON.parse(body));
  } catch {
    return body.replace(/\s*[\r\n]+\s*/g, ' ');
  }
}

const consumer = await jetstream(nc).consumers.get(stream, {
  deliver_policy: replay ? DeliverPolicy.All : DeliverPolicy.New,
});
const messages = await consumer.consume();

const shown = new URL(url.href);
shown.search = '';
if (shown.password) shown.password = '***';
else if (shown.username) shown.username = '***';
process.stderr.write(`consume-nats: watching stream "${stream}" on ${shown.href}\n`);

const stop = () => void messages.close();
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

for await (const message of messages) {
  const line = [
    message.subject,
    header(message, 'ce-id'),
    header(message, 'ce-type'),
    oneLine(message.string()),
  ].join(' ');
  process.stdout.write(`${line}\n`);
}
await nc.close();
