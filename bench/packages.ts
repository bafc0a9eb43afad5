import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// Resolved as Node resolves an import from here: this repository's own package by its
// name (through its "exports"), the client libraries wherever npm installed them.
const require = createRequire(import.meta.url);

interface PackageJson {
  name?: string;
  version?: string;
  bin?: string | Record<string, string>;
}

/**
 * The installed package `name`: its folder and package.json, found from its entry point
 * upwards (not every package exports its package.json); undefined when not installed.
 */
export function installedPackage(name: string): { dir: string; json: PackageJson } | undefined {
  let dir: string;
  try {
    dir = dirname(require.resolve(name));
  } catch {
    return undefined;
  }
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const json = JSON.parse(readFileSync(file, 'utf8')) as PackageJson;
      // Some packages keep a package.json without a name below their root ({"type": …}).
      if (json.name === name) return { dir, json };
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The installed version of `name`, or undefined. */
export function installedVersion(name: string): string | undefined {
  return installedPackage(name)?.json.version;
}

/** The file of the executable `bin` that package `name` declares. */
export function packageBin(name: string, bin: string): string {
  const found = installedPackage(name);
  const path = typeof found?.json.bin === 'string' ? found.json.bin : found?.json.bin?.[bin];
  if (!found || !path) throw new Error(`${name} (with its ${bin} executable) is not installed`);
  return join(found.dir, path);
}
