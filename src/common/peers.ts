import { ConfigError, errorMessage } from './errors.js';

/**
 * The optional peer dependencies the library imports (package.json
 * `peerDependenciesMeta`; the ORMs the adapters fit by shape are never imported). Each is
 * imported only where it is used, so a service that only enqueues installs and loads none of them;
 * a feature used without its packages is a setting the user must fix: a ConfigError naming
 * what to install.
 */
export interface OptionalPeer {
  /** What needs the packages, for the message: `a nats:// broker`. */
  readonly feature: string;
  /** The packages the feature imports. */
  readonly packages: readonly string[];
  /** What to install: the packages at the versions this release is tested with. */
  install(nodeMajor: number): readonly string[];
}

export const optionalPeers = {
  nats: {
    feature: 'a nats:// broker',
    packages: ['@nats-io/transport-node', '@nats-io/jetstream'],
    // From 3.4 on they depend on @nats-io/nuid 3, whose engines field asks for Node 22:
    // on Node 20, npm would warn on every install.
    install: (nodeMajor) =>
      nodeMajor < 22
        ? ['@nats-io/transport-node@~3.3.1', '@nats-io/jetstream@~3.3.1']
        : ['@nats-io/transport-node@3', '@nats-io/jetstream@3'],
  },
  amqp: {
    feature: 'an amqp:// broker',
    packages: ['amqplib'],
    install: () => ['amqplib@2'],
  },
  kafka: {
    feature: 'a kafka:// broker',
    packages: ['@platformatic/kafka'],
    // 2.x needs Node 22 and has another API.
    install: () => ['@platformatic/kafka@1'],
  },
  pglite: {
    feature: 'the embedded PostgreSQL used without a database URL (PGlite)',
    packages: ['@electric-sql/pglite'],
    install: () => ['@electric-sql/pglite@0.5'],
  },
  metrics: {
    feature: 'the metrics endpoint (Prometheus)',
    packages: ['prom-client'],
    install: () => ['prom-client@15'],
  },
} as const satisfies Record<string, OptionalPeer>;

/** `npm install …` for the peer's packages on the running Node. */
export function installCommand(peer: OptionalPeer): string {
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  return `npm install ${peer.install(nodeMajor).join(' ')}`;
}

/**
 * Whether resolving a package tells if `import()` would find it: only where this module is
 * its own file in the package. Bundled into a service's file (esbuild, rollup, webpack),
 * the client may be in the bundle with nothing on disk, and a CommonJS bundle has no
 * `import.meta.resolve`: the import itself tells then (loadWithPeer).
 */
const resolvable =
  typeof import.meta.resolve === 'function' &&
  /\/common\/peers\.[jt]s$/.test(String(import.meta.url));

/** The peer's packages that do not resolve from this package, as `import()` would see them. */
export function missingPackages(peer: OptionalPeer): string[] {
  if (!resolvable) return [];
  return peer.packages.filter((name) => {
    try {
      import.meta.resolve(name);
      return false;
    } catch {
      return true;
    }
  });
}

function notInstalled(setting: string, peer: OptionalPeer, missing: readonly string[]) {
  const names = missing.join(' and ');
  const verb = missing.length > 1 ? 'are' : 'is';
  return new ConfigError(
    setting,
    `${peer.feature} needs ${names}, which ${verb} not installed: ${installCommand(peer)}`,
  );
}

/** Throws a ConfigError on `setting` naming what to install when a package of `peer` is missing. */
export function assertPeerInstalled(setting: string, peer: OptionalPeer): void {
  const missing = missingPackages(peer);
  if (missing.length > 0) throw notInstalled(setting, peer, missing);
}

/**
 * `load()` (the dynamic import of the module that uses the peer's packages) once they are
 * known to be installed. One that resolves and still cannot be loaded (a package of its
 * own missing) gives the same ConfigError, with the loader's error as the cause.
 */
export async function loadWithPeer<T>(
  setting: string,
  peer: OptionalPeer,
  load: () => Promise<T>,
): Promise<T> {
  assertPeerInstalled(setting, peer);
  try {
    return await load();
  } catch (error) {
    throw notLoaded(setting, peer, error);
  }
}

/** loadWithPeer for a synchronous `load()` (a `require` of the peer's CommonJS package). */
export function loadedPeer<T>(setting: string, peer: OptionalPeer, load: () => T): T {
  assertPeerInstalled(setting, peer);
  try {
    return load();
  } catch (error) {
    throw notLoaded(setting, peer, error);
  }
}

function notLoaded(setting: string, peer: OptionalPeer, error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return error;
  return new ConfigError(
    setting,
    `${peer.feature} needs ${peer.packages.join(' and ')}, which could not be loaded (${errorMessage(error)}): ${installCommand(peer)}`,
    { cause: error },
  );
}
