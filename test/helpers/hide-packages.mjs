/**
 * `node --import <this file>`: the packages named in HIDDEN_PACKAGES (comma-separated)
 * cannot be resolved, as if they were not installed, for `import`, `import()` and
 * `import.meta.resolve` alike. Those in BROKEN_PACKAGES resolve, but loading them fails
 * with ERR_MODULE_NOT_FOUND, as when a package's own dependency is missing. The file
 * registers itself as the loader hooks.
 */
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

if (isMainThread) register(import.meta.url);

const names = (variable) => (process.env[variable] ?? '').split(',').filter(Boolean);
const hidden = names('HIDDEN_PACKAGES');
const broken = names('BROKEN_PACKAGES');

function notFound(what, from) {
  const error = new Error(`Cannot find package '${what}' imported from ${from}`);
  error.code = 'ERR_MODULE_NOT_FOUND';
  return error;
}

export async function resolve(specifier, context, next) {
  if (hidden.some((name) => specifier === name || specifier.startsWith(`${name}/`))) {
    throw notFound(specifier, context.parentURL);
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  const name = broken.find((name) => url.includes(`/node_modules/${name}/`));
  if (name) throw notFound(`${name}'s dependency`, url);
  return next(url, context);
}
