import type { Dispatcher } from './dispatcher.js';

/**
 * Stops `dispatcher` gracefully on the first of `signals`: no new claims, the batches in
 * flight settle, the broker is closed (`closed` then resolves). It never exits the
 * process: once the application has closed what it holds too (its database pool, its
 * HTTP server), Node exits by itself with code 0. The listeners go at the first signal,
 * so a second one ends the process at once, as Node does by default (unless the
 * application listens for it too). Returns a function that removes the listeners.
 */
export function stopOnSignals(
  dispatcher: Pick<Dispatcher, 'stop'>,
  signals: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'],
): () => void {
  const remove = () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
  const onSignal = () => {
    remove();
    // A failure to release shows in the dispatcher's `closed`.
    dispatcher.stop().catch(() => {});
  };
  for (const signal of signals) process.on(signal, onSignal);
  return remove;
}
