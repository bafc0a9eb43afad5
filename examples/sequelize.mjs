#!/usr/bin/env node
// A lesson and its lesson-published event written in one Sequelize transaction: both commit
// together, or neither exists. Against DATABASE_URL (default the local server); lesson.mjs
// migrates the outbox, creates the `lesson` table and prints the outbox row.
//
//   npm install sequelize pg
//   node examples/sequelize.mjs
import { randomUUID } from 'node:crypto';
import { createOutbox } from 'edupulse-outbox';
import { fromSequelize } from 'edupulse-outbox/sequelize';
import { DataTypes, Sequelize } from 'sequelize';
import { databaseUrl, lessonPublished, prepareDatabase, printOutboxRow } from './lesson.mjs';

await prepareDatabase();
const sequelize = new Sequelize(databaseUrl, { logging: false });
const Lesson = sequelize.define(
  'lesson',
  {
    id: { type: DataTypes.UUID, primaryKey: true },
    author_id: { type: DataTypes.UUID, allowNull: false },
    title: { type: DataTypes.TEXT, allowNull: false },
  },
  { tableName: 'lesson', timestamps: false },
);

const outbox = createOutbox();
const lesson = { id: randomUUID(), author_id: randomUUID(), title: 'Fractions without fear' };
const [eventId] = await sequelize.transaction(async (t) => {
  await Lesson.create(lesson, { transaction: t });
  return outbox.enqueue(fromSequelize(sequelize, t), lessonPublished(lesson));
});
await sequelize.close();

await printOutboxRow(eventId);
