/**
 * A producer app as a user writes it against the published package; test/package.test.ts
 * installs the packed tarball beside it, type-checks it strictly and runs it. It declares
 * an event type of its own, enqueues one event in a transaction, and publishes it to NATS
 * JetStream with an embedded dispatcher; it prints the event it enqueued as one JSON line
 * once the dispatcher has published it. The test reads it back from the stream.
 */
import { randomUUID } from 'node:crypto';
import {
  brokerFromUrl,
  createDispatcher,
  createOutbox,
  defineEvent,
  migrate,
  pgDatabase,
} from 'edupulse-outbox';
import { z } from 'zod';

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const schema = setting('OUTBOX_SCHEMA');
const broker = brokerFromUrl(setting('OUTBOX_BROKER_URL'), { source: '/package-test' });

const CertificateIssued = defineEvent({
  type: 'certificate-issued',
  aggregateType: 'student',
  schema: z.object({ student_id: z.uuid(), course_id: z.uuid(), issued_at: z.iso.datetime() }),
  aggregateId: (p) => p.student_id,
});

const db = pgDatabase({ connectionString: setting('DATABASE_URL'), maxConnections: 2 });
try {
  await migrate(db, schema);
  const outbox = createOutbox({ schema });
  const payload = {
    student_id: randomUUID(),
    course_id: randomUUID(),
    issued_at: new Date().toISOString(),
  };
  const [id] = await db.transaction((tx) => outbox.enqueue(tx, CertificateIssued.create(payload)));
  const dispatcher = createDispatcher({ db, schema, broker });
  await dispatcher.start();
  try {
    const deadline = Date.now() + 30_000;
    while (dispatcher.stats.published < 1) {
      if (Date.now() > deadline) throw new Error('not published within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await dispatcher.stop();
  }
  console.log(JSON.stringify({ id, payload }));
} finally {
  await db.close();
}
