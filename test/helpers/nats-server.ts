/**
 * A private nats-server process for tests that take the server down: its own free port,
 * JetStream store in a temp directory and config file, so stopping it never disturbs the
 * machine's NATS on 4222 that other test files share. `stop()` then `start()` restarts the
 * same process image on the same port and store, so streams survive the outage.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../scripts/free-port.mjs';

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? 'nats-server';

export interface NatsServerOptions {
  /** Largest message the server accepts (header + body), in bytes. Default 1 MB. */
  maxPayload?: number;
  /** Require this user and password (with `nkeys`: either). */
  user?: { name: string; password: string };
  /**
   * Require one of these users, each with its own permissions (nats-server's `publish` and
   * `subscribe` allow lists; absent, everything).
   */
  users?: { name: string; password: string; publish?: string[]; subscribe?: string[] }[];
  /** Require this token. */
  token?: string;
  /** Require one of these NKey users (their public keys, `U…`). */
  nkeys?: string[];
  /**
   * TLS on the client port (required of every client): the server's certificate and key,
   * and with `verify` the CA whose client certificates it asks for and accepts.
   */
  tls?: { certFile: string; keyFile: string; caFile?: string; verify?: boolean };
  /**
   * Operator (JWT) mode: the operator's JWT, the account JWTs it trusts by public key, and
   * the system account among them (JetStream needs one).
   */
  operator?: { jwt: string; accounts: Record<string, string>; systemAccount: string };
  /** Client port (default: a free one). */
  port?: number;
  /**
   * A member of a cluster: its server name, the port its routes listen on, and the other
   * members' route ports. JetStream then replicates streams across the members.
   */
  cluster?: { name: string; serverName: string; routePort: number; routes: number[] };
}

export interface PrivateNatsServer {
  readonly port: number;
  /** The process id while it runs. */
  readonly pid: number | undefined;
  /** `nats://127.0.0.1:<port>`, without credentials. */
  readonly url: string;
  /** Starts the process again (no-op if running) and waits until it accepts clients. */
  start(): Promise<void>;
  /** Stops the process (SIGTERM: JetStream flushes its store) and waits for it to exit. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, nothing handed over; waits for the exit. */
  kill(): Promise<void>;
  /**
   * SIGSTOP / SIGCONT: the process stays, its sockets stay open, nothing answers, like a
   * server behind a dead network path.
   */
  freeze(): Promise<void>;
  thaw(): void;
  /** Stops it for good and removes its store. */
  destroy(): Promise<void>;
}

