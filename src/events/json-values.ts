/**
 * A payload as JSON text, or why JSON would not carry it as it is. JSON.stringify throws
 * on a BigInt and a cycle, and silently writes NaN, Infinity, an invalid Date and
 * `undefined` in an array as null, a Map, Set, RegExp or a class instance without fields
 * of its own as {}, a typed array as an object of indexes, an Error without its message,
 * and leaves out functions, symbols and a `toJSON` that gives undefined. A payload holding
 * one (a schema of z.any(), an event built by hand) would be published other than it was
 * written, so enqueue refuses it naming the field. An `undefined` field is left to JSON's
 * rule (an absent field), as a schema's optional fields produce it.
 *
 * One pass: JSON.stringify reads each value once (a getter runs once; a `toJSON` is called
 * once) and hands it, after `toJSON`, to a replacer that checks it, so what is checked is
 * what is written. Only a refusal JSON.stringify makes itself (a cycle, a getter or
 * `toJSON` that throws) or one found in the text (a NUL, an unpaired surrogate) walks the
 * payload again to name the field.
 */

import { clip, escapeControl } from '../common/text.js';

/** Where a value JSON would not carry is (`.scores.2`, relative to the payload, as ValidationError paths are written) and what it is. */
export interface JsonProblem {
  path: string;
  reason: string;
}

const LEFT_OUT = 'which JSON leaves out (or writes as null in an array)';

function problemOf(value: unknown): string | undefined {
  switch (typeof value) {
    case 'bigint':
      return 'a BigInt, which JSON cannot carry: write it as a string or a number';
    case 'number':
      if (Number.isFinite(value)) return undefined;
      return `${String(value)}, which JSON writes as null`;
    case 'function':
      return `a function, ${LEFT_OUT}`;
    case 'symbol':
      return `a symbol, ${LEFT_OUT}`;
    case 'object': {
      if (value === null || Array.isArray(value)) return undefined;
      const prototype = Object.getPrototypeOf(value);
      if (prototype === Object.prototype || prototype === null) return undefined;
      return instanceProblem(value);
    }
    default:
      return undefined;
  }
}

/** An object of a class: what JSON would lose of it, if anything. */
function instanceProblem(value: object): string | undefined {
  if (value instanceof Map)
    return 'a Map, which JSON writes as {}: use an object (Object.fromEntries)';
  if (value instanceof Set) return 'a Set, which JSON writes as {}: use an array ([...set])';
  if (value instanceof WeakMap || value instanceof WeakSet) {
    return 'a weak collection, which JSON writes as {}';
  }
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return 'binary data, which JSON writes as an object of indexes: encode it (base64) as a string';
  }
  // Boxed primitives are written as their value.
  if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    return undefined;
  }
  if (value instanceof Error) {
    return 'an Error, which JSON writes without its message: write the fields it should carry';
  }
  // A RegExp, a Promise, a class whose fields are private or accessors: JSON writes {}.
  if (Object.keys(value).length === 0) {
    const name = (value.constructor as { name?: unknown } | undefined)?.name;
    return `an instance of ${typeof name === 'string' && name ? clip(escapeControl(name), 80) : 'a class'} without fields of its own, which JSON writes as {}`;
  }
  return undefined;
}

/**
 * The deepest nesting taken. JSON.stringify runs out of stack a few thousand levels down
 * (a RangeError naming nothing); no payload a schema describes comes near this.
 */
export const MAX_JSON_DEPTH = 1000;

/** A path cut to its first and last few fields: a refusal at depth 1001 stays readable. */
function shortPath(parts: readonly string[]): string {
  if (parts.length <= 12) return parts.join('');
  return `${parts.slice(0, 6).join('')}.….${parts.slice(-5).join('').slice(1)}`;
}

const DEEP = `nested more than ${MAX_JSON_DEPTH} levels deep, deeper than JSON.stringify can be relied on to write`;

/** Where an object is: its holder's place and its key there (none for the payload). */
interface Place {
  up: Place | undefined;
  key: string;
  depth: number;
}

/** The path of `key` in the object at `place` (the payload when undefined), as its fields. */
function pathOf(place: Place | undefined, key: string): string[] {
  if (place === undefined) return [];
  const parts = [`.${key}`];
  for (let at: Place | undefined = place; at?.up !== undefined; at = at.up)
    parts.push(`.${at.key}`);
  return parts.reverse();
}

/** Thrown by the replacer to stop JSON.stringify at a refusal. */
class Refusal {
  constructor(readonly problem: JsonProblem) {}
}

/**
 * The text escapes JSON.stringify writes for what PostgreSQL's JSON functions refuse: NUL,
 * and a surrogate without its pair (a paired one is written as it is). An escaped
 * backslash before `u` is text, not an escape, hence the even run of backslashes.
 */
const UNREADABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i;

