/**
 * The first SIGTERM/SIGINT calls `onFirst` (stop claiming, drain, exit 0); a second one
 * exits at once. Returns a function that removes the handlers.
 */
export function onShutdownSignal(
  onFirst: (signal: NodeJS.Signals) => void,
  onSecond: () => void,
): () => void {
  let received = false;
  const handler = (signal: NodeJS.Signals) => {
    if (received) {
      onSecond();
      return;
    }
    received = true;
    onFirst(signal);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
