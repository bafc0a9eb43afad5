import { ConfigError } from './errors.js';

/**
 * The option names of `T`, listed once and checked by the compiler: a name `T` lacks, or
 * a name of `T` left out, does not compile, so the list follows the interface.
 */
export function optionNames<T extends object>(names: Record<keyof T, true>): ReadonlySet<string> {
  return new Set(Object.keys(names));
}

/**
 * Refuses a property of `options` that is none of `known`: from plain JavaScript, or an
 * object built elsewhere and spread in, a misspelt option (`shema`) would otherwise be
 * ignored and its default used without a word. The ConfigError names the property, what
 * it was given to, and the option it was probably meant to be (or, with none near, them
 * all).
 */
export function assertKnownOptions(
  what: string,
  options: object,
  known: ReadonlySet<string>,
  settingPrefix = '',
): void {
  for (const key of Object.keys(options)) {
    if (known.has(key)) continue;
    throw new ConfigError(
      `${settingPrefix}${key}`,
      unknownName(key, known, `an option of ${what}`),
    );
  }
}

/**
 * Why `key` is refused: `is not <what>; did you mean "schema"?`, or, with no known name
 * near it, `is not <what> (its <names>: a, b, c)`.
 */
export function unknownName(
  key: string,
  known: ReadonlySet<string>,
  what: string,
  names = 'options',
): string {
  const meant = closestName(key, known);
  return `is not ${what}${meant ? `; did you mean "${meant}"?` : ` (its ${names}: ${[...known].join(', ')})`}`;
}

/** The known name nearest `key`: the same but for case, else at most two edits away. */
export function closestName(key: string, known: Iterable<string>): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of known) {
    if (name.toLowerCase() === lower) return name;
    const distance = editDistance(lower, name.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [name, distance];
  }
  return best;
}

/** Levenshtein distance (insertions, deletions, substitutions), one row at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      row[j] = Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, substitution);
    }
    previous = row;
  }
  return previous[b.length] ?? 0;
}
