/**
 * Authentication of a NATS broker URL, in the forms nats-server knows:
 *
 * - `nats://user:password@host`, or `nats://user@host?password_file=…`;
 * - a token: `nats://token@host` (a lone user, as the nats CLI reads it), or `token_file=…`;
 * - `nkey_file=…`: a file holding a user NKey seed (`SU…`); the server knows its public key;
 * - `creds_file=…`: a `.creds` file (a user JWT and its NKey seed), for servers in
 *   operator (JWT) mode.
 *
 * At most one form. Files are read here, once, when the settings are read; what they hold
 * is remembered as a secret, so nothing printed shows it.
 */
import { ConfigError } from '../../common/errors.js';
import { registerSecret } from '../../common/secrets.js';
import { readSecretFile } from '../../common/setting-files.js';
import { decodePercent } from '../../common/url.js';
import type { BrokerUrlParams } from '../url-params.js';

export type NatsAuth =
  | { kind: 'password'; user: string; pass: string }
  | { kind: 'token'; token: string }
  | { kind: 'nkey'; seed: string }
  | { kind: 'creds'; jwt: string; seed: string; text: string };

// A user seed: 'S' (seed), 'U' (user), then base32. The checksum is the client's to check.
const USER_SEED = /^\s*(SU[A-Z2-7]{56})\s*$/m;
// A .creds file: the JWT block, then the seed block, each between dashed marker lines.
const CREDS_BLOCK = /-{3,}[^\n]*-{3,}\r?\n\s*(\S+)\s*\r?\n\s*-{3,}[^\n]*-{3,}/g;

/** How the client authenticates, from the URL's user info and `…_file` parameters. */
export function readNatsAuth(params: BrokerUrlParams): NatsAuth | undefined {
  const { setting, url } = params;
  const path = (name: string) => {
    const value = params.string(name, '');
    return value === '' && !url.searchParams.has(name) ? undefined : value;
  };
  const files = {
    password_file: path('password_file'),
    token_file: path('token_file'),
    nkey_file: path('nkey_file'),
    creds_file: path('creds_file'),
  };
  const user = decodePercent(url.username);
  const password = decodePercent(url.password);
  const given = Object.entries(files).filter(([, value]) => value !== undefined);
  const fromUrl = password ? ['a password'] : user ? ['a token (a lone user)'] : [];
  // password_file completes the URL's user; every other form stands alone.
  const forms = [
    ...given.map(([name]) => name),
    ...(files.password_file !== undefined ? [] : fromUrl),
  ];
  if (forms.length > 1) {
    throw new ConfigError(setting, `${forms.join(' and ')} are both given: keep one`);
  }

  if (files.password_file !== undefined) {
    if (!user || password) {
      throw new ConfigError(
        setting,
        'password_file needs the user in the URL and no password there (nats://user@host?password_file=…)',
      );
    }
    return {
      kind: 'password',
      user,
      pass: readSecretFile(setting, 'password_file', files.password_file),
    };
  }
  if (files.token_file !== undefined) {
    return { kind: 'token', token: readSecretFile(setting, 'token_file', files.token_file) };
  }
  if (files.nkey_file !== undefined) {
    const text = readSecretFile(setting, 'nkey_file', files.nkey_file);
    const seed = USER_SEED.exec(text)?.[1];
    if (seed === undefined) {
      throw new ConfigError(
        setting,
        `nkey_file: ${files.nkey_file} holds no user NKey seed (a line of 58 characters starting SU)`,
      );
    }
    registerSecret(seed);
    return { kind: 'nkey', seed };
  }
  if (files.creds_file !== undefined) return readCreds(setting, files.creds_file);
  if (password) return { kind: 'password', user, pass: password };
  if (user) return { kind: 'token', token: user };
  return undefined;
}

function readCreds(setting: string, path: string): NatsAuth {
  const text = readSecretFile(setting, 'creds_file', path);
  const [jwt, seed] = [...text.matchAll(CREDS_BLOCK)].map((match) => match[1] ?? '');
  if (jwt === undefined || seed === undefined || !USER_SEED.test(seed)) {
    throw new ConfigError(
      setting,
      `creds_file: ${path} is not a .creds file (a user JWT block, then a user NKey seed block)`,
    );
  }
  registerSecret(jwt);
  registerSecret(seed);
  return { kind: 'creds', jwt, seed, text };
}

/** The form, for messages: which setting to look at when the server refuses it. */
export function describeAuth(auth: NatsAuth | undefined): string {
  switch (auth?.kind) {
    case undefined:
      return 'a connection without credentials';
    case 'password':
      return 'a user and password';
    case 'token':
      return 'a token';
    case 'nkey':
      return 'the NKey of nkey_file';
    case 'creds':
      return 'the user JWT of creds_file';
  }
}
