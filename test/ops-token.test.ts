/**
 * The metrics and health endpoints (`startOpsServer`, `run --metrics-port`) under the
 * access rule the console keeps: bound beyond loopback they need a token, and then every
 * request must carry it; without a token they answer only requests to a loopback host.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createDispatcher, MemoryBroker } from '../src/index.js';
import { startOpsServer } from '../src/ops/index.js';
import { runCli } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

let t: TestSchema;
beforeAll(async () => {
  t = await createPgTestSchema('ops_token');
});
afterAll(() => t?.drop());

const TOKEN = 'metrics-token-0123456789';

/** A GET with the headers given, Host included (fetch would not send another Host). */
function get(port: number, headers: Record<string, string> = {}, path = '/metrics') {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

it('beyond loopback they need a token, and every request must carry it', async () => {
  const dispatcher = createDispatcher({ db: t.db, broker: new MemoryBroker(), logger: false });
  const base = { registry: new Registry(), dispatcher, db: t.db, schema: t.schema, port: 0 };
  // Before: bound to 0.0.0.0 with nothing asked of a request.
  await expect(startOpsServer({ ...base, host: '0.0.0.0' })).rejects.toThrow(
    /^token: 0\.0\.0\.0 is reachable beyond this machine: give the metrics and health endpoints a token/,
  );
  await expect(startOpsServer({ ...base, host: '0.0.0.0', token: 'short' })).rejects.toThrow(
    /^token: must be at least 16 characters/,
  );
  const server = await startOpsServer({ ...base, host: '0.0.0.0', token: TOKEN });
  try {
    const none = await get(server.port);
    expect(none).toEqual({
      status: 401,
      body: 'a token is required: Authorization: Bearer <token>\n',
    });
    expect(
      (await get(server.port, { authorization: 'Bearer wrong-token-0123456789' })).status,
    ).toBe(401);
    expect((await get(server.port, {}, `/metrics?token=${TOKEN}`)).body).toMatch(
      /a token in the URL is not read/,
    );
    const ok = await get(server.port, { authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(200);
    expect((await get(server.port, { authorization: `Bearer ${TOKEN}` }, '/healthz')).status).toBe(
      503,
    );
    // The token is never in what the endpoints answer.
    expect(none.body + ok.body).not.toContain(TOKEN);
  } finally {
    await server.close();
  }
  // Without a token, on loopback: a request naming another host (a page of another site
  // renamed to 127.0.0.1, DNS rebinding) is refused; this machine's own are answered.
  const local = await startOpsServer(base);
  try {
    expect((await get(local.port, { host: 'evil.example:80' })).status).toBe(403);
    expect((await get(local.port, { host: `localhost:${local.port}` })).status).toBe(200);
    expect((await get(local.port)).status).toBe(200);
  } finally {
    await local.close();
  }
});

it('run refuses a metrics port beyond loopback without a token, naming the setting', async () => {
  const env = { DATABASE_URL: PG_URL };
  const args = ['run', '--schema', t.schema, '--broker', 'log:', '--metrics-port', '0'];
  const open = await runCli([...args, '--metrics-host', '0.0.0.0'], { env });
  expect(open.code).toBe(2);
  expect(open.stderr).toContain(
    'metrics-token: 0.0.0.0 is reachable beyond this machine: give the metrics and health endpoints a token (OUTBOX_METRICS_TOKEN, --metrics-token-file or --metrics-token), or bind 127.0.0.1',
  );
  for (const [host, message] of [
    ['', 'metrics-host (from OUTBOX_METRICS_HOST): is empty'],
    [
      'not a host',
      'metrics-host (from OUTBOX_METRICS_HOST): "not a host" is not an address to bind',
    ],
  ] as const) {
    // As a template leaves a variable it had no value for: Node would bind every interface.
    const token = { OUTBOX_METRICS_TOKEN: 'metrics-token-0123456789' };
    const result = await runCli(args, { env: { ...env, ...token, OUTBOX_METRICS_HOST: host } });
    expect(result.code, host).toBe(2);
    expect(result.stderr).toContain(message);
  }
  const unicode = await runCli([...args, '--metrics-token', 'Tok€n-with-unicode-x'], { env });
  expect(unicode.code).toBe(2);
  expect(unicode.stderr).toContain('metrics-token: holds a character outside printable ASCII');
  expect(unicode.stderr).not.toContain('Tok€n');
});

it('a token flag wins over the other form in the environment; both from the environment are refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edupulse-token-'));
  try {
    const short = join(dir, 'short');
    writeFileSync(short, 'too-short\n');
    const env = { DATABASE_URL: PG_URL };
    const args = ['run', '--schema', t.schema, '--broker', 'log:', '--metrics-port', '0'];
    // Each is refused for the flag's value, so the flag's is the one read: before, the
    // two forms together were refused as given twice, naming only flags.
    const fileFlag = await runCli([...args, '--metrics-token-file', short], {
      env: { ...env, OUTBOX_METRICS_TOKEN: TOKEN },
    });
    expect(fileFlag.code).toBe(2);
    expect(fileFlag.stderr).toContain('metrics-token-file: must be at least 16 characters');
    const tokenFlag = await runCli([...args, '--metrics-token', 'too-short'], {
      env: { ...env, OUTBOX_METRICS_TOKEN_FILE: join(dir, 'missing') },
    });
    expect(tokenFlag.code).toBe(2);
    expect(tokenFlag.stderr).toContain('metrics-token: must be at least 16 characters');
    const both = await runCli(args, {
      env: { ...env, OUTBOX_METRICS_TOKEN: TOKEN, OUTBOX_METRICS_TOKEN_FILE: short },
    });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain(
      'give the token once: OUTBOX_METRICS_TOKEN or OUTBOX_METRICS_TOKEN_FILE, not both',
    );
    expect(both.stderr).not.toContain(TOKEN);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
