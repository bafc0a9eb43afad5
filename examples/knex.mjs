#!/usr/bin/env node
// A lesson and its lesson-published event written in one Knex transaction: both commit
// together, or neither exists. Creates its `lesson` table, migrates the outbox in schema
// `public` of DATABASE_URL (default the local server), enqueues, prints the outbox row.
//
//   npm install knex pg
//   node examples/knex.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox, LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';
import { fromKnex } from 'edupulse-outbox/knex';
import knexFactory from 'knex';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const knex = knexFactory({ client: 'pg', connection: url });
const admin = pgDatabase({ connectionString: url });
await migrate(admin, 'public');
if (!(await knex.schema.hasTable('lesson'))) {
  await knex.schema.createTable('lesson', (table) => {
    table.uuid('id').primary();
    table.uuid('author_id').notNullable();
    table.text('title').notNullable();
  });
}

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await knex.transaction(async (trx) => {
  await trx('lesson').insert(lesson);
  return outbox.enqueue(
    fromKnex(trx),
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
await knex.destroy();
await admin.close();
