/**
 * The CLI's logger (JSON lines on stderr): long text fields are cut, but a sentence of
 * ours, which may say what to grant or change, is written whole.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const LOGGER = fileURLToPath(new URL('../dist/common/logger.js', import.meta.url));

/** The line `fields` and `message` make, as a process with the CLI's logger writes it. */
function logged(
  fields: Record<string, unknown>,
  message: string,
): Promise<Record<string, unknown>> {
  const script = `import(${JSON.stringify(LOGGER)}).then(({ createLogger }) => createLogger().error(${JSON.stringify(fields)}, ${JSON.stringify(message)}))`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], (error, _stdout, stderr) => {
      if (error) reject(error);
      else resolve(JSON.parse(stderr.trim()) as Record<string, unknown>);
    });
  });
}

it('writes a refusal of a few hundred characters whole, and cuts a 100 KB field', async () => {
  const refusal = `the server does not let this user publish to "edupulse.lesson.lesson-published" (Permissions Violation for Publish to "edupulse.lesson.lesson-published"): grant it publish rights on "edupulse.>" (see docs/operations.md#nats for the permissions needed)${' and more'.repeat(30)}`;
  expect(refusal.length).toBeGreaterThan(400);
  const line = await logged(
    { err: refusal, aggregateId: 'x'.repeat(100_000) },
    'dispatcher stopped: cannot go on',
  );
  expect(line.err).toBe(refusal);
  expect(line.aggregateId).toBe(`${'x'.repeat(2000)}… (100000 characters)`);
});
