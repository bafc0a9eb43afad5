#!/usr/bin/env node
// A lesson and its lesson-published event written in one Kysely transaction: both commit
// together, or neither exists. Creates its `lesson` table, migrates the outbox in schema
// `public` of DATABASE_URL (default the local server), enqueues, prints the outbox row.
//
//   npm install kysely pg
//   node examples/kysely.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox, LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';
import { fromKysely } from 'edupulse-outbox/kysely';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** @typedef {{ lesson: { id: string, author_id: string, title: string } }} Tables */
/** @type {Kysely<Tables>} */
const db = new Kysely({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }),
});
const admin = pgDatabase({ connectionString: url });
await migrate(admin, 'public');
await db.schema
  .createTable('lesson')
  .ifNotExists()
  .addColumn('id', 'uuid', (c) => c.primaryKey())
  .addColumn('author_id', 'uuid', (c) => c.notNull())
  .addColumn('title', 'text', (c) => c.notNull())
  .execute();

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await db.transaction().execute(async (trx) => {
  await trx.insertInto('lesson').values(lesson).execute();
  return outbox.enqueue(
    fromKysely(trx),
    LessonPublished.create({
      lesson_id: lesson.id,
      author_id: lesson.author_id,
      title: lesson.title,
      published_at: new Date().toISOString(),
    }),
  );
});

// Committed: read it back. A dispatcher running on this database may have published it already.
const { rows } = await admin.query(
  'SELECT id, aggregate_type, aggregate_id, event_type, payload FROM outbox WHERE id = $1',
  [eventId],
);
console.log(rows[0] ?? `event ${eventId} committed and already published`);
await db.destroy();
await admin.close();
