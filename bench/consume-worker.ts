// A consume() process for memory-consume: node consume-worker.js URL CONSUMER COUNT
// DATABASE_URL SCHEMA. Receives COUNT quiz-submitted events with a handler that does
// nothing (each is acked at once), then prints {"seconds", "peakMb"} on stdout and exits:
// what is measured is the consumer, not an effect.
import { readFile } from 'node:fs/promises';
import { pgDatabase, QuizSubmitted } from 'edupulse-outbox';
import { consume } from 'edupulse-outbox/consumer';

const [url, name, countText, databaseUrl, schema] = process.argv.slice(2);
const count = Number(countText);
if (!url || !name || !databaseUrl || !schema || !Number.isInteger(count) || count < 1) {
  throw new Error('usage: consume-worker.js URL CONSUMER COUNT DATABASE_URL SCHEMA');
}

const database = pgDatabase({ connectionString: databaseUrl, maxConnections: 2 });
const started = process.hrtime.bigint();
let received = 0;
let allReceived: () => void = () => {};
const done = new Promise<void>((resolve) => {
  allReceived = resolve;
});
// Warnings and errors on stderr, which the bench shows when the worker fails.
const say = (fields: object, message?: string) =>
  process.stderr.write(`${message ?? ''} ${JSON.stringify(fields)}\n`);
const logger = { debug: () => {}, info: () => {}, warn: say, error: say };
const handler = () => {
  if (++received === count) allReceived();
};
const consumer = await consume({
  broker: url,
  consumer: name,
  database,
  schema,
  logger,
  events: [QuizSubmitted],
  handler,
});
await done;
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
// VmHWM: the kernel's high-water mark of the resident set, start-up included.
const status = await readFile('/proc/self/status', 'utf8');
const peakKb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
await consumer.stop();
await database.close();
process.stdout.write(`${JSON.stringify({ seconds, peakMb: peakKb / 1024 })}\n`);
