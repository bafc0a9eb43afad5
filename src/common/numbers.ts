import { ConfigError } from './errors.js';
import { clip, escapeControl } from './text.js';

/**
 * The one reading of a whole-number setting, whoever gives it: a number that is a safe
 * integer, or text of digits only (no sign, no exponent, no fraction), within min..max.
 * Undefined otherwise.
 */
export function readWholeNumber(value: unknown, min: number, max: number): number | undefined {
  let number: number;
  if (typeof value === 'number') number = value;
  else if (typeof value === 'string' && /^\d+$/.test(value.trim())) number = Number(value.trim());
  else return undefined;
  return Number.isSafeInteger(number) && number >= min && number <= max ? number : undefined;
}

/** `value` read as above, or a ConfigError naming `setting` and the range. */
export function wholeNumber(setting: string, value: unknown, min: number, max: number): number {
  const number = readWholeNumber(value, min, max);
  if (number === undefined) throw notWholeNumber(setting, value, min, max);
  return number;
}

function notWholeNumber(setting: string, value: unknown, min: number, max: number): ConfigError {
  return new ConfigError(setting, `${quoted(value)} is not a whole number from ${min} to ${max}`);
}

/** A setting's value as an error shows it: quoted text (escaped, cut), or the value. */
export function quoted(value: unknown): string {
  return typeof value === 'string' ? `"${clip(escapeControl(value), 80)}"` : String(value);
}

/** A whole-number option's range, both ends included. */
export type WholeNumberRange = readonly [min: number, max: number];

/**
 * Checks those of `ranges`' options that `options` gives: each a number (a library's
 * options are typed, so text of digits is refused too), whole and within its range. A
 * ConfigError names the first that is not.
 */
export function assertWholeNumberOptions(
  options: object,
  ranges: Readonly<Record<string, WholeNumberRange>>,
): void {
  for (const name in ranges) {
    const value = (options as Record<string, unknown>)[name];
    if (value === undefined) continue;
    const [min, max] = ranges[name] as WholeNumberRange;
    if (typeof value !== 'number' || readWholeNumber(value, min, max) === undefined) {
      throw notWholeNumber(name, value, min, max);
    }
  }
}
