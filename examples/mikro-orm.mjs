#!/usr/bin/env node
// A lesson and its lesson-published event written in one MikroORM transaction: both commit
// together, or neither exists. Against DATABASE_URL (default the local server); lesson.mjs
// migrates the outbox, creates the `lesson` table and prints the outbox row. The entity is
// an EntitySchema, so no decorators are needed.
//
//   npm install @mikro-orm/core@6 @mikro-orm/postgresql@6
//   node examples/mikro-orm.mjs
import { randomUUID } from 'node:crypto';
import { EntitySchema, MikroORM } from '@mikro-orm/postgresql';
import { createOutbox } from 'edupulse-outbox';
import { fromMikroORM } from 'edupulse-outbox/mikro-orm';
import { databaseUrl, lessonPublished, prepareDatabase, printOutboxRow } from './lesson.mjs';

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

await prepareDatabase();
const orm = await MikroORM.init({ clientUrl: databaseUrl, entities: [Lesson] });

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await orm.em.fork().transactional(async (em) => {
  em.create(Lesson, lesson); // flushed by transactional(), before its COMMIT
  return outbox.enqueue(fromMikroORM(em), lessonPublished(lesson));
});
await orm.close();

await printOutboxRow(eventId);
