#!/usr/bin/env node
// A lesson and its lesson-published event written in one Drizzle transaction: both commit
// together, or neither exists. Creates its `lesson` table, migrates the outbox in schema
// `public` of DATABASE_URL (default the local server), enqueues, prints the outbox row.
//
//   npm install drizzle-orm pg
//   node examples/drizzle.mjs
//
// With postgres.js instead of node-postgres: `drizzle` from 'drizzle-orm/postgres-js' and
// `postgres(url)` as the client; fromDrizzle takes either driver's transaction.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgTable, text, uuid } from 'drizzle-orm/pg-core';
import { createOutbox, LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';
import { fromDrizzle } from 'edupulse-outbox/drizzle';
import pg from 'pg';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const lessons = pgTable('lesson', {
  id: uuid('id').primaryKey(),
  authorId: uuid('author_id').notNull(),
  title: text('title').notNull(),
});

const pool = new pg.Pool({ connectionString: url });
const db = drizzle({ client: pool });
const admin = pgDatabase({ connectionString: url });
await migrate(admin, 'public');
await db.execute(sql`CREATE TABLE IF NOT EXISTS lesson (
  id uuid PRIMARY KEY, author_id uuid NOT NULL, title text NOT NULL)`);

const outbox = createOutbox();
const lesson = { id: randomUUID(), authorId: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await db.transaction(async (tx) => {
  await tx.insert(lessons).values(lesson);
  return outbox.enqueue(
    fromDrizzle(tx),
    LessonPublished.create({
      lesson_id: lesson.id,
      author_id: lesson.authorId,
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
await pool.end();
await admin.close();
