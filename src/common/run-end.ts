/**
 * How one run of a dispatcher or a consumer ended, as a promise: resolved after a clean
 * stop, rejected with the error that ended it. A do-nothing handler is attached at once,
 * so a rejection that nobody awaits is not an unhandled rejection (Node would end the
 * process over it); whoever awaits the promise still gets the error.
 */
export class RunEnd {
  readonly promise: Promise<void>;
  settled = false;
  private resolvePromise!: () => void;
  private rejectPromise!: (error: unknown) => void;

  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
    this.promise.catch(() => {});
  }

  resolve(): void {
    this.settled = true;
    this.resolvePromise();
  }

  reject(error: unknown): void {
    this.settled = true;
    this.rejectPromise(error);
  }
}
