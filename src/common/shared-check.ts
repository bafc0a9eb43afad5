export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * How many times as long as a scan of the backlog took the database is left alone after it
 * (the console's samples, its shared status, the metrics' counts): such a scan grows with
 * the backlog, and is then held to a tenth of the database's time at most.
 */
export const SCAN_DUTY = 9;

/**
 * A database check that concurrent callers share: at most one runs at a time, and its
 * outcome (failure included) answers every caller for `cacheMs` after it arrived, so a
 * flood of requests costs the database one statement per `cacheMs`. Made with a `duty`,
 * an outcome also serves `duty` times as long as its check took, if that is longer.
 */
export class SharedCheck<T> {
  private running: Promise<Outcome<T>> | undefined;
  private last: { outcome: Outcome<T>; at: number; tookMs: number } | undefined;
  private generation = 0;

  constructor(private readonly duty = 0) {}

  /** `run` is called only when no check is running and the last outcome is too old. */
  get(run: () => Promise<T>, cacheMs: number, now = Date.now()): Promise<Outcome<T>> {
    const last = this.last;
    if (last && now - last.at < Math.max(cacheMs, this.duty * last.tookMs)) {
      return Promise.resolve(last.outcome);
    }
    if (this.running) return this.running;
    const generation = this.generation;
    const began = Date.now();
    const running = run()
      .then(
        (value): Outcome<T> => ({ ok: true, value }),
        (error: unknown): Outcome<T> => ({ ok: false, error }),
      )
      .then((outcome) => {
        // A check that began before forget() answers its own callers only.
        if (generation === this.generation) {
          const at = Date.now();
          this.last = { outcome, at, tookMs: at - began };
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
