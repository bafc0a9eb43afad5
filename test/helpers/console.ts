/**
 * The web console for browser tests: `edupulse-outbox ui` as a process on a free port, and
 * Debian's Chromium driven by playwright-core, with every page's requests and Content
 * Security Policy violations recorded so a test can check them.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { type CliProcess, spawnCli } from './cli.js';
import { PG_URL } from './db.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

export interface ConsoleProcess {
  cli: CliProcess;
  port: number;
  /** `http://127.0.0.1:<port>` */
  base: string;
}

/** The port of the first log line (stderr or stdout) with `message` and a `port`. */
export function loggedPort(cli: CliProcess, message: string): number {
  for (const line of `${cli.stderr}\n${cli.stdout}`.split('\n')) {
    if (!line.includes(message)) continue;
    try {
      const port = (JSON.parse(line) as { port?: unknown }).port;
      if (typeof port === 'number' && port > 0) return port;
    } catch {
      // Not a JSON log line.
    }
  }
  return 0;
}

/** `edupulse-outbox ui` on `schema`, any free port; resolves once it says it serves. */
export async function startConsole(
  schema: string,
  args: readonly string[] = [],
  env?: Record<string, string>,
): Promise<ConsoleProcess> {
  const cli = spawnCli(
    ['ui', '--database-url', PG_URL, '--schema', schema, '--port', '0', ...args],
    env ? { env } : {},
  );
  let port = 0;
  await cli.waitFor('the console to serve', () => {
    port = loggedPort(cli, 'serving the console');
    return port > 0;
  });
  return { cli, port, base: `http://127.0.0.1:${port}` };
}

/** A browser page and what it did: every request's URL, and the CSP violations it reported. */
export interface WatchedPage {
  page: Page;
  requests: string[];
  violations: string[];
}

/** A 1280×800 page that records its requests and CSP violations (console and DOM event). */
export async function watchedPage(browser: Browser): Promise<WatchedPage> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const requests: string[] = [];
  const violations: string[] = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });
  page.on('pageerror', (error) => violations.push(`page error: ${error.message}`));
  await page.exposeFunction('reportViolation', (text: string) => violations.push(text));
  // Init scripts run in every document before its own scripts, outside the page's CSP.
  await page.addInitScript(
    "document.addEventListener('securitypolicyviolation', (e) => window.reportViolation(e.violatedDirective + ': ' + e.blockedURI))",
  );
  return { page, requests, violations };
}

/** The figure a `data-testid` element shows, as a number (`20,000` → 20000), or NaN. */
export async function shownNumber(page: Page, testid: string): Promise<number> {
  const text = await page.getByTestId(testid).textContent({ timeout: 5000 });
  return Number((text ?? '').replace(/,/g, '').trim() || Number.NaN);
}

/**
 * Where the screenshots go: docs/screenshots with `OUTBOX_SCREENSHOTS=1` (to refresh the
 * committed ones), else a temporary directory that `remove()` deletes.
 */
export function screenshotDir(): { dir: string; remove(): void } {
  if (process.env.OUTBOX_SCREENSHOTS === '1') {
    const dir = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    return { dir, remove: () => {} };
  }
  const dir = mkdtempSync(join(tmpdir(), 'console-screens-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
