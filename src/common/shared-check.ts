export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * A database check that concurrent callers share: at most one runs at a time, and its
 * outcome (failure included) answers every caller for `cacheMs` after it arrived, so a
 * flood of requests costs the database one statement per `cacheMs`.
 */
export class SharedCheck<T> {
  private running: Promise<Outcome<T>> | undefined;
  private last: { outcome: Outcome<T>; at: number } | undefined;
  private generation = 0;

  /** `run` is called only when no check is running and the last outcome is too old. */
  get(run: () => Promise<T>, cacheMs: number, now = Date.now()): Promise<Outcome<T>> {
    if (this.last && now - this.last.at < cacheMs) return Promise.resolve(this.last.outcome);
    if (this.running) return this.running;
    const generation = this.generation;
    const running = run()
      .then(
        (value): Outcome<T> => ({ ok: true, value }),
        (error: unknown): Outcome<T> => ({ ok: false, error }),
      )
      .then((outcome) => {
        // A check that began before forget() answers its own callers only.
        if (generation === this.generation) {
          this.last = { outcome, at: Date.now() };
          this.running = undefined;
        }
        return outcome;
      });
    this.running = running;
    return running;
  }

  /** The next call runs the check anew, whatever the last outcome or one still running. */
  forget(): void {
    this.generation++;
    this.last = undefined;
    this.running = undefined;
  }
}
