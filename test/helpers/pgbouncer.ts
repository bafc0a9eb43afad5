/**
 * A private PgBouncer (Debian's `pgbouncer`) in front of the shared PostgreSQL: its own
 * port and scratch directory, trust authentication (as the shared server has), the pool
 * mode a test asks for. The shared server is not touched: the pooler only forwards to it.
 * As root, PgBouncer runs as the `postgres` OS user (it refuses to run as root).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../scripts/free-port.mjs';
import { accepts } from './wait.js';

export interface PgBouncer {
  port: number;
  /** A URL through the pooler to `database` on the shared server, as user postgres. */
  url(database: string): string;
  stop(): Promise<void>;
}

export async function startPgBouncer(options: {
  poolMode: 'session' | 'transaction';
  /** Server connections per database/user pair. Default 10. */
  poolSize?: number;
  /** Where the shared server listens. Default 127.0.0.1:5432. */
  serverPort?: number;
}): Promise<PgBouncer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'edupulse-pgbouncer-'));
  const asRoot = process.getuid?.() === 0;
  writeFileSync(join(dir, 'userlist.txt'), '"postgres" ""\n');
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=127.0.0.1 port=${options.serverPort ?? 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      `pool_mode = ${options.poolMode}`,
      `default_pool_size = ${options.poolSize ?? 10}`,
      'max_client_conn = 200',
      // What most deployments ignore, so that node-postgres connects at all.
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      ...(asRoot ? ['user = postgres'] : []),
      '',
    ].join('\n'),
  );
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    for (const name of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(join(dir, name), uid, gid);
  }
  const child: ChildProcess = spawn('pgbouncer', [join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log = () => {
    try {
      return readFileSync(join(dir, 'pgbouncer.log'), 'utf8').slice(-2000);
    } catch {
      return stderr;
    }
  };
  for (let i = 0; !(await accepts(port)); i++) {
    if (child.exitCode !== null || i > 100) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`pgbouncer did not start: ${log()}`);
    }
    await sleep(100);
  }
  return {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async stop() {
      if (child.exitCode === null) {
        // SIGTERM: PgBouncer's immediate shutdown (SIGINT would wait for its clients).
        child.kill('SIGTERM');
        const killed = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killed);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
