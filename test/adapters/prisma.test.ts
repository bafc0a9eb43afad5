/**
 * edupulse-outbox/prisma against PostgreSQL, through Prisma 7's generated clients (no
 * query engine) on `@prisma/adapter-pg`: the `prisma-client` generator's (TypeScript, the
 * default) and `prisma-client-js`'s. They are generated for this file, into a folder of
 * its own under .prisma-test/ (ignored by git), with a model in this file's schema; both
 * go when the file is done.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { fromPrisma, type PrismaRawQueryable } from '../../src/adapters/prisma.js';
import { createInbox } from '../../src/consumer/index.js';
import { createOutbox, defineEvent, LessonPublished, SchemaVersionError } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { lesson } from '../helpers/outbox.js';
import { Rollback } from './suite.js';

/** What these tests use of the generated client: the Lesson model and raw queries. */
interface Tx extends PrismaRawQueryable {
  lesson: {
    create(args: { data: { title: string } }): Promise<{ id: number; title: string }>;
  };
}
interface Client extends Tx {
  $transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  $on(event: 'query', listener: (event: { query: string }) => void): void;
  $disconnect(): Promise<void>;
}

const root = fileURLToPath(new URL('../../', import.meta.url));
let test: TestSchema;
let pool: pg.Pool;
let dir: string;

interface Generated {
  generator: 'prisma-client' | 'prisma-client-js';
  /** The module that exports PrismaClient, in the generator's output. */
  module: string;
  prisma?: Client;
  /** Every statement the client sent, as Prisma's query log reports it. */
  sent: string[];
}
const generated: Generated[] = [
  { generator: 'prisma-client', module: 'ts/client.ts', sent: [] },
  { generator: 'prisma-client-js', module: 'js/index.js', sent: [] },
];

/**
 * `prisma generate`, as a project runs it. It never starts the schema engine (the schema
 * is read and the client written by WebAssembly), but the CLI checks for that binary
 * before it generates and downloads it when missing; an existing file named by
 * PRISMA_SCHEMA_ENGINE_BINARY satisfies the check, so nothing is fetched.
 */
async function generateClient(schemaFile: string): Promise<void> {
  const cli = createRequire(import.meta.url).resolve('prisma/build/index.js');
  const placeholder = join(dir, 'schema-engine-unused');
  await writeFile(placeholder, '');
  await promisify(execFile)(process.execPath, [cli, 'generate', '--schema', schemaFile], {
    cwd: dir,
    env: {
      ...process.env,
      PRISMA_SCHEMA_ENGINE_BINARY: placeholder,
      CHECKPOINT_DISABLE: '1',
      PRISMA_HIDE_UPDATE_MESSAGE: '1',
    },
  });
}

beforeAll(async () => {
  test = await createPgTestSchema('prisma');
  pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  await pool.query(
    `CREATE TABLE "${test.schema}".lessons (id serial PRIMARY KEY, title text NOT NULL)`,
  );
  dir = join(root, '.prisma-test', test.schema);
  await mkdir(dir, { recursive: true });
  const schemaFile = join(dir, 'schema.prisma');
  await writeFile(
    schemaFile,
    `generator ts {
  provider = "prisma-client"
  output   = "./ts"
}

generator js {
  provider = "prisma-client-js"
  output   = "./js"
}

datasource db {
  provider = "postgresql"
}

model Lesson {
  id    Int    @id @default(autoincrement())
  title String

  @@map("lessons")
}
`,
  );
  await generateClient(schemaFile);
  for (const client of generated) {
    const { PrismaClient } = await import(pathToFileURL(join(dir, client.module)).href);
    const prisma: Client = new PrismaClient({
      adapter: new PrismaPg({ connectionString: PG_URL, max: 2 }, { schema: test.schema }),
      log: [{ emit: 'event', level: 'query' }],
    });
    prisma.$on('query', (event) => client.sent.push(event.query));
    client.prisma = prisma;
  }
});

