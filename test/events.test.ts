import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { prefixedAttributes } from '../src/brokers/cloudevents.js';
import {
  binaryModeHeaders,
  ConfigError,
  cloudEventAttributes,
  defineEvent,
  LessonPublished,
  type OutboxMessage,
  QuizSubmitted,
  structuredCloudEvent,
  ValidationError,
} from '../src/index.js';

const lesson = {
  lesson_id: '6f1c2a4e-8b3d-4f5a-9c7e-1d2b3a4c5d6e',
  author_id: '0a9b8c7d-6e5f-4a3b-8c1d-0e9f8a7b6c5d',
  title: 'Fractions, part 2',
  published_at: '2024-05-01T09:30:00.123456Z',
};

const quiz = {
  quiz_id: '11111111-2222-4333-8444-555555555555',
  student_id: '66666666-7777-4888-9999-aaaaaaaaaaaa',
  score: 87.5,
  submitted_at: '2024-05-01T10:00:00+02:00',
};

/** Calls `fn`, expects a ValidationError, returns it. */
function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

function message(overrides: Partial<OutboxMessage> = {}): OutboxMessage {
  return {
    id: '9d3c1f7a-0b2e-4c5d-8e6f-7a8b9c0d1e2f',
    seq: '42',
    aggregateType: 'lesson',
    aggregateId: lesson.lesson_id,
    eventType: 'lesson-published',
    payload: JSON.stringify(lesson),
    headers: {},
    partition: 7,
    occurredAt: '2024-05-01T09:30:00.123456Z',
    attempts: 0,
    ...overrides,
  };
}

