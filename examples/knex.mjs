#!/usr/bin/env node
// A lesson and its lesson-published event written in one Knex transaction: both commit
// together, or neither exists. Against DATABASE_URL (default the local server); lesson.mjs
// migrates the outbox, creates the `lesson` table and prints the outbox row.
//
//   npm install knex pg
//   node examples/knex.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox } from 'edupulse-outbox';
import { fromKnex } from 'edupulse-outbox/knex';
import knexFactory from 'knex';
import { databaseUrl, lessonPublished, prepareDatabase, printOutboxRow } from './lesson.mjs';

await prepareDatabase();
const knex = knexFactory({ client: 'pg', connection: databaseUrl });

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await knex.transaction(async (trx) => {
  await trx('lesson').insert(lesson);
  return outbox.enqueue(fromKnex(trx), lessonPublished(lesson));
});
await knex.destroy();

await printOutboxRow(eventId);
