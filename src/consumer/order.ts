/**
 * One queue per aggregate: an aggregate's tasks run one at a time in the order they came,
 * different aggregates at once, at most `concurrency` together. An aggregate that just ran
 * goes to the back of the line, so a busy one does not starve the others.
 */
export class AggregateQueues {
  private readonly queues = new Map<string, (() => Promise<void>)[]>();
  private readonly ready: string[] = [];
  private running = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly concurrency: number) {}

  /** Tasks must not throw: they settle their own messages. */
  push(aggregate: string, task: () => Promise<void>): void {
    const queue = this.queues.get(aggregate);
    if (queue) {
      queue.push(task);
      return;
    }
    this.queues.set(aggregate, [task]);
    this.ready.push(aggregate);
    this.pump();
  }

  /** Tasks queued or running. */
  get size(): number {
    let size = 0;
    for (const queue of this.queues.values()) size += queue.length;
    return size;
  }

  /** Resolves when no task is queued or running. */
  idle(): Promise<void> {
    if (this.queues.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const aggregate = this.ready.shift();
      if (aggregate === undefined) return;
      void this.runHead(aggregate);
    }
  }

  private async runHead(aggregate: string): Promise<void> {
    this.running++;
    const queue = this.queues.get(aggregate) as (() => Promise<void>)[];
    try {
      await (queue[0] as () => Promise<void>)();
    } catch {
      // A task settles its own message; nothing may stop the others.
    } finally {
      queue.shift();
      this.running--;
      if (queue.length > 0) this.ready.push(aggregate);
      else this.queues.delete(aggregate);
      this.pump();
      if (this.queues.size === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  }
}
