#!/usr/bin/env node
// @ts-check
// A minimal Nest application with the outbox: it saves a few lessons, each with its
// LessonPublished event in the same transaction, and the dispatcher embedded by
// OutboxModule publishes them. It then runs until Ctrl-C (or SIGTERM), when Nest's
// shutdown hooks stop the dispatcher after the batches in flight and close the database.
//
//   npm run build                        # the example imports the built package
//   node examples/nestjs/main.mjs [count]
//
//   OUTBOX_BROKER_URL=nats://127.0.0.1:4222 node examples/nestjs/main.mjs 10
//
// DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) is where the lessons and
// the outbox (schema public) live; OUTBOX_BROKER_URL (default log:, which prints each
// event on stdout) is where they go. Nest needs `@nestjs/common`, `@nestjs/core`,
// `reflect-metadata` and `rxjs` installed beside edupulse-outbox.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DISPATCHER } from 'edupulse-outbox/nestjs';
import { AppModule } from './app.module.mjs';
import { LessonsService } from './lessons.service.mjs';

const count = Number(process.argv[2] ?? 3);
if (!Number.isInteger(count) || count < 0) {
  process.stderr.write('usage: node examples/nestjs/main.mjs [count]\n');
  process.exit(2);
}

// Resolves once the dispatcher has started: the schema is current and the broker connected.
const app = await NestFactory.createApplicationContext(AppModule);
// SIGINT and SIGTERM close the application: the dispatcher settles what it holds and stops.
app.enableShutdownHooks();

const lessons = app.get(LessonsService);
const authorId = randomUUID();
for (let i = 1; i <= count; i++) await lessons.publish(`Lesson ${i} of ${count}`, authorId);

/** @type {import('edupulse-outbox').Dispatcher} */
const dispatcher = app.get(DISPATCHER);
while (dispatcher.stats.published < count) await once(dispatcher, 'batch');
new Logger('Main').log(`${dispatcher.stats.published} events published; Ctrl-C stops`);
