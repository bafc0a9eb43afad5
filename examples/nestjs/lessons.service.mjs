// @ts-check
// The service: a lesson's row and its LessonPublished event in one transaction, so the
// event exists exactly when the lesson does. In TypeScript, with decorators enabled:
//
//   @Injectable()
//   export class LessonsService {
//     constructor(
//       @InjectOutbox() private readonly outbox: Outbox,
//       @InjectOutboxDatabase() private readonly database: Database,
//     ) {}
//     …
//   }
//
// Here, in plain JavaScript, the same decorators are applied as calls after the class.
import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { LessonPublished } from 'edupulse-outbox';
import { InjectOutbox, InjectOutboxDatabase } from 'edupulse-outbox/nestjs';

export class LessonsService {
  logger = new Logger('Lessons');

  /**
   * @param {import('edupulse-outbox').Outbox} outbox
   * @param {import('edupulse-outbox').Database} database the outbox module's: its
   *   transactions are the ones the outbox writes in
   */
  constructor(outbox, database) {
    this.outbox = outbox;
    this.database = database;
  }

  async onModuleInit() {
    await this.database.query(`CREATE TABLE IF NOT EXISTS lessons (
      id uuid PRIMARY KEY, author_id uuid NOT NULL, title text NOT NULL,
      published_at timestamptz NOT NULL)`);
  }

  /**
   * Publishes a lesson. Throw anywhere in the transaction and neither the row nor the
   * event is written.
   * @param {string} title
   * @param {string} authorId
   */
  async publish(title, authorId) {
    const lessonId = randomUUID();
    const publishedAt = new Date().toISOString();
    await this.database.transaction(async (tx) => {
      await tx.query(
        'INSERT INTO lessons (id, author_id, title, published_at) VALUES ($1, $2, $3, $4)',
        [lessonId, authorId, title, publishedAt],
      );
      await this.outbox.enqueue(
        tx,
        LessonPublished.create({
          lesson_id: lessonId,
          author_id: authorId,
          title,
          published_at: publishedAt,
        }),
      );
    });
    this.logger.log(`lesson ${lessonId} "${title}" saved, its event enqueued`);
    return lessonId;
  }
}
Injectable()(LessonsService);
InjectOutbox()(LessonsService, undefined, 0);
InjectOutboxDatabase()(LessonsService, undefined, 1);
