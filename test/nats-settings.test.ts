/**
 * How a nats:// URL becomes the NATS broker's settings: the server list, TLS files, and
 * the one form of authentication, with files read once, named when they cannot be, and
 * their secrets remembered. What each does against real servers is
 * test/network/nats-tls.test.ts.
 */
import { join } from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/common/errors.js';
import { scrubSecrets } from '../src/common/secrets.js';
import { kafkaSettings, natsSettings } from '../src/index.js';
import { scratchDir } from './helpers/scratch.js';

const scratch = scratchDir('edupulse-nats-settings');
afterAll(() => scratch.remove());
const { dir, file } = scratch;

const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
const settings = (query: string, userinfo = '') =>
  natsSettings(`nats://${userinfo}nats.internal:4222?${query}`);

/** The URL is refused with a ConfigError whose text matches `reason`. */
function refuses(query: string, reason: RegExp, userinfo = ''): void {
  expect(() => settings(query, userinfo)).toThrow(ConfigError);
  expect(() => settings(query, userinfo)).toThrow(reason);
}

describe('broker URL parts that would be ignored', () => {
  it('refuses a path on a NATS or Kafka URL, and a Kafka password without a user', () => {
    expect(() => natsSettings('nats://nats.internal:4222/lessons')).toThrow(
      'the path "/lessons" means nothing in this URL (the stream and subjects are the parameters stream= and subject_prefix=)',
    );
    expect(natsSettings('nats://nats.internal:4222/').servers).toEqual(['nats.internal:4222']);
    expect(() => kafkaSettings('kafka://kafka.internal:9092/lessons')).toThrow(
      'the path "/lessons" means nothing in this URL (the topic is the parameter topic=)',
    );
    // Without a user there is no SASL: the password went unused, and the connection in clear.
    const noUser = () => kafkaSettings('kafka://:Kafka-Pw-52e1@kafka.internal:9092');
    expect(noUser).toThrow(ConfigError);
    expect(noUser).toThrow('a password needs a user name in the URL');
    expect(() => noUser()).not.toThrow(/Kafka-Pw-52e1/);
  });
});

describe('natsSettings', () => {
  it('reads the password of the URL user from password_file, and forgets it in output', () => {
    const path = file('password', 'Pw-From-File-81c2\n');
    expect(settings(`password_file=${path}`, 'outbox@').auth).toEqual({
      kind: 'password',
      user: 'outbox',
      pass: 'Pw-From-File-81c2',
    });
    expect(scrubSecrets('said Pw-From-File-81c2')).toBe('said ***');
  });

  it('keeps the URL forms: user:password, and a lone user as a token', () => {
    expect(settings('', 'u:p%40ss@').auth).toEqual({ kind: 'password', user: 'u', pass: 'p@ss' });
    expect(settings('', 'tok3n@').auth).toEqual({ kind: 'token', token: 'tok3n' });
    expect(settings('').auth).toBeUndefined();
  });

  it('reads token_file, nkey_file and creds_file', () => {
    expect(settings(`token_file=${file('token', 'Token-From-File-4b1e')}`).auth).toEqual({
      kind: 'token',
      token: 'Token-From-File-4b1e',
    });
    const nk = file('user.nk', `# the outbox's user\n${seed}\n`);
    expect(settings(`nkey_file=${nk}`).auth).toEqual({ kind: 'nkey', seed });
    expect(scrubSecrets(`seed ${seed}`)).toBe('seed ***');

    const jwt = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln';
    const creds = `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
    expect(settings(`creds_file=${file('u.creds', creds)}`).auth).toMatchObject({
      kind: 'creds',
      jwt,
      seed,
    });
    expect(scrubSecrets(jwt)).toBe('***');
  });

  it('refuses two forms at once, and files that hold the wrong thing', () => {
    const token = file('token2', 'another-token');
    refuses(`token_file=${token}`, /broker: token_file and a password are both given/, 'u:p@');
    refuses(`password_file=${token}`, /password_file needs the user/, 'u:p@');
    refuses(`nkey_file=${token}`, /nkey_file: .* holds no user NKey seed/);
    refuses(`creds_file=${token}`, /creds_file: .* is not a \.creds file/);
    refuses(`token_file=${file('empty', '\n')}`, /token_file: .* is empty/);
    refuses(`nkey_file=${join(dir, 'absent.nk')}`, /broker: nkey_file: cannot read .*absent\.nk/);
    // A device that never ends is refused once past the size of any real file, not read
    // until memory runs out.
    refuses('token_file=/dev/zero', /token_file: \/dev\/zero holds more than 16 MiB/);
  });

  it('requires TLS when asked or when a TLS file is given', () => {
    expect(settings('').tls).toBeUndefined();
    expect(settings('tls=false').tls).toBeUndefined();
    expect(settings('tls=true').tls).toEqual({});
    refuses('ca_file=', /ca_file is empty/);
    refuses(`ca_file=${file('not-pem', 'hello\n')}`, /ca_file: /);
    refuses(`key_file=${file('key', 'x')}`, /cert_file and key_file go together/);
  });
});
