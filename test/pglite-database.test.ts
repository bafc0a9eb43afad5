// A dispatcher sharing an embedded PGlite (one session) with the application: what the
// application's own transactions and its closing the instance do to it.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../src/brokers/memory.js';
import { ConfigError, createDispatcher, createOutbox, LessonPublished } from '../src/index.js';
import { createPgliteTestSchema, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

const lesson = () =>
  LessonPublished.create({
    lesson_id: randomUUID(),
    author_id: randomUUID(),
    title: 'Fractions',
    published_at: new Date().toISOString(),
  });

describe('pgliteDatabase with a running dispatcher', () => {
  let t: (TestSchema & { pglite: import('@electric-sql/pglite').PGlite }) | undefined;
  afterEach(async () => {
    await t?.drop();
    t = undefined;
  });

  it('keeps out of a transaction the application began with BEGIN: rolled back, nothing is published', async () => {
    t = await createPgliteTestSchema('pglite_begin');
    const { pglite, db, schema } = t;
    await pglite.exec(`CREATE TABLE "${schema}".lesson (id text PRIMARY KEY)`);
    const broker = new MemoryBroker();
    const dispatcher = createDispatcher({ db, schema, broker, logger: false });
    const outbox = createOutbox({ schema });
    await dispatcher.start();
    try {
      for (let i = 0; i < 10; i++) {
        await pglite.exec('BEGIN');
        await pglite.query(`INSERT INTO "${schema}".lesson (id) VALUES ($1)`, [`rolled-back-${i}`]);
        await outbox.enqueue(pglite, lesson());
        // The application's own work between its statements: the dispatcher's rounds come
        // due meanwhile.
        await new Promise((resolve) => setTimeout(resolve, 30));
        await pglite.exec('ROLLBACK');
      }
      const [kept] = await pglite.transaction(async (tx) => {
        await tx.query(`INSERT INTO "${schema}".lesson (id) VALUES ('kept')`);
        return outbox.enqueue(tx, lesson());
      });
      await waitFor('the committed event published', () =>
        broker.messages.some((m) => m.id === kept),
      );
      expect(broker.messages.map((m) => m.id)).toEqual([kept]);
      const { rows } = await pglite.query(`SELECT id FROM "${schema}".lesson`);
      expect(rows).toEqual([{ id: 'kept' }]);
    } finally {
      await dispatcher.stop();
    }
  });

  it('stops with a ConfigError naming db when the instance is closed under it', async () => {
    t = await createPgliteTestSchema('pglite_closed');
    const { pglite, db, schema } = t;
    const dispatcher = createDispatcher({ db, schema, broker: new MemoryBroker(), logger: false });
    await dispatcher.start();
    const closed = dispatcher.closed.catch((error: unknown) => error);
    await pglite.close();
    const error = await closed;
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('db');
    expect((error as Error).message).toMatch(/closed while still in use.*stop the dispatcher/);
    expect(dispatcher.health().state).toBe('stopped');
  });
});
