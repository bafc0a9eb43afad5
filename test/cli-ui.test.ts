/**
 * The console from the command line: `ui` and `run --ui-port`, their settings refused with
 * exit 2 naming the setting, and the token never printed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectNoSecretIn, killChildren, runCli, spawnCli } from './helpers/cli.js';
import { loggedPort } from './helpers/console.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

let t: TestSchema;
let dir: string;

beforeAll(async () => {
  t = await createPgTestSchema('cli_ui');
  dir = mkdtempSync(join(tmpdir(), 'cli-ui-'));
});

afterAll(async () => {
  await killChildren();
  rmSync(dir, { recursive: true, force: true });
  await t.drop();
});

const env = { DATABASE_URL: PG_URL };

/** Starts a command that serves the console and returns the port it logged. */
async function serving(args: string[], extraEnv: Record<string, string> = {}) {
  const child = spawnCli(args, { env: { ...env, ...extraEnv } });
  let port = 0;
  await child.waitFor('the console', () => {
    port = loggedPort(child, 'serving the console');
    return port > 0;
  });
  return { child, port };
}

describe('edupulse-outbox ui', () => {
  it('serves the API of the schema on loopback, and stops on SIGTERM with exit 0', async () => {
    const { child, port } = await serving(['ui', '--schema', t.schema, '--port', '0']);
    const overview = await (await fetch(`http://127.0.0.1:${port}/api/overview`)).json();
    expect(overview).toMatchObject({ status: { schema: t.schema, pending: 0 }, dispatcher: null });
    child.child.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  });

  it('refuses a bind beyond loopback without a token, a short token, and a schema not migrated (exit 2)', async () => {
    const cases: [string[], string][] = [
      [['--host', '0.0.0.0'], 'ui-token: '],
      [['--ui-token', 'shorty-token'], 'ui-token: must be at least 16 characters'],
      [['--ui-token-file', join(dir, 'missing')], 'edupulse-outbox: ui-token-file: cannot read '],
      [['--port', '70000'], 'port: '],
      // Empty, Node would bind every interface; the address is named, not the token.
      [['--host', '', '--ui-token', 'console-token-0123456789'], 'host: is empty'],
      [['--host', 'not a host'], 'host: "not a host" is not an address to bind'],
      // An address not of this machine: the address is at fault, not the port.
      [
        ['--host', '10.255.255.1', '--port', '0', '--ui-token', 'console-token-0123456789'],
        'host: cannot listen on 10.255.255.1:0',
      ],
    ];
    for (const [extra, message] of cases) {
      const result = await runCli(['ui', '--schema', t.schema, ...extra], { env });
      expect(result.code, extra.join(' ')).toBe(2);
      expect(result.stderr, extra.join(' ')).toContain(message);
    }
    expectNoSecretIn(
      [(await runCli(['ui', '--ui-token', 'shorty-token'], { env })).stderr],
      'shorty-token',
    );
    const behind = await runCli(['ui', '--schema', 'not_migrated_here'], { env });
    expect(behind.code).toBe(2);
    // A token file with spaces around the token, or a second line: no request could match.
    for (const [name, text] of [
      ['spaced', '  console-token-0123456789  \n'],
      ['two-lines', 'console-token-0123456789\n\n'],
    ] as const) {
      writeFileSync(join(dir, name), text);
      const result = await runCli(['ui', '--ui-token-file', join(dir, name)], { env });
      expect(result.code, name).toBe(2);
      expect(result.stderr).toContain('ui-token-file: holds whitespace');
      expectNoSecretIn([result.stderr, result.stdout], 'console-token-0123456789');
    }
    // A token outside printable ASCII started, and then refused every request.
    const unicode = await runCli(['ui', '--ui-token', 'Tok€n-with-unicode-x'], { env });
    expect(unicode.code).toBe(2);
    expect(unicode.stderr).toContain('ui-token: holds a character outside printable ASCII');
    expectNoSecretIn([unicode.stderr, unicode.stdout], 'Tok€n-with-unicode-x');
    // run checks the console's and the readiness settings without their ports too: from
    // the environment (as flags, without the port, they are refused as ignored).
    for (const [extra, message, more] of [
      [
        [],
        'ui-token (from OUTBOX_UI_TOKEN): must be at least 16 characters',
        { OUTBOX_UI_TOKEN: 'shorty-token' },
      ],
      [['--ui-token', 'shorty-token'], 'ui-token: protects what --ui-port serves', {}],
      [['--ready-max-lag-seconds', 'abc'], 'ready-max-lag-seconds: ', {}],
    ] as const) {
      const result = await runCli(['run', '--schema', t.schema, '--broker', 'log:', ...extra], {
        env: { ...env, ...more },
      });
      expect(result.code, extra.join(' ')).toBe(2);
      expect(result.stderr).toContain(message);
    }
  });

  it('with a token from a file, binds beyond loopback and never prints the token', async () => {
    const token = 'console-token-0123456789abcdef';
    writeFileSync(join(dir, 'token'), `${token}\n`);
    const { child, port } = await serving([
      'ui',
      '--schema',
      t.schema,
      '--port',
      '0',
      '--host',
      '0.0.0.0',
      '--ui-token-file',
      join(dir, 'token'),
    ]);
    expect((await fetch(`http://127.0.0.1:${port}/api/overview`)).status).toBe(401);
    const allowed = await fetch(`http://127.0.0.1:${port}/api/overview`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(allowed.status).toBe(200);
    child.child.kill('SIGTERM');
    await child.exited;
    expectNoSecretIn([child.stdout, child.stderr], token);
  });
});

describe('run --ui-port', () => {
  it("serves the console from the dispatcher, with the dispatcher's own view", async () => {
    const { child, port } = await serving(
      ['run', '--schema', t.schema, '--broker', 'log:', '--ui-port', '0'],
      { OUTBOX_UI_TOKEN: 'run-console-token-0123456789' },
    );
    // The console listens before the dispatcher has joined and connected: ask until it has.
    let overview: {
      status?: { dispatchers: unknown[] };
      dispatcher?: { brokerHealthy: boolean } | null;
    } = {};
    await child.waitFor('the dispatcher at work', async () => {
      const reply = await fetch(`http://127.0.0.1:${port}/api/overview`, {
        headers: { authorization: 'Bearer run-console-token-0123456789' },
      });
      overview = (await reply.json()) as typeof overview;
      return (
        overview.status?.dispatchers.length === 1 && overview.dispatcher?.brokerHealthy === true
      );
    });
    expect(overview.dispatcher).toMatchObject({ broker: 'log', brokerHealthy: true, published: 0 });
    expect(overview.status?.dispatchers).toHaveLength(1);
    child.child.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
    expectNoSecretIn([child.stdout, child.stderr], 'run-console-token-0123456789');
  });

  it('refuses --ui-host beyond loopback without a token before it dispatches (exit 2)', async () => {
    const result = await runCli(
      ['run', '--schema', t.schema, '--broker', 'log:', '--ui-port', '0', '--ui-host', '0.0.0.0'],
      { env },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('ui-token: ');
  });
});
