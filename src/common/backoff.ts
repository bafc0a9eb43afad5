/**
 * Exponential backoff with jitter: attempt n waits between half and all of
 * min(max, base · 2ⁿ), so many events (or dispatchers) failing together spread out.
 */
export function backoffDelayMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 40));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
