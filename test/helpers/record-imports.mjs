/**
 * `node --import <this file>`: appends the URL of every module the ES module loader loads
 * (including a CommonJS package's entry imported from ESM) to the file IMPORTS_LOG, one per
 * line. The file registers itself as the loader hooks.
 */
import { appendFileSync } from 'node:fs';
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

if (isMainThread) register(import.meta.url);

export async function load(url, context, next) {
  const log = process.env.IMPORTS_LOG;
  if (log) appendFileSync(log, `${url}\n`);
  return next(url, context);
}
