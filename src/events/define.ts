import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { EARLIEST_MS, LATEST_MS, TIME_WINDOW } from '../common/admin-input.js';
import { ConfigError, ValidationError } from '../common/errors.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import {
  clip,
  describeValue,
  escapeControl,
  unsendableCharacter,
  unsendableReason,
} from '../common/text.js';
import { UNREADABLE_TEXT } from './json-values.js';

/**
 * An event ready to be enqueued: validated, with its payload in the exact shape that will
 * be published. Build one with an `EventDefinition` (`LessonPublished.create(…)`), or
 * write the object by hand; `enqueue` validates the envelope either way.
 */
export interface OutboxEvent<P = unknown> {
  /** Event type, kebab-case: `lesson-published`. CloudEvents `type`. */
  type: string;
  /** What the event is about: `lesson`. Part of the broker subject / routing key. */
  aggregateType: string;
  /** Which one: the events of one aggregate are published in the order they were enqueued. */
  aggregateId: string;
  /** JSON payload, published as the message body. */
  payload: P;
  /**
   * Event id (uuid), the broker's dedup id. Generated when absent. An id must be new: one
   * already in the outbox is refused, and one published before is dropped by the broker
   * as a repeat within its dedup window (as a retry's is).
   */
  id?: string;
  /**
   * String headers kept with the event. A name that a CloudEvents extension attribute can
   * have (lower-case ASCII letters and digits, at most 20: `traceparent`, `tenant`,
   * `correlationid`) is published as one, unless the outbox sets that attribute itself
   * (`id`, `type`, `source`, `subject`, `time`, `sequence`, …); consumers read them in
   * `event.extensions`. Other names stay in the outbox row (shown by `dead show` and the
   * console), not on the message.
   */
  headers?: Record<string, string>;
  /** When it happened. Defaults to the enqueuing transaction's start. */
  occurredAt?: Date | string;
}

const KEBAB = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;
// Aggregate types become one token of a NATS subject or AMQP routing key: no dots or wildcards.
const AGGREGATE_TYPE = /^[a-z][a-z0-9_-]*$/;

/** Text that reaches the broker as a CloudEvents attribute: refused before commit, not at claim. */
const sendable = (value: string, ctx: z.RefinementCtx) => {
  const code = unsendableCharacter(value);
  if (code !== undefined) ctx.addIssue({ code: 'custom', message: unsendableReason(code) });
};

/**
 * Header names are kept in the row whatever they are (only some are published), but one
 * PostgreSQL cannot store would fail the insert with the driver's error, not ours.
 */
