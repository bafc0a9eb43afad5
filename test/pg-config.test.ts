/**
 * How a postgres:// URL becomes node-postgres settings: libpq's sslmode meanings, files
 * read once and named when they cannot be, the password file, the pooler declaration.
 * What each setting does against a real TLS server is test/network/postgres-tls.test.ts.
 */
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/common/errors.js';
import { scrubSecrets } from '../src/common/secrets.js';
import { redactUrl } from '../src/common/url.js';
import { pgConnectionSettings } from '../src/db/pg-config.js';
import { createTestCa } from './helpers/certs.js';

const dir = mkdtempSync(join(tmpdir(), 'edupulse-pg-config-'));
// Real PEM files: the URL's TLS files are checked as such when it is read.
const testCa = createTestCa();
const client = testCa.issue('client', 'app');
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  testCa.remove();
});

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

const BASE = 'postgres://app@db.internal:5433/shop';
const settings = (query: string) => pgConnectionSettings(`${BASE}?${query}`, 'database-url');
const ssl = (query: string) => settings(query).config.ssl as Record<string, unknown>;

function refusal(query: string): ConfigError {
  try {
    settings(query);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`${query} was accepted`);
}

describe('pgConnectionSettings', () => {
  it('says when no URL was given (an unset DATABASE_URL)', () => {
    for (const url of [undefined, '']) {
      expect(() => pgConnectionSettings(url, 'connectionString')).toThrow(
        'connectionString: no URL given (expected postgres://user@host/database)',
      );
    }
  });

  it('refuses a parameter nothing reads, naming it and not its value', () => {
    // A misspelt sslmode would have meant plain text; channel_binding is libpq's only.
    for (const query of ['sslmod=verify-full', 'channel_binding=require', 'ssl=true']) {
      const error = refusal(query);
      const name = query.split('=')[0] as string;
      expect(error.message).toContain(
        `the URL parameter "${name}" is not one this connection reads`,
      );
      expect(error.message).toContain('sslmode');
    }
    expect(refusal('passwd=hunter2').message).not.toContain('hunter2');
    // A near miss names what it probably meant.
    expect(refusal('sslmod=verify-full').message).toContain('(did you mean "sslmode"?)');
    expect(refusal('aplication_name=shop').message).toContain('did you mean "application_name"?');
    expect(refusal('channel_binding=require').message).not.toContain('did you mean');
  });

  it('refuses a parameter given twice, which readers would take differently', () => {
    // URLSearchParams reads the first sslmode, node-postgres's parser the last.
    for (const query of [
      'sslmode=verify-full&sslmode=disable',
      'sslmode=disable&sslmode=require',
      'application_name=a&connect_timeout=5&application_name=b',
    ]) {
      const error = refusal(query);
      expect(error.setting).toBe('database-url');
      expect(error.message).toMatch(
        /: (sslmode|application_name) is given more than once: give it once$/,
      );
    }
    expect(refusal('password=hunter2&password=hunter3').message).not.toContain('hunter');
  });

  it('refuses what node-postgres would read other than the URL says, or not at all', () => {
    // Given in the URL and as a parameter, the parameter would win (or, with several
    // hosts, be ignored): the URL would name one server or role and connect to another.
    const twice = (url: string) => () => pgConnectionSettings(url, 'database-url');
    expect(twice('postgres://app:inline@db.internal/shop?password=other')).toThrow(
      /the password is given twice/,
    );
    for (const name of ['user', 'host', 'port']) {
      const error = refusal(`${name}=other-${name}`);
      expect(error.message).toContain(
        `the ${name} is given twice, in the URL and as the parameter ${name}=`,
      );
      expect(error.message).not.toContain(`other-${name}`);
    }
    // Read only from socket: URLs; client_encoding would change how replies are decoded,
    // not what the server sends.
    for (const query of ['db=elsewhere', 'encoding=LATIN1', 'client_encoding=LATIN1']) {
      expect(refusal(query).message).toContain('is not one this connection reads');
    }
  });

  it("reads what node-postgres reads, and libpq's connect_timeout in seconds", () => {
    const { config } = settings(
      'application_name=shop&statement_timeout=2000&options=-c%20search_path%3Dshop&connect_timeout=7',
    );
    expect(config).toMatchObject({
      application_name: 'shop',
      statement_timeout: '2000',
      options: '-c search_path=shop',
      connectionTimeoutMillis: 7000,
    });
    expect(refusal('connect_timeout=soon').message).toContain(
      'connect_timeout="soon" is not a whole number of seconds',
    );
  });

  it('reads host, port, user and database, and no TLS without sslmode', () => {
    const { config, sessionPooler } = pgConnectionSettings(BASE, 'database-url');
    expect(config).toMatchObject({
      host: 'db.internal',
      port: 5433,
      user: 'app',
      database: 'shop',
    });
    expect(config.ssl).toBeUndefined();
    expect(sessionPooler).toBe(false);
  });

  it("gives each sslmode libpq's meaning", () => {
    const ca = testCa.certFile;
    expect(settings('sslmode=disable').config.ssl).toBe(false);
    // require: encrypted, not verified.
    expect(ssl('sslmode=require')).toEqual({ rejectUnauthorized: false });
    // require with a CA, and verify-ca: the chain is checked, the name is not.
    for (const mode of ['require', 'verify-ca']) {
      const options = ssl(`sslmode=${mode}&sslrootcert=${ca}`);
      expect(options.ca).toBe(testCa.cert);
      expect(options.rejectUnauthorized).toBeUndefined();
      expect(typeof options.checkServerIdentity).toBe('function');
    }
    // verify-full, and a CA file alone: chain and name.
    for (const query of [`sslmode=verify-full&sslrootcert=${ca}`, `sslrootcert=${ca}`]) {
      expect(ssl(query)).toEqual({ ca: testCa.cert });
    }
    expect(ssl('sslmode=verify-full')).toEqual({});
  });

  it('reads the client certificate and key', () => {
    const options = ssl(`sslmode=verify-full&sslcert=${client.certFile}&sslkey=${client.keyFile}`);
    expect(options).toEqual({ cert: client.cert, key: client.key });
  });

  it('refuses TLS files that are not PEM, a certificate without its key, and a key not its own', () => {
    const other = testCa.issue('other', 'someone-else');
    const encrypted = createPrivateKey(client.key)
      .export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'Key-Pass-7d1' })
      .toString();
    const cases: [string, RegExp][] = [
      [
        `sslrootcert=${file('not-a-ca.pem', 'CA PEM')}`,
        /^database-url: sslrootcert: .* holds no PEM certificate$/,
      ],
      [`sslcert=${client.certFile}`, /^database-url: sslcert and sslkey go together/],
      [`sslkey=${client.keyFile}`, /^database-url: sslcert and sslkey go together/],
      [
        `sslcert=${client.certFile}&sslkey=${other.keyFile}`,
        /^database-url: sslcert, sslkey: not a PEM certificate and its private key: .*key values mismatch/,
      ],
      [
        // Node alone would say "bad decrypt", as if a passphrase were wrong.
        `sslcert=${client.certFile}&sslkey=${file('encrypted.pem', encrypted)}`,
        /^database-url: sslkey: .*encrypted\.pem holds an encrypted private key, and no passphrase is read: .*openssl pkey/,
      ],
    ];
    for (const [query, message] of cases) {
      expect(refusal(query).message).toMatch(message);
    }
    // The key is a secret: nothing printed shows it.
    expect(scrubSecrets(client.key.trim())).toBe('***');
  });

  it('refuses the modes that fall back to plain text, unknown modes and verify-ca without a CA', () => {
    expect(refusal('sslmode=prefer').message).toMatch(
      /^database-url: sslmode="prefer" is not supported .*fall back to plain text/,
    );
    expect(refusal('sslmode=allow').message).toMatch(/sslmode="allow" is not supported/);
    expect(refusal('sslmode=verify_full').message).toMatch(
      /sslmode="verify_full" is not supported \(use one of: disable, require, verify-ca, verify-full\)/,
    );
    expect(refusal('sslmode=verify-ca').message).toMatch(/verify-ca needs sslrootcert/);
  });

  it('names the parameter of a file that cannot be read', () => {
    const missing = join(dir, 'nowhere.pem');
    // The certificate and its key are given together.
    const pair = { sslcert: `&sslkey=${client.keyFile}`, sslkey: `&sslcert=${client.certFile}` };
    for (const name of ['sslrootcert', 'sslcert', 'sslkey', 'password_file']) {
      const error = refusal(`${name}=${missing}${pair[name as keyof typeof pair] ?? ''}`);
      expect(error.setting).toBe('database-url');
      expect(error.message).toMatch(
        new RegExp(`^database-url: ${name}: cannot read .*nowhere\\.pem`),
      );
    }
    expect(refusal('sslrootcert=').message).toMatch(/sslrootcert is empty/);
  });

  it('a URL shown in messages keeps its user and masks a password, and a NATS token given as the user', () => {
    expect(redactUrl('postgres://outbox@db:5432/app?password_file=/run/pw')).toBe(
      'postgres://outbox@db:5432/app?password_file=/run/pw',
    );
    expect(redactUrl('postgres://outbox:Pw-9@db:5432/app')).toBe(
      'postgres://outbox:***@db:5432/app',
    );
    expect(redactUrl('amqp://guest@rabbit/vhost')).toBe('amqp://guest@rabbit/vhost');
    expect(redactUrl('nats://the-token-7@nats:4222')).toBe('nats://***@nats:4222');
    // A secret parameter is masked where it stands; the others keep their text.
    expect(redactUrl('postgres://outbox@db/app?sslrootcert=/run/ca.pem&password=Pw%2F9')).toBe(
      'postgres://outbox@db/app?sslrootcert=/run/ca.pem&password=***',
    );
    expect(redactUrl('nats://outbox@nats:4222?password_file=/run/pw')).toBe(
      'nats://outbox@nats:4222?password_file=/run/pw',
    );
  });

  it('takes the password from password_file, remembered as a secret', () => {
    const path = file('password', 'Pw-From-File-93x\n');
    expect(settings(`password_file=${path}`).config.password).toBe('Pw-From-File-93x');
    expect(scrubSecrets('auth failed for Pw-From-File-93x')).toBe('auth failed for ***');
    // The path is shown, not hidden: it is where the secret is kept, not the secret.
    expect(redactUrl(`${BASE}?password_file=${path}`)).toContain(`password_file=${path}`);

    expect(refusal(`password_file=${file('empty', '\n')}`).message).toMatch(
      /password_file: .*empty is empty/,
    );
    const both = pgConnectionSettings.bind(
      null,
      `postgres://app:inline@db.internal/shop?password_file=${path}`,
      'database-url',
    );
    expect(both).toThrow(/password_file and a password are both given/);
  });

  it('declares a pooler in session mode with pooler=session, and refuses other values', () => {
    const declared = settings('pooler=session&sslmode=disable');
    expect(declared.sessionPooler).toBe(true);
    expect(declared.config).not.toHaveProperty('pooler');
    expect(refusal('pooler=transaction').message).toMatch(/pooler="transaction" is not valid/);
  });

  it('reads a list of hosts in order, each with its port or 5432, and target_session_attrs', () => {
    const url = 'postgres://app:pw@db-a.internal:5433,db-b.internal,10.0.0.7:5434/shop';
    const listed = pgConnectionSettings(`${url}?target_session_attrs=read-write`, 'database-url');
    expect(listed.hosts).toEqual([
      { host: 'db-a.internal', port: 5433 },
      { host: 'db-b.internal', port: 5432 },
      { host: '10.0.0.7', port: 5434 },
    ]);
    expect(listed.readWrite).toBe(true);
    // The first host is the client's until the connection chooses; the rest reads as usual.
    expect(listed.config).toMatchObject({ host: 'db-a.internal', port: 5433, database: 'shop' });
    expect(listed.config).not.toHaveProperty('target_session_attrs');
    expect(pgConnectionSettings(BASE, 'database-url')).toMatchObject({
      hosts: [{ host: 'db.internal', port: 5433 }],
      readWrite: false,
    });
    expect(refusal('target_session_attrs=standby').message).toMatch(
      /target_session_attrs="standby" is not supported .*the outbox writes/,
    );
    expect(() => pgConnectionSettings('postgres://app@a:0,b:5432/shop', 'database-url')).toThrow(
      /"a:0" is not a host with an optional port/,
    );
  });
});
