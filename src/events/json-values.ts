/**
 * Values JSON.stringify does not carry as they are: it throws on a BigInt and a cycle,
 * and silently writes NaN and Infinity as null, a Map or Set as {}, a typed array as an
 * object of indexes, and leaves functions and symbols out. A payload holding one (a
 * schema of z.any(), an event built by hand) would be published other than it was
 * written, so enqueue refuses it naming the field. Undefined is left to JSON's rule (an
 * absent field), as a schema's optional fields produce it.
 */

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
    default:
      if (value instanceof Map)
        return 'a Map, which JSON writes as {}: use an object (Object.fromEntries)';
      if (value instanceof Set) return 'a Set, which JSON writes as {}: use an array ([...set])';
      if (value instanceof WeakMap || value instanceof WeakSet)
        return 'a weak collection, which JSON writes as {}';
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
        return 'binary data, which JSON writes as an object of indexes: encode it (base64) as a string';
      }
      return undefined;
  }
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

/**
 * The first value of `payload` JSON would not carry as it is, or undefined. Objects with
 * a `toJSON` (a Date) are taken as they serialise; a cycle is named where it closes, and
 * nesting beyond MAX_JSON_DEPTH where it goes deeper.
 */
export function jsonProblem(payload: unknown): JsonProblem | undefined {
  const open = new Set<object>();
  // The path as its fields (`.scores`, `.2`), joined only for a refusal.
  const parts: string[] = [];
  const problem = (reason: string): JsonProblem => ({ path: shortPath(parts), reason });
  const visit = (value: unknown): JsonProblem | undefined => {
    const reason = problemOf(value);
    if (reason !== undefined) return problem(reason);
    if (typeof value !== 'object' || value === null) return undefined;
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return undefined;
    if (open.has(value)) return problem('refers back to a value that holds it (a cycle)');
    if (parts.length > MAX_JSON_DEPTH) {
      return problem(
        `nested more than ${MAX_JSON_DEPTH} levels deep, deeper than JSON.stringify can be relied on to write`,
      );
    }
    open.add(value);
    try {
      const keys = Array.isArray(value) ? value.keys() : Object.keys(value);
      for (const key of keys) {
        parts.push(`.${key}`);
        const found = visit((value as Record<string | number, unknown>)[key]);
        if (found) return found;
        parts.pop();
      }
      return undefined;
    } finally {
      open.delete(value);
    }
  };
  return visit(payload);
}
