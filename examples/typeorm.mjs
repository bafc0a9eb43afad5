#!/usr/bin/env node
// A lesson and its lesson-published event written in one TypeORM transaction: both commit
// together, or neither exists. Creates its `lesson` table, migrates the outbox in schema
// `public` of DATABASE_URL (default the local server), enqueues, prints the outbox row.
//
//   npm install typeorm pg
//   node examples/typeorm.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox, LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';
import { fromTypeORM } from 'edupulse-outbox/typeorm';
import { DataSource } from 'typeorm';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const dataSource = new DataSource({ type: 'postgres', url });
await dataSource.initialize();
const admin = pgDatabase({ connectionString: url });
await migrate(admin, 'public');
await dataSource.query(`CREATE TABLE IF NOT EXISTS lesson (
  id uuid PRIMARY KEY, author_id uuid NOT NULL, title text NOT NULL)`);

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await dataSource.transaction(async (manager) => {
  await manager.query('INSERT INTO lesson (id, author_id, title) VALUES ($1, $2, $3)', [
    lesson.id,
    lesson.author_id,
    lesson.title,
  ]);
  return outbox.enqueue(
    fromTypeORM(manager),
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
await dataSource.destroy();
await admin.close();
