/**
 * Deletes in bounded statements: `batch(limit)` deletes at most `limit` rows and says how
 * many (undefined: stop now). Runs it until a batch deletes fewer than `limit`; returns the
 * total. Each statement's time and locks stay small however many rows are due, so a purge
 * of a large backlog never holds a long transaction.
 */
export async function deleteInBatches(
  limit: number,
  batch: (limit: number) => Promise<number | undefined>,
): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await batch(limit);
    if (deleted === undefined) return total;
    total += deleted;
    if (deleted < limit) return total;
  }
}
