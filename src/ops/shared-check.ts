export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * A database check that concurrent callers share: at most one runs at a time, and its
 * outcome (failure included) answers every caller for `cacheMs` after it arrived, so a
 * flood of requests costs the database one statement per `cacheMs`.
 */
export class SharedCheck<T> {
  private running: Promise<Outcome<T>> | undefined;
  private last: { outcome: Outcome<T>; at: number } | undefined;

  /** `run` is called only when no check is running and the last outcome is too old. */
  get(run: () => Promise<T>, cacheMs: number, now = Date.now()): Promise<Outcome<T>> {
    if (this.last && now - this.last.at < cacheMs) return Promise.resolve(this.last.outcome);
    this.running ??= run()
      .then(
        (value): Outcome<T> => ({ ok: true, value }),
        (error: unknown): Outcome<T> => ({ ok: false, error }),
      )
      .then((outcome) => {
        this.last = { outcome, at: Date.now() };
        this.running = undefined;
        return outcome;
      });
    return this.running;
  }
}
