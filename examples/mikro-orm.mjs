#!/usr/bin/env node
// A lesson and its lesson-published event written in one MikroORM transaction: both commit
// together, or neither exists. Creates its `lesson` table, migrates the outbox in schema
// `public` of DATABASE_URL (default the local server), enqueues, prints the outbox row.
// The entity is an EntitySchema, so no decorators are needed.
//
//   npm install @mikro-orm/core @mikro-orm/postgresql
//   node examples/mikro-orm.mjs
import { randomUUID } from 'node:crypto';
import { EntitySchema, MikroORM } from '@mikro-orm/postgresql';
import { createOutbox, LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';
import { fromMikroORM } from 'edupulse-outbox/mikro-orm';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const Lesson = new EntitySchema(
  /** @type {const} */ ({
    name: 'Lesson',
    tableName: 'lesson',
    properties: {
      id: { type: 'uuid', primary: true },
      author_id: { type: 'uuid' },
      title: { type: 'text' },
    },
  }),
);

const orm = await MikroORM.init({ clientUrl: url, entities: [Lesson] });
const admin = pgDatabase({ connectionString: url });
await migrate(admin, 'public');
await orm.em.getConnection().execute(`CREATE TABLE IF NOT EXISTS lesson (
  id uuid PRIMARY KEY, author_id uuid NOT NULL, title text NOT NULL)`);

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await orm.em.fork().transactional(async (em) => {
  em.create(Lesson, lesson); // flushed by transactional(), before its COMMIT
  return outbox.enqueue(
    fromMikroORM(em),
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
await orm.close();
await admin.close();