afterAll(async () => {
  await Promise.allSettled(generated.map((client) => client.prisma?.$disconnect()));
  await pool?.end();
  await test?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
  // The parent too, unless another run is using it.
  await rmdir(join(root, '.prisma-test')).catch(() => {});
});

beforeEach(async () => {
  await pool.query(`TRUNCATE "${test.schema}".outbox, "${test.schema}".lessons`);
});

const outbox = () => createOutbox({ schema: test.schema });

const lessonPublished = (title?: string) => LessonPublished.create(lesson(title));

async function stored(): Promise<{ id: string; aggregate_id: string; payload: string }[]> {
  const { rows } = await pool.query(
    `SELECT id::text AS id, aggregate_id, payload::text AS payload FROM "${test.schema}".outbox ORDER BY seq`,
  );
  return rows;
}

async function lessons(): Promise<string[]> {
  const { rows } = await pool.query(`SELECT title FROM "${test.schema}".lessons ORDER BY id`);
  return rows.map((row) => row.title);
}

describe.each(generated)('fromPrisma, $generator', (client) => {
  let prisma: Client;
  let sent: string[];
  beforeAll(() => {
    prisma = client.prisma as Client;
    sent = client.sent;
  });

  it('commit: the event is written with the work of the transaction', async () => {
    const event = lessonPublished();
    const [id] = await prisma.$transaction(async (tx) => {
      await tx.lesson.create({ data: { title: 'Photosynthesis' } });
      return outbox().enqueue(fromPrisma(tx), event);
    });
    expect(await lessons()).toEqual(['Photosynthesis']);
    const rows = await stored();
    expect(rows.map((row) => row.id)).toEqual([id]);
    expect(JSON.parse(rows[0]?.payload ?? '')).toEqual(event.payload);
  });

  it('rollback: neither the work nor the event is there', async () => {
    await expect(
      prisma.$transaction(async (tx) => {
        await tx.lesson.create({ data: { title: 'Never published' } });
        await outbox().enqueue(fromPrisma(tx), lessonPublished());
        throw new Rollback();
      }),
    ).rejects.toBeInstanceOf(Rollback);
    expect(await lessons()).toEqual([]);
    expect(await stored()).toEqual([]);
  });

  it('many events in one call are one statement', async () => {
    const events = [lessonPublished('a'), lessonPublished('b'), lessonPublished('c')];
    const before = sent.length;
    const ids = await prisma.$transaction((tx) => outbox().enqueue(fromPrisma(tx), events));
    const inserts = sent.slice(before).filter((query) => query.includes('.outbox'));
    expect(inserts).toHaveLength(1);
    expect((await stored()).map((row) => row.id)).toEqual(ids);
  });

  it('refuses a PrismaClient outside $transaction, and nothing is written', async () => {
    const write = async () => outbox().enqueue(fromPrisma(prisma), lessonPublished());
    await expect(write()).rejects.toThrow(TypeError);
    await expect(write()).rejects.toThrow(
      'fromPrisma: a PrismaClient outside $transaction is not a transaction',
    );
    await expect(write()).rejects.toThrow('the tx of prisma.$transaction(async (tx) => …)');
    expect(await stored()).toEqual([]);
  });

  it('a PrismaClient or its tx without the adapter is refused, naming fromPrisma', async () => {
    const adapter =
      /^enqueue: the handle is a Prisma object, which is passed through its adapter: fromPrisma\(tx\) from edupulse-outbox\/prisma$/;
    await expect(outbox().enqueue(prisma as never, lessonPublished())).rejects.toThrow(adapter);
    await expect(
      prisma.$transaction((tx) => outbox().enqueue(tx as never, lessonPublished())),
    ).rejects.toThrow(adapter);
    expect(await stored()).toEqual([]);
  });

  it('a missing outbox table is the SchemaVersionError that says to run migrate', async () => {
    const error = await prisma
      .$transaction((tx) =>
        createOutbox({ schema: 'never_migrated_prisma' }).enqueue(
          fromPrisma(tx),
          lessonPublished(),
        ),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaVersionError);
  });

  it('{ autocommit: true } writes through a PrismaClient, committed on its own', async () => {
    const [id] = await outbox().enqueue(
      fromPrisma(prisma, { autocommit: true }),
      lessonPublished(),
    );
    expect((await stored()).map((row) => row.id)).toEqual([id]);
  });

  it('values with ?, $1 and quotes round-trip unchanged, one event or many', async () => {
    const Note = defineEvent({
      type: 'note-written',
      aggregateType: 'note',
      schema: z.object({ key: z.string(), text: z.string() }),
      aggregateId: (payload) => payload.key,
    });
    const tricky = [
      `it's "quoted" ? $1 $2::text \\ ' ; --`,
      '?',
      '$1',
      `'); DROP TABLE x; --`,
      '{"not":"json"}',
    ];
    const one = Note.create({ key: `k ? $1 'one'`, text: tricky.join('|') });
    const many = tricky.map((text, i) => Note.create({ key: `k${i} ${text}`, text }));
    await prisma.$transaction(async (tx) => {
      await outbox().enqueue(fromPrisma(tx), one);
      await outbox().enqueue(fromPrisma(tx), many);
    });
    const rows = await stored();
    expect(rows.map((row) => row.aggregate_id)).toEqual([one, ...many].map((e) => e.aggregateId));
    expect(rows.map((row) => row.payload)).toEqual(
      [one, ...many].map((e) => JSON.stringify(e.payload)),
    );
  });

  it('reads int8 and numeric as node-postgres does: decimal text, every digit', async () => {
    const { rows } = await prisma.$transaction((tx) =>
      fromPrisma(tx).query(
        `SELECT $1::text::int8 AS big, 12345678901234567890.0123456789::numeric AS exact,
           ARRAY[9007199254740993, 1]::int8[] AS list, 7::int4 AS small, $2::text AS echo`,
        ['9007199254740993', '$1 ?'],
      ),
    );
    expect(rows).toEqual([
      {
        big: '9007199254740993',
        exact: '12345678901234567890.0123456789',
        list: ['9007199254740993', '1'],
        small: 7,
        echo: '$1 ?',
      },
    ]);
  });
});

