// A private PostgreSQL with `wal_level = logical`, for the benchmarks and tests that need
// logical replication — or TLS, passwords, client certificates — without reconfiguring
// the machine's shared server: initdb into a
// scratch directory, its own free port, started with pg_ctl, stopped and removed afterwards
// (also when the process exits or is interrupted). Plain JavaScript with a .d.mts beside it,
// so that both bench/ (compiled apart from src/) and test/ can import it.
//
// The binaries come from `pg_config --bindir` (PG_CONFIG names another pg_config). initdb
// refuses to run as root: as root, every server command runs as the `postgres` OS user
// (runuser), and the scratch directory is handed to that user.

import { execFile, execFileSync } from 'node:child_process';
import {
  appendFileSync,
  chownSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePort } from '../free-port.mjs';

const run = promisify(execFile);

const OS_USER = 'postgres';

/**
 * Durability as PostgreSQL ships it, which is what the shared server runs with: every
 * commit flushed to disk, full page writes. Spelled out so that a comparison made on this
 * server is never a comparison with a weakened one.
 */
const DURABILITY = {
  fsync: 'on',
  synchronous_commit: 'on',
  full_page_writes: 'on',
};

function bindir() {
  const pgConfig = process.env.PG_CONFIG || 'pg_config';
  try {
    return execFileSync(pgConfig, ['--bindir'], { encoding: 'utf8' }).trim();
  } catch (error) {
    throw new Error(`${pgConfig} --bindir failed: is PostgreSQL installed?`, { cause: error });
  }
}

/** uid and gid of the OS user the server runs as when this process is root. */
function osUser() {
  const id = (flag) => Number(execFileSync('id', [flag, OS_USER], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch (error) {
    throw new Error(`running as root, the server needs the "${OS_USER}" OS user`, {
      cause: error,
    });
  }
}

/** The postmaster's pid: the first line of postmaster.pid, while the server runs. */
function postmasterPid(data) {
  try {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` still runs (a zombie waiting for its parent to reap it has exited). */
function running(pid) {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return /** @type {NodeJS.ErrnoException} */ (error).code === 'EPERM';
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc: kill(pid, 0) is all there is
  }
}

/**
 * pg_ctl stop -w returns once the postmaster has removed its pid file, a moment before the
 * process itself is gone: waits for that too (at most 10 s).
 */
async function exited(pid) {
  for (let i = 0; pid !== undefined && running(pid) && i < 200; i++) await sleep(50);
}

function configText(port, settings) {
  const lines = [
    '# Written by scripts/pg/logical-postgres.mjs: a private server for logical replication.',
    `port = ${port}`,
    "listen_addresses = '127.0.0.1'",
    // TCP only: no socket file to collide with the shared server's.
    "unix_socket_directories = ''",
    'wal_level = logical',
    'max_replication_slots = 10',
    'max_wal_senders = 10',
    ...Object.entries({ ...DURABILITY, ...settings }).map(
      ([name, value]) => `${name} = '${String(value).replaceAll("'", "''")}'`,
    ),
  ];
  return `\n${lines.join('\n')}\n`;
}

/**
 * Starts the server and resolves once it accepts connections.
 * @param {import('./logical-postgres.d.mts').LogicalPostgresOptions} [options]
 * @returns {Promise<import('./logical-postgres.d.mts').LogicalPostgres>}
 */
export async function startLogicalPostgres(options = {}) {
  const bin = bindir();
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const user = asRoot ? osUser() : undefined;
  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), 'edupulse-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  if (user) chownSync(dir, user.uid, user.gid);

  /** A server binary, as the postgres OS user when this process is root. */
  const command = (name, args) =>
    asRoot
      ? { file: 'runuser', args: ['-u', OS_USER, '--', join(bin, name), ...args] }
      : { file: join(bin, name), args };
  const pgCtl = (...args) => command('pg_ctl', ['-D', data, ...args]);

  let stopped = false;
  /** Synchronous, for `exit` and signals: no promise runs after those. */
  const cleanupSync = () => {
    if (stopped) return;
    stopped = true;
    const stop = pgCtl('-m', 'immediate', '-w', 'stop');
    try {
      execFileSync(stop.file, stop.args, { stdio: 'ignore' });
    } catch {} // not running
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => cleanupSync();
  const onSignal = (signal) => {
    cleanupSync();
    release();
    // Whatever the signal would have done without this handler (end the process), unless
    // someone else handles it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const release = () => {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const port = await freePort();
  const passwordFile = () => {
    const file = join(dir, 'initdb-password');
    writeFileSync(file, `${options.password}\n`, { mode: 0o600 });
    if (user) chownSync(file, user.uid, user.gid);
    return file;
  };
  try {
    const initdb = command('initdb', [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '--encoding=UTF8',
      '--locale=C',
      '--no-instructions',
      // Skips flushing initdb's own files: a scratch cluster a crash could not leave behind
      // half-written. The server itself runs with full durability (DURABILITY).
      '--no-sync',
      // The superuser's password (SCRAM), for tests of password authentication.
      ...(options.password === undefined ? [] : [`--pwfile=${passwordFile()}`]),
    ]);
    await run(initdb.file, initdb.args);
    appendFileSync(join(data, 'postgresql.conf'), configText(port, options.settings ?? {}));
    // Files the settings name (certificates and keys): private to the server's OS user,
    // as PostgreSQL requires of a key file.
    for (const [name, content] of Object.entries(options.files ?? {})) {
      const file = join(data, name);
      writeFileSync(file, content, { mode: 0o600 });
      if (user) chownSync(file, user.uid, user.gid);
    }
    if (options.hba) {
      writeFileSync(join(data, 'pg_hba.conf'), `${options.hba.join('\n')}\n`);
    }
    const start = pgCtl('-l', log, '-w', '-t', '60', 'start');
    await run(start.file, start.args);
  } catch (error) {
    let serverLog = '';
    try {
      serverLog = readFileSync(log, 'utf8').slice(-4000);
    } catch {}
    const { stderr } = /** @type {{ stderr?: string }} */ (error);
    cleanupSync();
    release();
    throw new Error(
      `could not start a private PostgreSQL: ${stderr?.trim() || String(error)}${serverLog ? `\n${serverLog}` : ''}`,
      { cause: error },
    );
  }

  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dir,
    async stop() {
      if (stopped) return;
      stopped = true;
      release();
      const pid = postmasterPid(data);
      try {
        const stop = pgCtl('-m', 'fast', '-w', '-t', '60', 'stop');
        await run(stop.file, stop.args);
        await exited(pid);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
