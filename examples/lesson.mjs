// What the ORM examples share, so that each shows only its own part (connect, transaction,
// enqueue): the database, its outbox and `lesson` tables, the event a lesson publishes, and
// the outbox row read back after the commit. Imported by them; not run on its own.
import { LessonPublished, migrate, pgDatabase } from 'edupulse-outbox';

export const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Migrates the outbox in schema `public` of `databaseUrl` and creates the `lesson` table
 * the examples write to (in a project, the ORM's own migrations create that one).
 */
export async function prepareDatabase() {
  const db = pgDatabase({ connectionString: databaseUrl });
  try {
    await migrate(db, 'public');
    await db.query(
      `CREATE TABLE IF NOT EXISTS lesson (
        id uuid PRIMARY KEY, author_id uuid NOT NULL, title text NOT NULL)`,
      [],
    );
  } finally {
    await db.close();
  }
}

/**
 * The event of a published lesson, from the lesson as the ORM writes it: its author under
 * the column's name (`author_id`) or a camelCase model's (`authorId`).
 * @param {{ id: string, title: string } & ({ author_id: string } | { authorId: string })} lesson
 */
export function lessonPublished(lesson) {
  return LessonPublished.create({
    lesson_id: lesson.id,
    author_id: 'authorId' in lesson ? lesson.authorId : lesson.author_id,
    title: lesson.title,
    published_at: new Date().toISOString(),
  });
}

/**
 * Prints the outbox row of a committed event. A dispatcher running on this database may
 * have published it already.
 * @param {string} eventId
 */
export async function printOutboxRow(eventId) {
  const db = pgDatabase({ connectionString: databaseUrl });
  try {
    const { rows } = await db.query(
      'SELECT id, aggregate_type, aggregate_id, event_type, payload FROM outbox WHERE id = $1',
      [eventId],
    );
    console.log(rows[0] ?? `event ${eventId} committed and already published`);
  } finally {
    await db.close();
  }
}
