#!/usr/bin/env node
// A lesson and its lesson-published event written in one Sequelize transaction: both commit
// together, or neither exists. Creates its `lesson` table, migrates the outbox in schema
// `public` of DATABASE_URL (default the local server), enqueues, prints the outbox row.
//
//   npm install sequelize pg
//   node examples/sequelize.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox, LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';
import { fromSequelize } from 'edupulse-outbox/sequelize';
import { DataTypes, Sequelize } from 'sequelize';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const sequelize = new Sequelize(url, { logging: false });
const Lesson = sequelize.define(
  'lesson',
  {
    id: { type: DataTypes.UUID, primaryKey: true },
    author_id: { type: DataTypes.UUID, allowNull: false },
    title: { type: DataTypes.TEXT, allowNull: false },
  },
  { tableName: 'lesson', timestamps: false },
);
const admin = pgDatabase({ connectionString: url });
await migrate(admin, 'public');
await Lesson.sync();

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await sequelize.transaction(async (t) => {
  await Lesson.create(lesson, { transaction: t });
  return outbox.enqueue(
    fromSequelize(sequelize, t),
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
await sequelize.close();
await admin.close();
