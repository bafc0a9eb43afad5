/**
 * A NATS operator, one account and one user, minted offline for a private nats-server in
 * operator (JWT) mode — what `nsc` makes, with the NATS client's own NKeys: each JWT is
 * `header.claims.signature`, base64url, signed with ed25519 by its issuer's NKey (operator
 * → account → user), claims as nats-io/jwt v2 writes them (`jti` = base32 SHA-512/256 of
 * the claims without it). The server checks every signature; nothing here is trusted
 * unless the server's configuration names the operator.
 */
import { createHash } from 'node:crypto';
import { nkeys } from '@nats-io/transport-node';

type KeyPair = ReturnType<typeof nkeys.createOperator>;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

const base64url = (bytes: Uint8Array | string) =>
  Buffer.from(typeof bytes === 'string' ? encoder.encode(bytes) : bytes).toString('base64url');

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding, as Go's base32.StdEncoding.WithPadding(NoPadding). */
function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** A v2 JWT about `subject`, issued and signed by `issuer`. */
function mint(issuer: KeyPair, subject: string, name: string, nats: object): string {
  const header = base64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }));
  const claims = {
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
  };
  const jti = base32(createHash('sha512-256').update(JSON.stringify(claims)).digest());
  const payload = base64url(JSON.stringify({ jti, ...claims, nats: { ...nats, version: 2 } }));
  const signature = issuer.sign(encoder.encode(`${header}.${payload}`));
  return `${header}.${payload}.${base64url(signature)}`;
}

export interface NatsOperator {
  /** The operator's JWT, for the server's `operator`. */
  operatorJwt: string;
  /** The system account's public key (JetStream needs one) and the accounts' JWTs by key, for `resolver_preload`. */
  systemAccount: string;
  accounts: Record<string, string>;
  /** A `.creds` file's text for a user of that account: its JWT and NKey seed. */
  creds: string;
  /** The user's JWT and seed, to check that no output shows them. */
  userJwt: string;
  userSeed: string;
  /** The same user's JWT signed by an account the server does not know: refused. */
  strangerCreds: string;
}

function credsText(jwt: string, seed: string): string {
  return [
    '-----BEGIN NATS USER JWT-----',
    jwt,
    '------END NATS USER JWT------',
    '',
    '************************* IMPORTANT *************************',
    'NKEY Seed printed below can be used to sign and prove identity.',
    'NKEYs are sensitive and should be treated as secrets.',
    '',
    '-----BEGIN USER NKEY SEED-----',
    seed,
    '------END USER NKEY SEED------',
    '',
    '*************************************************************',
    '',
  ].join('\n');
}

/** An operator, its system account, an account with JetStream and no other limits, one user. */
export function mintOperator(): NatsOperator {
  const operator = nkeys.createOperator();
  const system = nkeys.createAccount();
  const account = nkeys.createAccount();
  const user = nkeys.createUser();
  const operatorJwt = mint(operator, operator.getPublicKey(), 'edupulse-test', {
    type: 'operator',
    system_account: system.getPublicKey(),
  });
  const systemJwt = mint(operator, system.getPublicKey(), 'SYS', { type: 'account' });
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, conn: -1 };
  const accountJwt = mint(operator, account.getPublicKey(), 'outbox', {
    type: 'account',
    limits: {
      ...unlimited,
      wildcards: true,
      leaf: -1,
      mem_storage: -1,
      disk_storage: -1,
      streams: -1,
      consumer: -1,
    },
    default_permissions: { pub: {}, sub: {} },
  });
  const userClaims = { type: 'user', pub: {}, sub: {}, subs: -1, data: -1, payload: -1 };
  const userJwt = mint(account, user.getPublicKey(), 'dispatcher', userClaims);
  const userSeed = decoder.decode(user.getSeed());
  const stranger = mint(nkeys.createAccount(), user.getPublicKey(), 'dispatcher', userClaims);
  return {
    operatorJwt,
    systemAccount: system.getPublicKey(),
    accounts: { [system.getPublicKey()]: systemJwt, [account.getPublicKey()]: accountJwt },
    creds: credsText(userJwt, userSeed),
    userJwt,
    userSeed,
    strangerCreds: credsText(stranger, userSeed),
  };
}
