#!/usr/bin/env node
// A lesson and its lesson-published event written in one TypeORM transaction: both commit
// together, or neither exists. Against DATABASE_URL (default the local server); lesson.mjs
// migrates the outbox, creates the `lesson` table and prints the outbox row.
//
//   npm install typeorm pg
//   node examples/typeorm.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox } from 'edupulse-outbox';
import { fromTypeORM } from 'edupulse-outbox/typeorm';
import { DataSource } from 'typeorm';
import { databaseUrl, lessonPublished, prepareDatabase, printOutboxRow } from './lesson.mjs';

await prepareDatabase();
const dataSource = new DataSource({ type: 'postgres', url: databaseUrl });
await dataSource.initialize();

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await dataSource.transaction(async (manager) => {
  await manager.query('INSERT INTO lesson (id, author_id, title) VALUES ($1, $2, $3)', [
    lesson.id,
    lesson.author_id,
    lesson.title,
  ]);
  return outbox.enqueue(fromTypeORM(manager), lessonPublished(lesson));
});
await dataSource.destroy();

await printOutboxRow(eventId);
