import type { EventEmitter } from 'node:events';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

/**
 * `emitter.emit(event, ...args)`, but a listener that throws (or, async, rejects) is
 * logged and the other listeners still run: the application's listeners (metrics, logs,
 * alerts) must not stop the message or the batch whose progress they are told of, as a
 * throw out of `emit` would, part-way through settling it.
 */
export function emitGuarded(
  emitter: EventEmitter,
  logger: Logger,
  event: string,
  args: readonly unknown[],
): boolean {
  const listeners = emitter.rawListeners(event);
  const report = (error: unknown) =>
    logger.error(
      { err: errorMessage(error), event },
      `a listener of '${event}' threw; ignored, the work it was told of goes on`,
    );
  for (const listener of listeners) {
    try {
      const result: unknown = listener.apply(emitter, args);
      if (result instanceof Promise) result.catch(report);
    } catch (error) {
      report(error);
    }
  }
  return listeners.length > 0;
}
