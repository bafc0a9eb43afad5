import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { errorMessage } from './context.js';
import { installedPackage } from './packages.js';
import { processMemory } from './process.js';

/**
 * The Debezium peer (bench/peers/debezium): an embedded Debezium engine in a small Java
 * program, built with Maven into its git-ignored target/ and run as a process of its own.
 */

const run = promisify(execFile);

/** The peer's Debezium version, as its pom.xml names it. */
export const DEBEZIUM_VERSION = '3.6.1.Final';

const MAIN_CLASS = 'edupulse.bench.debezium.OutboxPeer';

function peerDir(): string {
  const root = installedPackage('edupulse-outbox')?.dir;
  if (!root) throw new Error('edupulse-outbox is not built (npm run build)');
  return join(root, 'bench', 'peers', 'debezium');
}

/** The sources the build depends on: pom.xml and every Java file. */
function sources(dir: string): string[] {
  const files = [join(dir, 'pom.xml')];
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.java')) files.push(path);
    }
  };
  walk(join(dir, 'src'));
  return files.sort();
}

function sourcesHash(dir: string): string {
  const hash = createHash('sha256');
  for (const file of sources(dir)) hash.update(file).update(readFileSync(file));
  return hash.digest('hex');
}

/** The skip reason when java or mvn is missing, else undefined. */
export async function debeziumUnavailable(): Promise<string | undefined> {
  for (const [tool, args] of [
    ['java', ['-version']],
    ['mvn', ['-v']],
  ] as const) {
    try {
      await run(tool, args, { timeout: 60_000 });
    } catch (error) {
      return `${tool} is not available (${errorMessage(error).split('\n')[0]}): the Debezium peer needs Java 17+ and Maven`;
    }
  }
  return undefined;
}

/**
 * Builds the peer unless target/ already holds a build of these sources: `mvn -q package`
 * (from Maven Central on the first build), target/ removed first so no jar of an older
 * pom stays in target/lib.
 */
export async function buildDebeziumPeer(log: (line: string) => void): Promise<void> {
  const dir = peerDir();
  const target = join(dir, 'target');
  const stamp = join(target, '.sources.sha256');
  const hash = sourcesHash(dir);
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === hash) return;
  log(
    `building the Debezium ${DEBEZIUM_VERSION} peer (mvn -q package; the first build downloads its jars)`,
  );
  rmSync(target, { recursive: true, force: true });
  try {
    await run('mvn', ['-q', '-B', '-Dstyle.color=never', 'package'], {
      cwd: dir,
      timeout: 900_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    const output = `${stdout ?? ''}${stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new Error(`the Debezium peer did not build: ${output || errorMessage(error)}`);
  }
  writeFileSync(stamp, hash);
}

/** Where the peer finds things; every Debezium and producer setting is fixed in the Java. */
export interface DebeziumPeerOptions {
  host: string;
  port: number;
  user: string;
  database: string;
  /** The captured outbox, `schema.table`. */
  table: string;
  slot: string;
  publication: string;
  bootstrapServers: string[];
  /** Topic of each message: `${routedByValue}` is the aggregatetype column. */
  topic: string;
}

const STDERR_KEPT = 8192;

/** The peer's JVM: started, waited for until the connector polls, measured, stopped. */
export class DebeziumProcess {
  readonly pid: number;
  private readonly child: ChildProcess;
  private stderr = '';
  private readonly exited: Promise<number | string>;
  private readonly ready: Promise<void>;

  constructor(options: DebeziumPeerOptions) {
    const dir = peerDir();
    const classpath = [join(dir, 'target', 'classes'), join(dir, 'target', 'lib', '*')].join(':');
    // The JVM's own defaults (heap sizing, G1 on this machine), as a deployment that sets
    // nothing gets them.
    this.child = spawn(
      'java',
      [
        '-cp',
        classpath,
        MAIN_CLASS,
        `database.hostname=${options.host}`,
        `database.port=${options.port}`,
        `database.user=${options.user}`,
        `database.dbname=${options.database}`,
        `table=${options.table}`,
        `slot=${options.slot}`,
        `publication=${options.publication}`,
        `bootstrap.servers=${options.bootstrapServers.join(',')}`,
        `topic=${options.topic}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child.once('error', (error) => {
      this.stderr += `\n${error.message}`;
    });
    if (this.child.pid === undefined) throw new Error('could not start the Debezium peer');
    this.pid = this.child.pid;
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-STDERR_KEPT);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });
    this.ready = new Promise((resolve, reject) => {
      let out = '';
      this.child.stdout?.setEncoding('utf8');
      this.child.stdout?.on('data', (text: string) => {
        out += text;
        if (/^ready$/m.test(out)) resolve();
      });
      void this.exited.then((outcome) =>
        reject(
          new Error(`the Debezium peer exited (${outcome}) before it was ready: ${this.log()}`),
        ),
      );
    });
    // Settled either way; whoever waits for it sees the outcome.
    this.ready.catch(() => {});
  }

  /** The end of its stderr (warnings and errors), for a failure's message. */
  log(): string {
    return this.stderr.trim().split('\n').slice(-15).join('\n');
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once the connector polls the slot (start-up of the JVM and the engine). */
  async whenReady(timeoutMs = 180_000): Promise<void> {
    const timeout = sleep(timeoutMs, 'timeout' as const, { ref: false });
    if ((await Promise.race([this.ready.then(() => 'ready' as const), timeout])) === 'timeout') {
      throw new Error(`the Debezium peer was not ready within ${timeoutMs} ms: ${this.log()}`);
    }
  }

  memory() {
    return processMemory(this.pid);
  }

  /** Throws, with its last log lines, when the JVM has exited. */
  assertRunning(): void {
    if (!this.running) throw new Error(`the Debezium peer exited: ${this.log()}`);
  }

  /**
   * SIGTERM: the shutdown hook closes the engine (it commits its last offsets) and the
   * producer; a JVM ended by SIGTERM exits with 143 after its hooks.
   */
  async stop(timeoutMs = 60_000): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    const timeout = sleep(timeoutMs, 'timeout' as const, { ref: false });
    const outcome = await Promise.race([this.exited, timeout]);
    if (outcome === 'timeout') {
      this.child.kill('SIGKILL');
      throw new Error(`the Debezium peer did not stop within ${timeoutMs} ms`);
    }
    if (outcome !== 0 && outcome !== 143 && outcome !== 'SIGTERM') {
      throw new Error(`the Debezium peer exited with ${outcome}: ${this.log()}`);
    }
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}