describe.each(generated)('inbox.process through fromPrisma, $generator', (client) => {
  let prisma: Client;
  beforeAll(() => {
    prisma = client.prisma as Client;
  });

  it('applies an event once; the second delivery is a duplicate and its function does not run', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: `prisma-${client.generator}` });
    const event = {
      id: randomUUID(),
      type: 'lesson-published',
      aggregateId: `lesson ? $1 'x'`,
      sequence: '1',
    };
    let runs = 0;
    const deliver = () =>
      prisma.$transaction((tx) =>
        inbox.process(fromPrisma(tx), event, async () => {
          runs++;
          await tx.lesson.create({ data: { title: 'applied' } });
        }),
      );
    expect((await deliver()).outcome).toBe('applied');
    expect((await deliver()).outcome).toBe('duplicate');
    expect(runs).toBe(1);
    expect(await lessons()).toEqual(['applied']);
  });

  it('a rolled-back transaction records nothing, so the redelivery applies', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: `rollback-${client.generator}` });
    const event = { id: randomUUID(), type: 'lesson-published', aggregateId: 'a', sequence: '1' };
    await expect(
      prisma.$transaction((tx) =>
        inbox.process(fromPrisma(tx), event, async () => {
          await tx.lesson.create({ data: { title: 'lost' } });
          throw new Rollback();
        }),
      ),
    ).rejects.toBeInstanceOf(Rollback);
    const again = await prisma.$transaction((tx) =>
      inbox.process(fromPrisma(tx), event, () => tx.lesson.create({ data: { title: 'kept' } })),
    );
    expect(again.outcome).toBe('applied');
    expect(await lessons()).toEqual(['kept']);
  });
});