/**
 * A NUL or a surrogate without its pair (the `u` flag reads a pair as one character): what
 * PostgreSQL's JSON cannot hold.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding NUL is the point
export const UNREADABLE_TEXT = /\u0000|[\ud800-\udfff]/u;

function unreadableReason(code: string): string {
  const what = code === '0000' ? 'a NUL character' : 'an unpaired surrogate';
  return `${what} (\\u${code}), which PostgreSQL cannot read from JSON`;
}

/**
 * The payload's JSON text, or the first value in it JSON would not carry as it is (named
 * by its path), or `undefined` text for a payload JSON writes nothing for.
 */
export function payloadJson(
  payload: unknown,
): { text: string | undefined; problem?: undefined } | { text?: undefined; problem: JsonProblem } {
  // Where each object or array met is (its holder's entry and its key), for naming a
  // field inside it: an entry per object, the path spelt out only for a refusal.
  const places = new Map<object, Place>();
  const refuse = (holder: object, key: string, reason: string): never => {
    throw new Refusal({ path: shortPath(pathOf(places.get(holder), key)), reason });
  };
  function check(this: object, key: string, value: unknown): unknown {
    if (value === undefined) {
      if (Array.isArray(this)) {
        refuse(this, key, 'undefined (or an empty slot) in an array, which JSON writes as null');
      }
      // A field set to undefined is left out; one whose toJSON gives undefined is lost.
      if (places.has(this) && (this as Record<string, unknown>)[key] !== undefined) {
        refuse(this, key, `a value whose toJSON gives undefined, ${LEFT_OUT}`);
      }
      return value;
    }
    if (value === null) {
      if (places.has(this) && (this as Record<string, unknown>)[key] instanceof Date) {
        refuse(this, key, 'an invalid Date, which JSON writes as null');
      }
      return value;
    }
    if (typeof value !== 'object') {
      if (typeof value !== 'string' && typeof value !== 'boolean') {
        const reason = problemOf(value);
        if (reason !== undefined) refuse(this, key, reason);
      }
      return value;
    }
    const reason = problemOf(value);
    if (reason !== undefined) refuse(this, key, reason);
    const up = places.get(this);
    const depth = up === undefined ? 0 : up.depth + 1;
    if (depth > MAX_JSON_DEPTH) refuse(this, key, DEEP);
    places.set(value, { up, key, depth });
    return value;
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(payload, check);
  } catch (error) {
    if (error instanceof Refusal) return { problem: error.problem };
    // JSON.stringify's own refusal: a cycle, or a getter or toJSON that threw.
    return {
      problem: locate(payload, false) ?? {
        path: '',
        reason: `not JSON-serialisable (${clip(escapeControl(String(error)), 200)})`,
      },
    };
  }
  const code = text === undefined ? undefined : UNREADABLE_ESCAPE.exec(text)?.[1];
  if (code !== undefined) {
    return { problem: locate(payload, true) ?? { path: '', reason: unreadableReason(code) } };
  }
  return { text };
}

/**
 * Walks `payload` as JSON.stringify does (`toJSON` first) to name where it fails: a cycle,
 * a getter or `toJSON` that throws, nesting too deep and, with `strings`, a NUL or
 * unpaired surrogate in a key or a string.
 */
function locate(payload: unknown, strings: boolean): JsonProblem | undefined {
  const open = new Set<object>();
  const parts: string[] = [];
  const problem = (reason: string): JsonProblem => ({ path: shortPath(parts), reason });
  const textProblem = (text: string): string | undefined => {
    const found = UNREADABLE_TEXT.exec(text)?.[0];
    if (found === undefined) return undefined;
    return unreadableReason(found.charCodeAt(0).toString(16).padStart(4, '0'));
  };
  const visit = (read: () => unknown, key: string): JsonProblem | undefined => {
    let value: unknown;
    try {
      value = read();
      const toJSON = (value as { toJSON?: unknown } | null | undefined)?.toJSON;
      if (typeof toJSON === 'function') value = toJSON.call(value, key);
    } catch (error) {
      return problem(
        `a value that cannot be read: its getter or toJSON threw ${clip(escapeControl(String(error)), 200)}`,
      );
    }
    if (typeof value === 'string') {
      const reason = strings ? textProblem(value) : undefined;
      return reason === undefined ? undefined : problem(`text holding ${reason}`);
    }
    if (typeof value !== 'object' || value === null) return undefined;
    if (open.has(value)) return problem('a reference back to a value that holds it (a cycle)');
    if (parts.length > MAX_JSON_DEPTH) return problem(DEEP);
    open.add(value);
    try {
      const object = value as Record<string, unknown>;
      const keys = Array.isArray(value) ? [...value.keys()].map(String) : Object.keys(value);
      for (const name of keys) {
        const keyReason = strings && !Array.isArray(value) ? textProblem(name) : undefined;
        if (keyReason !== undefined) return problem(`an object with a key holding ${keyReason}`);
        parts.push(`.${name}`);
        const found = visit(() => object[name], name);
        if (found) return found;
        parts.pop();
      }
      return undefined;
    } finally {
      open.delete(value);
    }
  };
  return visit(() => payload, '');
}
