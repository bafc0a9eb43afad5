#!/usr/bin/env node
// A lesson and its lesson-published event written in one Drizzle transaction: both commit
// together, or neither exists. Against DATABASE_URL (default the local server); lesson.mjs
// migrates the outbox, creates the `lesson` table and prints the outbox row.
//
//   npm install drizzle-orm pg
//   node examples/drizzle.mjs
//
// With postgres.js instead of node-postgres: `drizzle` from 'drizzle-orm/postgres-js' and
// `postgres(url)` as the client; fromDrizzle takes either driver's transaction.
import { randomUUID } from 'node:crypto';
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgTable, text, uuid } from 'drizzle-orm/pg-core';
import { createOutbox } from 'edupulse-outbox';
import { fromDrizzle } from 'edupulse-outbox/drizzle';
import pg from 'pg';
import { databaseUrl, lessonPublished, prepareDatabase, printOutboxRow } from './lesson.mjs';

const lessons = pgTable('lesson', {
  id: uuid('id').primaryKey(),
  authorId: uuid('author_id').notNull(),
  title: text('title').notNull(),
});

await prepareDatabase();
const pool = new pg.Pool({ connectionString: databaseUrl });
const db = drizzle({ client: pool });

const outbox = createOutbox();
const lesson = { id: randomUUID(), authorId: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await db.transaction(async (tx) => {
  await tx.insert(lessons).values(lesson);
  return outbox.enqueue(fromDrizzle(tx), lessonPublished(lesson));
});
await pool.end();

await printOutboxRow(eventId);
