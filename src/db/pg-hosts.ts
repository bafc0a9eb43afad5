/**
 * A URL that lists several PostgreSQL hosts, read as libpq reads it: every new connection
 * tries them in order and takes the first that accepts it (`target_session_attrs=any`) or,
 * with `read-write` (`primary`), the first that takes writes. So a URL naming a primary and
 * its standby follows a failover, and one naming an old and a new address follows a move.
 *
 * node-postgres connects to one host, and a client whose connection failed cannot try
 * again, so the host is chosen before the client connects: by a TCP connection for `any`,
 * by a connection of its own asked `SHOW transaction_read_only` for `read-write`. The
 * client then connects to the chosen host as usual (TLS checks that host's name).
 */
import { Socket } from 'node:net';
import pg from 'pg';
import { isDatabaseUnavailable } from './connection-errors.js';
import type { PgHost } from './pg-config.js';

type ClientClass = new (config?: pg.ClientConfig) => pg.Client;

/**
 * A pg.Client class that chooses its host among `hosts` when it connects; undefined when
 * there is nothing to choose (one host, any session).
 */
export function hostChoosingClient(
  hosts: readonly PgHost[],
  readWrite: boolean,
): ClientClass | undefined {
  if (hosts.length < 2 && !readWrite) return undefined;
  return class HostChoosingClient extends pg.Client {
    private readonly options: pg.ClientConfig;

    constructor(config: pg.ClientConfig = {}) {
      super(config);
      this.options = config;
    }

    override connect(): Promise<pg.Client>;
    override connect(
      callback: ((error: Error) => void) | ((error: null, client: pg.Client) => void),
    ): void;
    override connect(
      callback?: ((error: Error) => void) | ((error: null, client: pg.Client) => void),
    ): Promise<pg.Client> | undefined {
      const connected = chooseHost(hosts, readWrite, this.options).then((chosen) => {
        this.host = chosen.host;
        this.port = chosen.port;
        return super.connect();
      });
      if (!callback) return connected;
      const done = callback as (error: Error | null, client?: pg.Client) => void;
      connected.then((client) => done(null, client), done);
      return undefined;
    }
  };
}

/**
 * The first of `hosts` that accepts a connection (and takes writes, with `readWrite`). An
 * error that is not the server being away (a refused password) is thrown as it is; when
 * every host is away or read-only, an error of SQLSTATE class 08 listing what each said,
 * which callers treat as an outage and retry.
 */
async function chooseHost(
  hosts: readonly PgHost[],
  readWrite: boolean,
  config: pg.ClientConfig,
): Promise<PgHost> {
  const said: string[] = [];
  let cause: unknown;
  for (const host of hosts) {
    try {
      if (readWrite ? await takesWrites(host, config) : await acceptsTcp(host, config)) return host;
      said.push(`${host.host}:${host.port} is read-only`);
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      cause ??= error;
      said.push(`${host.host}:${host.port}: ${(error as Error).message}`);
    }
  }
  const wanted = readWrite ? 'takes writes' : 'accepts a connection';
  return Promise.reject(
    Object.assign(new Error(`no host of the URL ${wanted} (${said.join('; ')})`, { cause }), {
      code: '08001',
    }),
  );
}

function acceptsTcp(host: PgHost, config: pg.ClientConfig): Promise<true> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    socket.setTimeout(config.connectionTimeoutMillis || 5000, () =>
      socket.destroy(Object.assign(new Error('timeout expired'), { code: 'ETIMEDOUT' })),
    );
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', reject);
    socket.connect(host.port, host.host);
  });
}

async function takesWrites(host: PgHost, config: pg.ClientConfig): Promise<boolean> {
  // The password by name: pg-pool keeps it as a property a spread does not copy (not
  // enumerable, so that it is never printed with the config).
  const client = new pg.Client({
    ...config,
    password: config.password,
    host: host.host,
    port: host.port,
  });
  // An error after connecting (the server going away) must not be left unhandled.
  client.on('error', () => {});
  try {
    await client.connect();
    const result = await client.query<{ transaction_read_only: string }>(
      'SHOW transaction_read_only',
    );
    return result.rows[0]?.transaction_read_only === 'off';
  } finally {
    await client.end().catch(() => {});
  }
}