const storableNames = (headers: Record<string, string>, ctx: z.RefinementCtx) => {
  for (const name of Object.keys(headers)) {
    const bad = UNREADABLE_TEXT.exec(name)?.[0];
    if (bad === undefined) continue;
    const code = `U+${(bad.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
    ctx.addIssue({
      code: 'custom',
      message: `the name "${clip(escapeControl(name), 60)}" contains ${code}, which PostgreSQL cannot store in JSON`,
    });
    return;
  }
};

// W3C Trace Context: version, trace id, parent id, flags, lower-case hex; a later version
// may append fields after a dash.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?$/;

/**
 * A `traceparent` the consumer's tracing can take up: one it must ignore (W3C Trace
 * Context, "3.2.2") would silently cut the trace. Refused before commit, not published.
 */
const traceContext = (headers: Record<string, string>, ctx: z.RefinementCtx) => {
  const value = headers.traceparent;
  if (value === undefined) return;
  const parts = TRACEPARENT.exec(value);
  const problem = !parts
    ? 'must be a W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lower case'
    : parts[1] === 'ff'
      ? 'has the version ff, which W3C Trace Context forbids'
      : parts[1] === '00' && parts[4] !== undefined
        ? 'has fields after the flags, which version 00 does not allow'
        : /^0+$/.test(parts[2] as string)
          ? 'has an all-zero trace id, which W3C Trace Context makes invalid'
          : /^0+$/.test(parts[3] as string)
            ? 'has an all-zero parent id, which W3C Trace Context makes invalid'
            : undefined;
  if (problem) ctx.addIssue({ code: 'custom', path: ['traceparent'], message: problem });
};

/**
 * A time PostgreSQL stores and a CloudEvents time carries: the years 0001 to 9999. A text
 * time is compared as PostgreSQL stores it, rounded to the microsecond, where Date.parse
 * cuts it to the millisecond: 9999-12-31T23:59:59.9999996Z is the year 10000 there. A
 * year written 0000 PostgreSQL refuses whatever the offset makes of it.
 */
const inTimeWindow = (value: Date | string) => {
  if (typeof value === 'string' && value.startsWith('0000')) return false;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value) + roundsUp(value);
  return ms >= EARLIEST_MS && ms <= LATEST_MS;
};

/**
 * 1 when a text time's fraction, as PostgreSQL reads it (a double, rounded half to even
 * to the microsecond), reaches the next millisecond after the one Date.parse kept.
 */
function roundsUp(value: string): number {
  const fraction = /\.(\d+)/.exec(value)?.[1] ?? '';
  if (fraction.length <= 6) return 0;
  const micros = roundHalfEven(Number(`0.${fraction}`) * 1_000_000);
  return Math.floor(micros / 1000) > Number(fraction.slice(0, 3)) ? 1 : 0;
}

/** C's rint: to the nearest whole number, a half to the even one. */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** The longest event type and aggregate type enqueue takes, in characters. */
const MAX_TYPE_CHARS = 200;
const MAX_AGGREGATE_TYPE_CHARS = 100;

export const eventEnvelopeSchema = z.object({
  type: z.string().max(MAX_TYPE_CHARS).regex(KEBAB, 'must be kebab-case, e.g. lesson-published'),
  aggregateType: z
    .string()
    .max(MAX_AGGREGATE_TYPE_CHARS)
    .regex(AGGREGATE_TYPE, 'must be lower-case letters, digits, - or _, starting with a letter'),
  aggregateId: z.string().min(1, 'must not be empty').max(500).superRefine(sendable),
  payload: z.unknown(),
  id: z.uuid().optional(),
  headers: z
    .record(z.string(), z.string().superRefine(sendable))
    .superRefine(storableNames)
    .superRefine(traceContext)
    .optional(),
  occurredAt: z
    .union([z.date(), z.iso.datetime({ offset: true })], {
      // An invalid Date (new Date('x')) is a Date: zod's own message says it expected one.
      error: (issue) =>
        issue.input instanceof Date ? 'is an invalid Date (its time is NaN)' : undefined,
    })
    .refine(inTimeWindow, `must be in ${TIME_WINDOW}`)
    .optional(),
});

/** The fields of an event; enqueue refuses any other (a misspelt `header` would be lost). */
export const eventFields: ReadonlySet<string> = new Set(Object.keys(eventEnvelopeSchema.shape));

/** `payload.score`, `aggregateId`, `headers.traceparent`: the form ValidationError uses. */
export function issuePath(prefix: string, path: readonly PropertyKey[]): string {
  return [prefix, ...path.map(String)].filter((part) => part !== '').join('.');
}

/** Issues named in a ValidationError's message beyond the first; the rest are counted. */
const MORE_ISSUES_SHOWN = 4;

/**
 * Throws ValidationError naming the first issue zod found by its path (`path`), and the
 * others after it in the message, so one look shows every field to fix.
 */
export function parseOrThrow<T>(
  schema: z.ZodType<T>,
  value: unknown,
  prefix: string,
  context: string,
): T {
  let result: ReturnType<z.ZodType<T>['safeParse']>;
  try {
    result = schema.safeParse(value);
  } catch (error) {
    if (!(error instanceof z.core.$ZodAsyncError)) throw error;
    throw new ConfigError(
      'defineEvent.schema',
      `${context}: the schema has an asynchronous check or transform (a refine or transform of an async function); events are checked synchronously, so make it synchronous`,
      { cause: error },
    );
  }
  if (result.success) return result.data;
  const [first, ...others] = result.error.issues;
  const pathOf = (issue: z.core.$ZodIssue | undefined) =>
    issuePath(prefix, issue?.path ?? []) || prefix || '(root)';
  const path = pathOf(first);
  const more = others
    .slice(0, MORE_ISSUES_SHOWN)
    .map((issue) => `; ${pathOf(issue)}: ${issueMessage(issue)}`)
    .join('');
  const uncounted = others.length - MORE_ISSUES_SHOWN;
  const rest = uncounted > 0 ? `${more}; and ${uncounted} more` : more;
  throw new ValidationError(
    path,
    `${first ? issueMessage(first) : 'invalid'}${rest} (${context})`,
    { cause: result.error },
  );
}

/**
 * zod's message, except for a union none of whose options took the value, which zod
 * words "Invalid input" alone: when each option refused its type, the types expected.
 */
function issueMessage(issue: z.core.$ZodIssue): string {
  // A union's own message (occurredAt's invalid Date) says what is wrong already.
  if (
    issue.code !== 'invalid_union' ||
    issue.errors.length === 0 ||
    !issue.message.startsWith('Invalid input')
  ) {
    return issue.message;
  }
  const refusals = issue.errors.map((branch) => (branch.length === 1 ? branch[0] : undefined));
  const expected = refusals.map((refusal) =>
    refusal?.code === 'invalid_type' && refusal.path.length === 0 ? refusal.expected : undefined,
  );
  if (expected.some((type) => type === undefined)) return issue.message;
  const received = /, received (\S+)$/.exec(refusals[0]?.message ?? '')?.[1];
  return `${issue.message}: expected ${[...new Set(expected)].join(' or ')}${received ? `, received ${received}` : ''}`;
}

export interface EventOptions {
  id?: string;
  headers?: Record<string, string>;
  occurredAt?: Date | string;
}

const eventOptions = optionNames<EventOptions>({ id: true, headers: true, occurredAt: true });

export interface EventDefinition<S extends z.ZodType, T extends string = string> {
  /** The event type, as a literal type: consumers' handlers switch on it. */
  readonly type: T;
  readonly aggregateType: string;
  readonly schema: S;
  /** Validates the payload and returns the event to enqueue. Throws ValidationError naming the field. */
  create(payload: z.input<S>, options?: EventOptions): OutboxEvent<z.output<S>>;
  /** Validates a payload (e.g. one received from the broker) and returns it typed. */
  parse(payload: unknown): z.output<S>;
}

export interface EventSpec<S extends z.ZodType, T extends string = string> {
  type: T;
  aggregateType: string;
  /** zod schema of the payload; its output is what gets published. */
  schema: S;
  /** Picks the aggregate id out of a valid payload. */
  aggregateId: (payload: z.output<S>) => string;
}

// The types declared in this process: metrics keep their names as labels. Declarations
// are code, so this stays as small as the code; the table's own types are unbounded.
const declaredTypes = new Set<string>();

/** True when `defineEvent` declared this event type in this process. */
export function isDeclaredEventType(type: string): boolean {
  return declaredTypes.has(type);
}

/** The event types `defineEvent` declared in this process so far. */
export function declaredEventTypes(): string[] {
  return [...declaredTypes];
}

// Schema types whose values JSON does not carry: a Set or Map arrives as {}, a Date as
// text its schema then refuses, NaN as null; a BigInt does not serialise at all. The
// consumer parses the JSON with the same schema, so such a field parks every event.
const NOT_JSON: Record<string, string> = {
  date: 'a Date, which arrives as text (use z.iso.datetime(), or z.coerce.date())',
  set: 'a Set, which JSON carries as {} (use z.array())',
  map: 'a Map, which JSON carries as {} (use z.record())',
  bigint:
    'a BigInt, which JSON cannot carry (use a string, z.string().regex(/^-?\\d+$/), and BigInt() where you compute)',
  nan: 'NaN, which JSON carries as null',
  symbol: 'a symbol, which JSON cannot carry',
  function: 'a function, which JSON cannot carry',
  promise: 'a promise, which JSON cannot carry',
};

/** A JSON Schema path (`properties`, `items`, `anyOf` …) as the field it leads to: `.items[].at`. */
function fieldOf(path: readonly (string | number)[]): string {
  let field = '';
  for (let i = 0; i < path.length; i++) {
    const part = path[i];
    if (part === 'properties') field += `.${String(path[++i])}`;
    else if (part === 'items') field += '[]';
    else if (part === 'prefixItems') field += `[${String(path[++i])}]`;
    else if (part === 'additionalProperties') field += '.*';
    else if (part === 'anyOf' || part === 'oneOf' || part === 'allOf') i++;
  }
  return field;
}

/**
 * Why the payload schema cannot come back from the broker as it went in: the first field
 * (`payload.tags`, `payload.items[].at`) of a type JSON does not carry, or undefined.
 * Coercing types (`z.coerce.date()`) read their JSON text back, so they pass.
 */
function notThroughJson(schema: z.ZodType): string | undefined {
  let found: string | undefined;
  try {
    z.toJSONSchema(schema, {
      io: 'input',
      unrepresentable: 'any',
      override: ({ zodSchema, path }) => {
        const def = (zodSchema as { _zod?: { def?: { type?: string; coerce?: boolean } } })._zod
          ?.def;
        // A coerced Date goes as text and is coerced back; a coerced BigInt is still a
        // BigInt, which JSON cannot carry at all.
        const coercedBack = def?.coerce === true && def.type !== 'bigint';
        const why = def?.type !== undefined && !coercedBack ? NOT_JSON[def.type] : undefined;
        if (why === undefined || found !== undefined) return;
        found = `payload${fieldOf(path)} is ${why}`;
      },
    });
  } catch {
    // A schema the converter cannot walk is taken as it is.
  }
  return found;
}

/**
 * Whether the schema transforms what it parses (`.transform()`, `z.preprocess` is an
 * input-side one): what `create` stores is then the transform's output, which consumers
 * parse with the same schema again.
 */
function transforms(schema: z.ZodType): boolean {
  let found = false;
  try {
    z.toJSONSchema(schema, {
      io: 'output',
      unrepresentable: 'any',
      override: ({ zodSchema }) => {
        const type = (zodSchema as { _zod?: { def?: { type?: string } } })._zod?.def?.type;
        // A pipe too: `z.string().pipe(z.coerce.number())` and `z.preprocess` change their
        // input without a transform on the output side.
        if (type === 'transform' || type === 'pipe') found = true;
      },
    });
  } catch {
    // Not walkable: checked at each create, which costs a second parse.
    return true;
  }
  return found;
}

/** The first place where two JSON values differ, with both values there (shown short). */
function firstDifference(
  stored: unknown,
  again: unknown,
  path: string,
): { path: string; stored: string; again: string } | undefined {
  if (Object.is(stored, again)) return undefined;
  const bothObjects =
    typeof stored === 'object' && stored !== null && typeof again === 'object' && again !== null;
  if (bothObjects && Array.isArray(stored) === Array.isArray(again)) {
    const storedKeys = Object.keys(stored);
    const againKeys = Object.keys(again);
    if (storedKeys.length === againKeys.length) {
      for (const key of storedKeys) {
        if (!Object.hasOwn(again, key)) break;
        const at = Array.isArray(stored) ? `${path}[${key}]` : `${path}.${key}`;
        const inner = firstDifference(
          (stored as Record<string, unknown>)[key],
          (again as Record<string, unknown>)[key],
          at,
        );
        if (inner) return inner;
      }
      if (storedKeys.every((key, i) => againKeys[i] === key)) return undefined;
    }
  }
  const short = (value: unknown) => {
    const text = JSON.stringify(value) ?? 'undefined';
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  };
  return { path, stored: short(stored), again: short(again) };
}

/**
 * Refuses a payload whose schema's output, through JSON, its own schema does not accept:
 * consumers parse what was stored with that schema (a `.transform(Number)` of a string field would park
 * every event there). Named at the field, with zod's reason.
 */
function assertReparses<T>(schema: z.ZodType<T>, data: T, type: string): void {
  let received: unknown;
  try {
    // As a consumer gets it: through JSON (a Date as its text).
    received = JSON.parse(JSON.stringify(data) ?? 'null');
  } catch {
    return; // What JSON cannot carry, enqueue refuses naming the field.
  }
  const result = schema.safeParse(received);
  if (result.success) {
    // Accepted, but a transform that is not idempotent gives consumers other data than
    // was stored (cents of cents): refused too, naming the first field that differs.
    const again = JSON.parse(JSON.stringify(result.data) ?? 'null') as unknown;
    const changed = firstDifference(received, again, 'payload');
    if (changed === undefined) return;
    throw new ValidationError(
      changed.path,
      `is what the schema's transform gave (${changed.stored}), which the same schema turns into ${changed.again}: consumers parse events with this schema, so each would get other data than was stored; transform on the consumer's side instead, or make the transform give the same output for its output (${type})`,
    );
  }
  const issue = result.error.issues[0];
  const path = issuePath('payload', issue?.path ?? []);
  throw new ValidationError(
    path,
    `is what the schema's transform gave, which the same schema refuses (${issue?.message ?? 'invalid'}): consumers parse events with this schema, so each would park this one; transform on the consumer's side instead, or give the transform an output its input accepts (${type})`,
    { cause: result.error },
  );
}

const eventSpecFields = optionNames<EventSpec<z.ZodType>>({
  type: true,
  aggregateType: true,
  schema: true,
  aggregateId: true,
});

/** Declares an event type: its name, its aggregate and its payload schema. */
export function defineEvent<S extends z.ZodType, const T extends string = string>(
  spec: EventSpec<S, T>,
): EventDefinition<S, T> {
  assertKnownOptions('defineEvent', spec ?? {}, eventSpecFields, 'defineEvent.');
  if (typeof spec?.aggregateId !== 'function') {
    throw new ConfigError(
      'defineEvent.aggregateId',
      `must be a function picking the aggregate id out of a payload, not ${describeValue(spec?.aggregateId)}`,
    );
  }
  if (typeof (spec.schema as { safeParse?: unknown } | undefined)?.safeParse !== 'function') {
    throw new ConfigError(
      'defineEvent.schema',
      `must be a zod schema of the payload, not ${describeValue(spec.schema)}`,
    );
  }
  if (!KEBAB.test(spec.type)) {
    throw new ConfigError(
      'defineEvent.type',
      `"${spec.type}" must be kebab-case, e.g. lesson-published`,
    );
  }
  if (!AGGREGATE_TYPE.test(spec.aggregateType)) {
    throw new ConfigError(
      'defineEvent.aggregateType',
      `"${spec.aggregateType}" must be lower-case letters, digits, - or _, starting with a letter`,
    );
  }
  // Longer names pass the patterns and are refused by every enqueue: said here, at start-up.
  if (spec.type.length > MAX_TYPE_CHARS) {
    throw new ConfigError(
      'defineEvent.type',
      `is ${spec.type.length} characters long, over the ${MAX_TYPE_CHARS} an event type may have`,
    );
  }
  if (spec.aggregateType.length > MAX_AGGREGATE_TYPE_CHARS) {
    throw new ConfigError(
      'defineEvent.aggregateType',
      `is ${spec.aggregateType.length} characters long, over the ${MAX_AGGREGATE_TYPE_CHARS} an aggregate type may have`,
    );
  }
  const lossy = notThroughJson(spec.schema);
  if (lossy) throw new ConfigError('defineEvent.schema', `${spec.type}: ${lossy}`);
  declaredTypes.add(spec.type);
  const schema = spec.schema as unknown as z.ZodType<z.output<S>>;
  const parse = (payload: unknown) => parseOrThrow(schema, payload, 'payload', spec.type);
  const reparse = transforms(spec.schema);
  return {
    type: spec.type,
    aggregateType: spec.aggregateType,
    schema: spec.schema,
    parse,
    create(payload, options = {}) {
      assertKnownOptions(`${spec.type}.create`, options, eventOptions, 'options.');
      const data = parse(payload);
      if (reparse) assertReparses(schema, data, spec.type);
      const event: OutboxEvent<z.output<S>> = {
        type: spec.type,
        aggregateType: spec.aggregateType,
        aggregateId: spec.aggregateId(data),
        payload: data,
        id: options.id ?? randomUUID(),
      };
      if (options.headers) event.headers = options.headers;
      // Kept when given (null, as for `id`, is not): an empty string is refused at enqueue,
      // as on an event built by hand.
      if (options.occurredAt !== undefined && options.occurredAt !== null) {
        event.occurredAt = options.occurredAt;
      }
      return event;
    },
  };
}
