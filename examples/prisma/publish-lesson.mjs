#!/usr/bin/env node
// A lesson and its lesson-published event written in one Prisma interactive transaction:
// both commit together, or neither exists. Prisma 7 with its node-postgres driver adapter;
// creates its `lesson` table, migrates the outbox in schema `public` of DATABASE_URL
// (default the local server), enqueues, prints the outbox row.
//
//   npm install @prisma/client @prisma/adapter-pg && npm install --save-dev prisma
//   npx prisma generate --schema examples/prisma/schema.prisma
//   node examples/prisma/publish-lesson.mjs
import { randomUUID } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import { createOutbox, LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';
import { fromPrisma } from 'edupulse-outbox/prisma';

/**
 * What this script uses of the generated client, for the type check (which runs before
 * `prisma generate`, so the client's own types are not there):
 * @typedef {{ id: string, authorId: string, title: string }} Lesson
 * @typedef {import('edupulse-outbox/prisma').PrismaRawQueryable & {
 *   lesson: { create(args: { data: Lesson }): Promise<Lesson> } }} Tx
 * @typedef {Tx & {
 *   $transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>,
 *   $executeRawUnsafe(query: string): Promise<number>,
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

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
const admin = pgDatabase({ connectionString: url });
await migrate(admin, 'public');
// In a project, Prisma Migrate creates the model's table.
await prisma.$executeRawUnsafe(`CREATE TABLE IF NOT EXISTS lesson (
  id uuid PRIMARY KEY, author_id uuid NOT NULL, title text NOT NULL)`);

const outbox = createOutbox();
const lesson = { id: randomUUID(), authorId: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await prisma.$transaction(async (tx) => {
  await tx.lesson.create({ data: lesson });
  return outbox.enqueue(
    fromPrisma(tx),
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
await prisma.$disconnect();
await admin.close();