function configText(port: number, storeDir: string, options: NatsServerOptions): string {
  const lines = [
    `listen: "127.0.0.1:${port}"`,
    `max_payload: ${options.maxPayload ?? 1024 * 1024}`,
    `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
  ];
  if (options.cluster) {
    const { name, serverName, routePort, routes } = options.cluster;
    lines.push(
      `server_name: ${JSON.stringify(serverName)}`,
      `cluster { name: ${JSON.stringify(name)}, listen: "127.0.0.1:${routePort}", routes: [ ${routes
        .map((route) => `"nats-route://127.0.0.1:${route}"`)
        .join(', ')} ] }`,
    );
  }
  const users = [
    ...(options.user
      ? [
          `{ user: ${JSON.stringify(options.user.name)}, password: ${JSON.stringify(options.user.password)} }`,
        ]
      : []),
    ...(options.users ?? []).map(({ name, password, publish, subscribe }) => {
      const allow = [
        ...(publish ? [`publish: ${JSON.stringify(publish)}`] : []),
        ...(subscribe ? [`subscribe: ${JSON.stringify(subscribe)}`] : []),
      ];
      const permissions = allow.length > 0 ? `, permissions: { ${allow.join(', ')} }` : '';
      return `{ user: ${JSON.stringify(name)}, password: ${JSON.stringify(password)}${permissions} }`;
    }),
    ...(options.nkeys ?? []).map((key) => `{ nkey: ${JSON.stringify(key)} }`),
  ];
  if (users.length > 0) lines.push(`authorization { users: [ ${users.join(', ')} ] }`);
  if (options.token) lines.push(`authorization { token: ${JSON.stringify(options.token)} }`);
  if (options.tls) {
    const { certFile, keyFile, caFile, verify } = options.tls;
    lines.push(
      `tls { cert_file: ${JSON.stringify(certFile)}, key_file: ${JSON.stringify(keyFile)}${
        caFile ? `, ca_file: ${JSON.stringify(caFile)}` : ''
      }${verify ? ', verify: true' : ''} }`,
    );
  }
  if (options.operator) {
    const preload = Object.entries(options.operator.accounts).map(
      ([key, jwt]) => `${key}: ${JSON.stringify(jwt)}`,
    );
    lines.push(
      `operator: ${JSON.stringify(options.operator.jwt)}`,
      `system_account: ${JSON.stringify(options.operator.systemAccount)}`,
      'resolver: MEMORY',
      `resolver_preload: { ${preload.join(', ')} }`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Resolves once the log says the server accepts clients; rejects if it exits first. */
function whenReady(child: ChildProcess, log: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`nats-server did not start within 10 s:\n${log()}`));
    }, 10_000);
    const onData = () => {
      if (log().includes('Server is ready')) {
        clearTimeout(timer);
        child.stderr?.off('data', onData);
        resolve();
      }
    };
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code}:\n${log()}`));
    });
  });
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<PrivateNatsServer> {
  const dir = await mkdtemp(join(tmpdir(), 'edupulse-nats-'));
  const port = options.port ?? (await freePort());
  const config = join(dir, 'nats.conf');
  await writeFile(config, configText(port, join(dir, 'store'), options));
  let child: ChildProcess | undefined;

  const start = async () => {
    if (child) return;
    let log = '';
    const started = spawn(NATS_SERVER, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    started.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    child = started;
    // Not left running if the test process dies without its afterAll.
    const orphan = () => started.kill('SIGKILL');
    process.once('exit', orphan);
    started.once('exit', () => process.off('exit', orphan));
    try {
      await whenReady(started, () => log);
    } catch (error) {
      child = undefined;
      started.kill('SIGKILL');
      throw error;
    }
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const running = child;
    if (!running) return;
    child = undefined;
    if (running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGCONT');
      running.kill(signal);
    });
  };

  await start();
  return {
    get pid() {
      return child?.pid;
    },
    port,
    url: `nats://127.0.0.1:${port}`,
    start,
    stop: () => stop(),
    kill: () => stop('SIGKILL'),
    async freeze() {
      const pid = child?.pid;
      child?.kill('SIGSTOP');
      // The signal takes effect when the process next enters the kernel: wait until it is
      // stopped, so nothing it was still doing answers after freeze() resolves.
      for (let i = 0; pid !== undefined && i < 200; i++) {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
        if (/\) [tT] /.test(stat)) return;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    thaw: () => child?.kill('SIGCONT'),
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface PrivateNatsCluster {
  /** The members, in the order of their names n1, n2, n3. */
  readonly servers: readonly PrivateNatsServer[];
  /** Every member's client address: `nats://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`. */
  readonly url: string;
  /** The member whose server name is `name` (n1, n2, …). */
  byName(name: string): PrivateNatsServer | undefined;
  destroy(): Promise<void>;
}

/**
 * `size` private nats-servers routed into one JetStream cluster, each on ports of its own;
 * with `tls`, each requires it of its clients (the routes between them stay plain).
 */
export async function startNatsCluster(
  size = 3,
  tls?: NatsServerOptions['tls'],
): Promise<PrivateNatsCluster> {
  const ports = await Promise.all(Array.from({ length: size * 2 }, () => freePort()));
  const clientPorts = ports.slice(0, size);
  const routePorts = ports.slice(size);
  const name = `edupulse-${process.pid}-${clientPorts[0]}`;
  const servers = await Promise.all(
    clientPorts.map((port, i) =>
      startNatsServer({
        port,
        ...(tls ? { tls } : {}),
        cluster: {
          name,
          serverName: `n${i + 1}`,
          routePort: routePorts[i] as number,
          routes: routePorts.filter((_, j) => j !== i),
        },
      }),
    ),
  );
  return {
    servers,
    url: `nats://${clientPorts.map((port) => `127.0.0.1:${port}`).join(',')}`,
    byName: (serverName) => servers[Number(serverName.slice(1)) - 1],
    async destroy() {
      await Promise.all(servers.map((server) => server.destroy()));
    },
  };
}
