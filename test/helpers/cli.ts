/**
 * The CLI as a separate process: `node bin/edupulse-outbox …`, run on the compiled dist/
 * (`npm run build` first; `npm test` does). Every child is tracked so a test file can kill
 * whatever is still alive in afterEach (`killChildren`), even when a test failed midway.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/edupulse-outbox', import.meta.url));

/** Settings the CLI reads from the environment; removed from every child's env unless given. */
const SETTING_VARIABLES = [
  'DATABASE_URL',
  'OUTBOX_BROKER_URL',
  'OUTBOX_SCHEMA',
  'OUTBOX_UI_TOKEN',
  'OUTBOX_UI_TOKEN_FILE',
  'OUTBOX_UI_PORT',
  'OUTBOX_UI_HOST',
];

export interface CliOptions {
  /** Variables added to the child's environment (the CLI's settings are removed first). */
  env?: Record<string, string> | undefined;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running CLI process with its output collected as it arrives. */
export interface CliProcess {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Complete stdout lines so far (a line counts once its newline has arrived). */
  lineCount(): number;
  /** Resolves when the process has exited and its output streams have ended. */
  exited: Promise<CliResult>;
  /**
   * Polls `condition` until it holds; fails at once if the process ends first (with its
   * stderr in the message), or after `timeoutMs`.
   */
  waitFor(
    what: string,
    condition: () => boolean | Promise<boolean>,
    timeoutMs?: number,
  ): Promise<void>;
}

const live = new Set<ChildProcess>();

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of SETTING_VARIABLES) delete env[name];
  return { ...env, ...extra };
}

/** Starts `edupulse-outbox <args>`; the caller signals it and awaits `exited`. */
export function spawnCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  return spawnNode(BIN, args, options);
}

/**
 * Starts `node <script> <args>` in the repository root, tracked and collected like the CLI
 * (a test's own program on dist/, such as a consumer process).
 */
export function spawnNode(
  script: string,
  args: readonly string[],
  options: CliOptions = {},
): CliProcess {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: ROOT,
    env: childEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let stdout = '';
  let stderr = '';
  let lines = 0;
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    stdout += chunk;
    for (const char of chunk) if (char === '\n') lines++;
  });
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  // 'close' comes after 'exit' and after both pipes have ended: all output is in.
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      live.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  let ended = false;
  void exited.then(
    () => {
      ended = true;
    },
    () => {
      ended = true;
    },
  );
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    lineCount: () => lines,
    exited,
    async waitFor(what, condition, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (await condition()) return;
        if (ended) throw new Error(`the CLI exited while waiting for ${what}; stderr:\n${stderr}`);
        if (Date.now() > deadline) {
          throw new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}; stderr:\n${stderr}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

/** Runs `edupulse-outbox <args>` to completion; SIGKILLs it after `timeoutMs`. */
export async function runCli(
  args: readonly string[],
  options: CliOptions & { timeoutMs?: number } = {},
): Promise<CliResult> {
  const cli = spawnCli(args, options);
  const timer = setTimeout(() => cli.child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  try {
    return await cli.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** SIGKILLs every child still alive and waits for them to be gone. For afterEach/afterAll. */
export async function killChildren(): Promise<void> {
  const waiting = [...live].map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          live.delete(child);
          resolve();
          return;
        }
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  await Promise.all(waiting);
  live.clear();
}

/** stdout's complete lines parsed as JSON; a line cut short by SIGKILL (unparsable) is skipped. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  const parsed: Record<string, unknown>[] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    try {
      parsed.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // The last line of a killed process may be truncated.
    }
  }
  return parsed;
}

/** Lines of a stack trace (`    at fn (file:line)`), which non-verbose errors must not print. */
export function stackLines(text: string): string[] {
  return text.split('\n').filter((line) => /^\s+at\s/.test(line));
}

/** Fails if any of `outputs` holds `secret`, as written or percent-encoded. */
export function expectNoSecretIn(outputs: readonly string[], secret: string): void {
  for (const output of outputs) {
    expect(output).not.toContain(secret);
    expect(output).not.toContain(encodeURIComponent(secret));
  }
}

/** Non-empty lines of a text. */
export function lines(text: string): string[] {
  return text.split('\n').filter((line) => line.trim() !== '');
}
