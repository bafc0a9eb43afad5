#!/usr/bin/env node
// A lesson and its lesson-published event written in one Prisma interactive transaction:
// both commit together, or neither exists. Prisma 7 with its node-postgres driver adapter,
// against DATABASE_URL (default the local server); ../lesson.mjs migrates the outbox,
// creates the `lesson` table (in a project, Prisma Migrate creates the model's table) and
// prints the outbox row.
//
//   npm install @prisma/client @prisma/adapter-pg && npm install --save-dev prisma
//   npx prisma generate --schema examples/prisma/schema.prisma
//   node examples/prisma/publish-lesson.mjs
import { randomUUID } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import { createOutbox } from 'edupulse-outbox';
import { fromPrisma } from 'edupulse-outbox/prisma';
import { databaseUrl, lessonPublished, prepareDatabase, printOutboxRow } from '../lesson.mjs';

/**
 * What this script uses of the generated client, for the type check (which runs before
 * `prisma generate`, so the client's own types are not there):
 * @typedef {{ id: string, authorId: string, title: string }} Lesson
 * @typedef {import('edupulse-outbox/prisma').PrismaRawQueryable & {
 *   lesson: { create(args: { data: Lesson }): Promise<Lesson> } }} Tx
 * @typedef {Tx & {
 *   $transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>,
 *   $disconnect(): Promise<void> }} Client
 */

// The client `prisma generate` writes beside this file, imported by its URL for the same reason.
const generated = new URL('./generated/index.js', import.meta.url).href;
/** @type {{ PrismaClient: new (options: { adapter: PrismaPg }) => Client }} */
const { PrismaClient } = await import(generated).catch((error) => {
  process.stderr.write(
    'no Prisma client: npx prisma generate --schema examples/prisma/schema.prisma\n',
  );
  throw error;
});

await prepareDatabase();
const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl }) });

const outbox = createOutbox();
const lesson = { id: randomUUID(), authorId: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await prisma.$transaction(async (tx) => {
  await tx.lesson.create({ data: lesson });
  return outbox.enqueue(fromPrisma(tx), lessonPublished(lesson));
});
await prisma.$disconnect();

await printOutboxRow(eventId);
