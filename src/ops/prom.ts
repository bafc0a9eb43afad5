import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import type * as PromClient from 'prom-client';
import { loadedPeer, optionalPeers } from '../common/peers.js';

/**
 * prom-client, loaded when a registry is first built rather than imported by the module:
 * `edupulse-outbox/metrics` then loads without it, and a function of it called without it
 * installed throws a ConfigError on `setting` naming what to install, not the loader's
 * ERR_MODULE_NOT_FOUND. prom-client is CommonJS, so this is the very module an
 * application's own `import client from 'prom-client'` gets: registries and metrics
 * pass between the two.
 */
export function promClient(setting: string): typeof PromClient {
  return loadedPeer(
    setting,
    optionalPeers.metrics,
    // Made on call: a CommonJS bundle of a service has no import.meta.url, and its own
    // file (or, from `node -e`, the working directory) resolves its dependencies.
    () => createRequire(requireBase())('prom-client') as typeof PromClient,
  );
}

function requireBase(): string {
  if (typeof import.meta.url === 'string') return import.meta.url;
  const main = process.argv[1];
  return main && isAbsolute(main) ? main : join(process.cwd(), 'index.js');
}
