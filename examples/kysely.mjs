#!/usr/bin/env node
// A lesson and its lesson-published event written in one Kysely transaction: both commit
// together, or neither exists. Against DATABASE_URL (default the local server); lesson.mjs
// migrates the outbox, creates the `lesson` table and prints the outbox row.
//
//   npm install kysely pg
//   node examples/kysely.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox } from 'edupulse-outbox';
import { fromKysely } from 'edupulse-outbox/kysely';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { databaseUrl, lessonPublished, prepareDatabase, printOutboxRow } from './lesson.mjs';

await prepareDatabase();
/** @typedef {{ lesson: { id: string, author_id: string, title: string } }} Tables */
/** @type {Kysely<Tables>} */
const db = new Kysely({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: databaseUrl }) }),
});

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await db.transaction().execute(async (trx) => {
  await trx.insertInto('lesson').values(lesson).execute();
  return outbox.enqueue(fromKysely(trx), lessonPublished(lesson));
});
await db.destroy();

await printOutboxRow(eventId);
