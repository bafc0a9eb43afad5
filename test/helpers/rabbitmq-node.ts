/**
 * A private RabbitMQ node for the network tests, beside the shared one on 5672 which it
 * leaves alone: its own node name, free ports (AMQP, optionally AMQPS, distribution), and
 * a scratch directory for its configuration, database, logs and Erlang cookie; no
 * plugins. One user (`default_user`), allowed from anywhere. With `tls`, an AMQPS listener
 * with the given certificate that verifies client certificates against the CA (and, with
 * `requireClientCertificate`, refuses clients without one). With `cookie`, the Erlang cookie
 * it shares with the other members of a cluster (rabbitmq-cluster.ts). `stop()` stops the
 * node, kills what is left of it and removes the directory.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../scripts/free-port.mjs';
import { accepts, waitFor } from './wait.js';

// The packaged scripts themselves: the wrappers on the PATH switch to the rabbitmq user
// when run as root, which could not read a root-owned scratch directory.
const PACKAGED = '/usr/lib/rabbitmq/bin';
const bin = (name: string) =>
  existsSync(join(PACKAGED, name)) ? join(PACKAGED, name) : (process.env[`${name}_BIN`] ?? name);

export interface RabbitNodeOptions {
  /** Letters, digits and `-` only: they go into the configuration file as they are. */
  user: string;
  password: string;
  tls?: {
    caFile: string;
    certFile: string;
    keyFile: string;
    requireClientCertificate: boolean;
  };
  /**
   * The Erlang cookie: nodes (and their rabbitmqctl) talk to each other only when they
   * hold the same one. Absent, the node makes its own.
   */
  cookie?: string;
}

export interface RabbitNode {
  /** `outbox-…@localhost`. */
  name: string;
  /** The plain AMQP listener on 127.0.0.1. */
  port: number;
  /** The AMQPS listener on 127.0.0.1, with `tls`. */
  tlsPort: number | undefined;
  /** `amqp://user:password@127.0.0.1:<port>`: for the tests' own clients. */
  url: string;
  /** `rabbitmqctl -n <name> <args>`: its stdout. */
  ctl(args: readonly string[]): Promise<string>;
  /** SIGKILL to the node and its helpers: a crash, nothing handed over; waits for the exit. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRabbitNode(options: RabbitNodeOptions): Promise<RabbitNode> {
  const { user, password, tls, cookie } = options;
  if (!/^[A-Za-z0-9-]+$/.test(user) || !/^[A-Za-z0-9-]+$/.test(password)) {
    throw new Error('startRabbitNode: user and password must be letters, digits and "-"');
  }
  const dir = mkdtempSync(join(tmpdir(), 'edupulse-rabbitmq-'));
  const ports = new Set<number>();
  while (ports.size < 3) ports.add(await freePort());
  const [port, tlsPort, distPort] = [...ports] as [number, number, number];
  const name = `outbox-${port}@localhost`;
  const config = [
    `listeners.tcp.default = 127.0.0.1:${port}`,
    ...(tls
      ? [
          `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
          `ssl_options.cacertfile = ${tls.caFile}`,
          `ssl_options.certfile = ${tls.certFile}`,
          `ssl_options.keyfile = ${tls.keyFile}`,
          'ssl_options.verify = verify_peer',
          `ssl_options.fail_if_no_peer_cert = ${tls.requireClientCertificate}`,
        ]
      : []),
    'loopback_users = none',
    `default_user = ${user}`,
    `default_pass = ${password}`,
    '',
  ];
  writeFileSync(join(dir, 'rabbitmq.conf'), config.join('\n'));
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
  if (cookie !== undefined) {
    // Where the node and rabbitmqctl look for it ($HOME below); Erlang refuses a cookie
    // file that others may read.
    writeFileSync(join(dir, '.erlang.cookie'), cookie);
    chmodSync(join(dir, '.erlang.cookie'), 0o400);
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // The cookie the node and rabbitmqctl share is made in $HOME.
    HOME: dir,
    RABBITMQ_NODENAME: name,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    // Not the machine's /etc/rabbitmq/rabbitmq-env.conf, which names the shared node.
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  // A process group of its own: the script runs the Erlang VM as its child, and killGroup()
  // below must reach both.
  const child: ChildProcess = spawn(bin('rabbitmq-server'), [], {
    env,
    stdio: ['ignore', 'ignore', 'ignore'],
    detached: true,
  });
  const killGroup = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const ctl = async (args: readonly string[]) => {
    const run = promisify(execFile);
    return (await run(bin('rabbitmqctl'), ['-n', name, ...args], { env, timeout: 30_000 })).stdout;
  };
  const stop = async () => {
    if (!exited) {
      await ctl(['stop']).catch(() => {});
      await waitFor('the node to exit', () => exited, { timeoutMs: 15_000 }).catch(() => {});
    }
    // What the stop left behind (erl_child_setup, inet_gethost), or a node that did not stop.
    killGroup();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `RabbitMQ node ${name} to accept AMQP`,
      async () => {
        if (exited) throw new Error(`RabbitMQ node ${name} exited while starting`);
        return (await accepts(port)) && (!tls || (await accepts(tlsPort)));
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    name,
    port,
    tlsPort: tls ? tlsPort : undefined,
    url: `amqp://${user}:${password}@127.0.0.1:${port}`,
    ctl,
    async kill() {
      killGroup();
      // The script's exit, then the VM's: its listener goes with it.
      await waitFor(`RabbitMQ node ${name} to exit`, async () => exited && !(await accepts(port)), {
        timeoutMs: 15_000,
      });
    },
    stop,
  };
}