describe('catalogue payloads', () => {
  it('serialise lesson-published with exactly the original snake_case keys, in struct order', () => {
    // Keys given in another order, plus one the wire format does not have.
    const event = LessonPublished.create({
      published_at: lesson.published_at,
      title: lesson.title,
      extra: 'dropped',
      author_id: lesson.author_id,
      lesson_id: lesson.lesson_id,
    } as typeof lesson);
    expect(JSON.stringify(event.payload)).toBe(
      `{"lesson_id":"${lesson.lesson_id}","author_id":"${lesson.author_id}","title":"Fractions, part 2","published_at":"${lesson.published_at}"}`,
    );
  });

  it('serialise quiz-submitted with exactly the original snake_case keys, in struct order', () => {
    const event = QuizSubmitted.create({
      score: quiz.score,
      submitted_at: quiz.submitted_at,
      student_id: quiz.student_id,
      quiz_id: quiz.quiz_id,
    });
    expect(Object.keys(event.payload)).toEqual(['quiz_id', 'student_id', 'score', 'submitted_at']);
    expect(JSON.stringify(event.payload)).toBe(JSON.stringify(quiz));
  });

  it('fill the envelope: type, aggregate, a fresh uuid id, and the options given', () => {
    const a = LessonPublished.create(lesson);
    const b = LessonPublished.create(lesson);
    expect(a.type).toBe('lesson-published');
    expect(a.aggregateType).toBe('lesson');
    expect(a.aggregateId).toBe(lesson.lesson_id);
    expect(a.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(b.id).not.toBe(a.id);

    const q = QuizSubmitted.create(quiz, {
      id: '9d3c1f7a-0b2e-4c5d-8e6f-7a8b9c0d1e2f',
      headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      occurredAt: '2024-05-01T10:00:00Z',
    });
    expect(q.aggregateType).toBe('quiz');
    expect(q.aggregateId).toBe(quiz.quiz_id);
    expect(q.id).toBe('9d3c1f7a-0b2e-4c5d-8e6f-7a8b9c0d1e2f');
    expect(q.headers).toEqual({
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(q.occurredAt).toBe('2024-05-01T10:00:00Z');
  });
});

describe('invalid payloads throw ValidationError naming the failing field', () => {
  it.each([
    [
      'missing title',
      () => LessonPublished.create({ ...lesson, title: undefined } as never),
      'payload.title',
    ],
    ['empty title', () => LessonPublished.create({ ...lesson, title: '' }), 'payload.title'],
    [
      'bad lesson uuid',
      () => LessonPublished.create({ ...lesson, lesson_id: 'lesson-1' }),
      'payload.lesson_id',
    ],
    [
      'bad author uuid',
      () => LessonPublished.create({ ...lesson, author_id: '6f1c2a4e' }),
      'payload.author_id',
    ],
    [
      'timestamp without offset',
      () => LessonPublished.create({ ...lesson, published_at: '2024-05-01 09:30' }),
      'payload.published_at',
    ],
    ['negative score', () => QuizSubmitted.create({ ...quiz, score: -1 }), 'payload.score'],
    [
      'infinite score',
      () => QuizSubmitted.create({ ...quiz, score: Number.POSITIVE_INFINITY }),
      'payload.score',
    ],
    [
      'score as text',
      () => QuizSubmitted.create({ ...quiz, score: '90' as never }),
      'payload.score',
    ],
    [
      'bad student uuid',
      () => QuizSubmitted.create({ ...quiz, student_id: 'x' }),
      'payload.student_id',
    ],
  ])('%s', (_, create, path) => {
    const error = validationError(create);
    expect(error.path).toBe(path);
    expect(error.code).toBe('VALIDATION');
    expect(error.message).toContain(path);
  });

  it('a score of 0 is valid', () => {
    expect(QuizSubmitted.create({ ...quiz, score: 0 }).payload.score).toBe(0);
  });

  it('parse() validates a received payload the same way', () => {
    expect(LessonPublished.parse(lesson)).toEqual(lesson);
    expect(validationError(() => QuizSubmitted.parse({ ...quiz, score: -1 })).path).toBe(
      'payload.score',
    );
  });

  it('names every field to fix after the first, and the types a union expects', () => {
    const Note = defineEvent({
      type: 'issues-note',
      aggregateType: 'course',
      schema: z.object({
        note_id: z.uuid(),
        minutes: z.union([z.number(), z.string()]),
        ...Object.fromEntries(['a', 'b', 'c', 'd', 'e'].map((name) => [name, z.number()])),
      }),
      aggregateId: (p) => p.note_id,
    });
    const error = validationError(() => Note.create({ note_id: 'note-1', minutes: true } as never));
    expect(error.path).toBe('payload.note_id');
    expect(error.message).toBe(
      'payload.note_id: Invalid UUID; payload.minutes: Invalid input: expected number or string, received boolean; ' +
        'payload.a: Invalid input: expected number, received undefined; ' +
        'payload.b: Invalid input: expected number, received undefined; ' +
        'payload.c: Invalid input: expected number, received undefined; and 2 more (issues-note)',
    );
  });

  it('an asynchronous check in the schema is a ConfigError saying so, not a raw zod error', () => {
    const Checked = defineEvent({
      type: 'async-note',
      aggregateType: 'course',
      schema: z.object({ id: z.string().refine(async () => true) }),
      aggregateId: (p) => p.id,
    });
    for (const call of [() => Checked.create({ id: 'x' }), () => Checked.parse({ id: 'x' })]) {
      expect(call).toThrow(ConfigError);
      expect(call).toThrow(
        /^defineEvent\.schema: async-note: the schema has an asynchronous check or transform/,
      );
    }
  });
});

describe('defineEvent', () => {
  const schema = z.object({ id: z.string() });

  it.each([
    'LessonPublished',
    'lesson_published',
    'lesson published',
    'lesson.published',
    '-x',
    '',
  ])('refuses the non-kebab type %j with ConfigError', (type) => {
    let error: unknown;
    try {
      defineEvent({ type, aggregateType: 'lesson', schema, aggregateId: (p) => p.id });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('defineEvent.type');
  });

  it('refuses names longer than enqueue takes, at definition rather than at every enqueue', () => {
    const define = (type: string, aggregateType: string) => () =>
      defineEvent({ type, aggregateType, schema, aggregateId: (p) => p.id });
    expect(define(`x-${'a'.repeat(198)}`, 'lesson')).not.toThrow();
    expect(define('x-happened', `l${'a'.repeat(99)}`)).not.toThrow();
    expect(define(`x-${'a'.repeat(199)}`, 'lesson')).toThrow(
      new ConfigError(
        'defineEvent.type',
        'is 201 characters long, over the 200 an event type may have',
      ),
    );
    expect(define('x-happened', `l${'a'.repeat(100)}`)).toThrow(
      new ConfigError(
        'defineEvent.aggregateType',
        'is 101 characters long, over the 100 an aggregate type may have',
      ),
    );
  });

  it('refuses an aggregate type that cannot be one subject token', () => {
    expect(() =>
      defineEvent({ type: 'x-happened', aggregateType: 'a.b', schema, aggregateId: (p) => p.id }),
    ).toThrow(ConfigError);
  });

  it('refuses a payload schema whose values JSON does not carry, naming the field', () => {
    const define = (payload: z.ZodType) => () =>
      defineEvent({
        type: 'certificate-issued',
        aggregateType: 'student',
        schema: z.object({ student_id: z.string(), payload }),
        aggregateId: () => 's-1',
      });
    const cases: [z.ZodType, string][] = [
      [z.date(), 'payload.payload is a Date, which arrives as text'],
      [z.set(z.string()), 'payload.payload is a Set, which JSON carries as {}'],
      [z.map(z.string(), z.number()), 'payload.payload is a Map'],
      [
        z.object({ items: z.array(z.object({ at: z.date() })) }),
        'payload.payload.items[].at is a Date',
      ],
      [z.union([z.string(), z.bigint()]).optional(), 'payload.payload is a BigInt'],
      // Coerced, its output is a BigInt all the same: every create would be refused.
      [z.coerce.bigint(), 'payload.payload is a BigInt, which JSON cannot carry (use a string'],
    ];
    for (const [field, message] of cases) {
      expect(define(field)).toThrow(ConfigError);
      expect(define(field)).toThrow(`defineEvent.schema: certificate-issued: ${message}`);
    }
    // What reads its JSON text back, and transforms of JSON input, are taken.
    for (const field of [
      z.coerce.date(),
      z.iso.datetime(),
      z.string().transform((text) => text.length),
      z.array(z.string()),
      z.record(z.string(), z.number()),
    ]) {
      expect(define(field)).not.toThrow();
    }
  });

  it('refuses at create a payload its transform turns into what the schema itself refuses', () => {
    const define = (type: string, field: z.ZodType) =>
      defineEvent({
        type,
        aggregateType: 'quiz',
        schema: z.object({ quiz_id: z.string(), field }),
        aggregateId: (p) => p.quiz_id,
      });
    // Stored as 42, which consumers parsing with this schema refuse (expected string).
    const error = validationError(() =>
      define('score-given', z.string().transform(Number)).create({ quiz_id: 'q', field: '42' }),
    );
    expect(error.path).toBe('payload.field');
    expect(error.message).toMatch(
      /^payload\.field: is what the schema's transform gave, which the same schema refuses \(Invalid input: expected string, received number\): consumers parse events with this schema/,
    );
    // Taken again but changed again: consumers would get other data than was stored.
    const cents = validationError(() =>
      define(
        'price-set',
        z.number().transform((n) => Math.round(n * 100)),
      ).create({
        quiz_id: 'q',
        field: 1.5,
      }),
    );
    expect(cents.path).toBe('payload.field');
    expect(cents.message).toMatch(
      /^payload\.field: is what the schema's transform gave \(150\), which the same schema turns into 15000: consumers parse events with this schema/,
    );
    const nested = validationError(() =>
      define('tags-set', z.array(z.object({ tag: z.string().transform((t) => `${t}!`) }))).create({
        quiz_id: 'q',
        field: [{ tag: 'a' }],
      }),
    );
    expect(nested.path).toBe('payload.field[0].tag');
    // A transform on the input side of a pipe: stored as 7, which `z.string()` refuses.
    expect(
      validationError(() =>
        define('count-set', z.string().pipe(z.coerce.number())).create({
          quiz_id: 'q',
          field: '7',
        }),
      ).path,
    ).toBe('payload.field');
    // Transforms whose output the schema takes again, through JSON, are fine.
    const cases: [z.ZodType, unknown, unknown][] = [
      [z.string().transform((text) => text.trim()), ' x ', 'x'],
      [z.string().transform((text) => new Date(text)), '2024-01-01', '2024-01-01T00:00:00.000Z'],
      [z.preprocess((value) => String(value), z.string()), 5, '5'],
      [z.string().default('none'), undefined, 'none'],
    ];
    for (const [i, [field, given, stored]] of cases.entries()) {
      const event = define(`fine-${i}`, field).create({ quiz_id: 'q', field: given });
      expect(JSON.parse(JSON.stringify(event.payload))).toEqual({ quiz_id: 'q', field: stored });
    }
  });

  it('refuses a misspelt or missing field of its own, from plain JavaScript', () => {
    const define = (spec: object) => () => defineEvent(spec as Parameters<typeof defineEvent>[0]);
    const spec = { type: 'x-happened', aggregateType: 'lesson', schema };
    // Before: accepted, and create() then failed with "spec.aggregateId is not a function".
    expect(define({ ...spec, aggregateID: (p: { id: string }) => p.id })).toThrow(
      'defineEvent.aggregateID: is not an option of defineEvent; did you mean "aggregateId"?',
    );
    expect(define({ ...spec, aggregateId: 'id' })).toThrow(
      'defineEvent.aggregateId: must be a function picking the aggregate id out of a payload, not a string',
    );
    expect(define({ type: 'x-happened', aggregateType: 'lesson', aggregateId: () => 'x' })).toThrow(
      'defineEvent.schema: must be a zod schema of the payload, not undefined',
    );
  });

  it('accepts a kebab type and builds events with it, refusing a misspelt option of create', () => {
    const Archived = defineEvent({
      type: 'course-archived-v2',
      aggregateType: 'course',
      schema,
      aggregateId: (p) => p.id,
    });
    const event = Archived.create({ id: 'c-1' });
    expect(event).toMatchObject({
      type: 'course-archived-v2',
      aggregateType: 'course',
      aggregateId: 'c-1',
      payload: { id: 'c-1' },
    });
    // A misspelt option of create() would drop what it carries.
    expect(() =>
      Archived.create({ id: 'c-1' }, { header: { tenant: 'a' } } as Parameters<
        typeof Archived.create
      >[1]),
    ).toThrow(
      'options.header: is not an option of course-archived-v2.create; did you mean "headers"?',
    );
  });
});

describe('CloudEvents envelope', () => {
  it('cloudEventAttributes: specversion 1.0, type = event type, subject = aggregate id', () => {
    const attributes = cloudEventAttributes(message(), 'urn:edupulse:test');
    expect(attributes).toEqual({
      specversion: '1.0',
      id: '9d3c1f7a-0b2e-4c5d-8e6f-7a8b9c0d1e2f',
      source: 'urn:edupulse:test',
      type: 'lesson-published',
      subject: lesson.lesson_id,
      time: '2024-05-01T09:30:00.123456Z',
      datacontenttype: 'application/json',
      sequence: '0000000000000000042',
      partitionkey: lesson.lesson_id,
    });
  });

  it('binary-mode headers: every attribute under the prefix, in order, the content type as the protocol has it', () => {
    const headers = {
      tenant: 'north',
      traceparent: '00-abc-def-01',
      'x-request-id': 'kept in the row',
    };
    const attributes = cloudEventAttributes(message({ headers }), 'urn:edupulse:test');
    const expected = (prefix: string, contentType: boolean) =>
      Object.entries(attributes).flatMap(([name, value]): [string, string][] =>
        name !== 'datacontenttype'
          ? [[`${prefix}${name}`, value]]
          : contentType
            ? [['content-type', value]]
            : [],
      );
    for (const prefix of ['ce_', 'ce-', 'cloudEvents:']) {
      const published = binaryModeHeaders(message({ headers }), 'urn:edupulse:test', prefix);
      expect(Object.entries(published)).toEqual(expected(prefix, true));
      const amqp = prefixedAttributes(message({ headers }), 'urn:edupulse:test', prefix, undefined);
      expect(Object.entries(amqp)).toEqual(expected(prefix, false));
    }
  });

  it('sequence strings order like the numbers', () => {
    const seqs = ['9', '10', '100', '9223372036854775807'];
    const sequences = seqs.map((seq) => cloudEventAttributes(message({ seq }), 's').sequence);
    expect([...sequences].sort()).toEqual(sequences);
  });

  it('carries traceparent and tracestate headers as extensions', () => {
    const headers = {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'edupulse=1',
    };
    const attributes = cloudEventAttributes(message({ headers }), 's');
    expect(attributes.traceparent).toBe(headers.traceparent);
    expect(attributes.tracestate).toBe('edupulse=1');
  });

  it('publishes no dataschema: a header of that name stays in the row, unlike schemaversion', () => {
    const headers = {
      dataschema: 'https://schemas.example/lesson-published/2',
      schemaversion: '2',
    };
    const attributes = cloudEventAttributes(message({ headers }), 's');
    expect(attributes).not.toHaveProperty('dataschema');
    expect(attributes.schemaversion).toBe('2');
  });

  it('structuredCloudEvent: data is the stored payload verbatim', () => {
    // Key order a re-encoding through jsonb would change.
    const payload = '{"zeta":1,"alpha":{"b":2,"a":[1,2.50]},"text":"line\\nbreak"}';
    const line = structuredCloudEvent(message({ payload }), 'urn:edupulse:test');
    expect(line.endsWith(`,"data":${payload}}`)).toBe(true);
    const parsed = JSON.parse(line);
    expect(parsed).toMatchObject({
      specversion: '1.0',
      type: 'lesson-published',
      subject: lesson.lesson_id,
      source: 'urn:edupulse:test',
    });
    expect(parsed.data).toEqual(JSON.parse(payload));
  });

  it('structuredCloudEvent: a pretty-printed payload still gives one line', () => {
    const payload = JSON.stringify(lesson, null, 2).replaceAll('\n', '\r\n');
    const line = structuredCloudEvent(message({ payload }), 's');
    expect(line).not.toMatch(/[\r\n]/);
    expect(JSON.parse(line).data).toEqual(lesson);
    expect(Object.keys(JSON.parse(line).data)).toEqual(Object.keys(lesson));
  });
});

describe('evolving a payload schema (README "Evolving an event\'s schema")', () => {
  it('create drops a field its schema does not declare; a strict schema refuses it, naming it', () => {
    const withSummary = { ...lesson, summary: 'parts of a whole' };
    expect(LessonPublished.create(withSummary).payload).toEqual(lesson);
    const Strict = defineEvent({
      type: 'lesson-published',
      aggregateType: 'lesson',
      schema: z.strictObject(LessonPublished.schema.shape),
      aggregateId: (p) => p.lesson_id,
    });
    const error = validationError(() => Strict.create(withSummary));
    expect(error.message).toBe('payload: Unrecognized key: "summary" (lesson-published)');
  });

  it('a consumer whose schema is a looseObject keeps the fields it does not declare', () => {
    const Loose = defineEvent({
      type: 'lesson-published',
      aggregateType: 'lesson',
      schema: z.looseObject(LessonPublished.schema.shape),
      aggregateId: (p) => p.lesson_id,
    });
    const withSummary = { ...lesson, summary: 'parts of a whole' };
    expect(Loose.parse(withSummary)).toEqual(withSummary);
    expect(LessonPublished.parse(withSummary)).toEqual(lesson);
  });

  it('a version in the payload: older payloads without it read as version 1', () => {
    const Versioned = defineEvent({
      type: 'lesson-published',
      aggregateType: 'lesson',
      schema: z.discriminatedUnion('version', [
        LessonPublished.schema.extend({ version: z.literal(1).default(1) }),
        LessonPublished.schema.extend({ version: z.literal(2), summary: z.string() }),
      ]),
      aggregateId: (p) => p.lesson_id,
    });
    expect(Versioned.parse(lesson)).toEqual({ ...lesson, version: 1 });
    const v2 = Versioned.create({ ...lesson, version: 2, summary: 'parts of a whole' });
    expect(v2.payload).toEqual({ ...lesson, version: 2, summary: 'parts of a whole' });
    expect(validationError(() => Versioned.parse({ ...lesson, version: 2 })).path).toBe(
      'payload.summary',
    );
  });

  it('a rename: the shared definition reads either name, and what producers write during it every consumer reads', () => {
    const { title: _title, ...rest } = LessonPublished.schema.shape;
    const EitherName = defineEvent({
      type: 'lesson-published',
      aggregateType: 'lesson',
      schema: z
        .object({ ...rest, title: z.string().min(1).optional(), heading: z.string().optional() })
        .refine((p) => p.title !== undefined || p.heading !== undefined, 'title or heading'),
      aggregateId: (p) => p.lesson_id,
    });
    const { title, ...untitled } = lesson;
    // Producers on the shared definition store what they pass: both names while old
    // consumers, which require the old one, remain.
    const both = EitherName.create({ ...untitled, title, heading: title }).payload;
    expect(both).toEqual({ ...lesson, heading: title });
    expect(LessonPublished.parse(both)).toEqual(lesson);
    for (const payload of [lesson, both, { ...untitled, heading: title }]) {
      const data = EitherName.parse(payload);
      expect(data.heading ?? data.title).toBe(title);
    }
    expect(validationError(() => EitherName.parse(untitled)).message).toMatch(
      /^payload: title or heading/,
    );
  });
});
