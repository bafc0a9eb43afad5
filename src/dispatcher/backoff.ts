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

/** Wakes a sleeping loop early: a NOTIFY, a stop request. A wake with no sleeper is kept for the next sleep. */
export class Wakeup {
  private pending = false;
  private release: (() => void) | undefined;

  wake(): void {
    if (this.release) this.release();
    else this.pending = true;
  }

  /** Forgets a wake that no sleep has taken yet. */
  reset(): void {
    this.pending = false;
  }

  /** Resolves after `ms`, or at once if woken since the last sleep. */
  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.release = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.release = done;
    });
  }
}
