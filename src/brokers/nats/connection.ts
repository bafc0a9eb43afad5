import type { Socket } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import {
  type ConnectionOptions,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  connect as natsConnect,
  nkeyAuthenticator,
  nkeys,
  TimeoutError,
} from '@nats-io/transport-node';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../../common/errors.js';
import { describeAuth, type NatsAuth } from './auth.js';
import { connectRefusal } from './errors.js';
import type { NatsSettings } from './settings.js';

const encoder = new TextEncoder();

/**
 * A connection to one of the settings' servers. A server that refuses our TLS or our
 * credentials is a ConfigError naming the setting (retrying cannot help); one that cannot
 * be reached is BrokerUnavailableError. Neither message shows a secret.
 */
export async function dialNats(settings: NatsSettings, name: string): Promise<NatsConnection> {
  const { servers, location, timeoutMs, setting } = settings;
  const options: NodeConnectionOptions = {
    servers,
    name,
    timeout: timeoutMs,
    // Brief reconnects only (~10 s): a longer outage is the caller's to handle, by backing
    // off and connecting again, so it is logged rather than hidden here.
    reconnect: true,
    maxReconnectAttempts: 20,
    reconnectTimeWait: RECONNECT_WAIT_MS,
    // A half-open TCP connection is noticed within ~30 s instead of the default 4 minutes.
    pingInterval: 10_000,
    maxPingOut: 3,
    // The client hands every field of `tls` on to tls.connect; its type names only some.
    ...(settings.tls
      ? {
          tls: { ...settings.tls, checkServerIdentity: serverIdentity } as NonNullable<
            NodeConnectionOptions['tls']
          >,
        }
      : {}),
    ...authOptions(settings.auth, setting),
  };
  let error: unknown;
  try {
    return await firstConnect(options, Math.max(2 * timeoutMs, 5000));
  } catch (caught) {
    error = caught;
  }
  const auth = describeAuth(settings.auth);
  let refusal = connectRefusal(error, auth);
  let cause = error;
  if (refusal === undefined && error instanceof TimeoutError) {
    // A server that ends the connection right after the TLS handshake (TLS 1.3 sends its
    // verdict on our certificate then) leaves a reconnecting client waiting for a reply
    // until it times out. An attempt without reconnecting shows what the server said;
    // on a busy machine the connection may be reset before its alert is read, so a quick
    // failure that says nothing is tried again, a few times.
    for (let attempt = 0; attempt < VERDICT_ATTEMPTS; attempt++) {
      const verdict = await attemptOnce(options);
      refusal = verdict === undefined ? undefined : connectRefusal(verdict, auth);
      if (refusal !== undefined) cause = verdict;
      if (verdict === undefined || refusal !== undefined || verdict instanceof TimeoutError) break;
    }
  }
  const message = `cannot connect to NATS at ${location}: ${refusal ?? errorMessage(error)}`;
  throw refusal !== undefined
    ? new ConfigError(setting, message, { cause })
    : new BrokerUnavailableError(message, { cause: error });
}

/**
 * The certificate check of a TLS connection: the name or address of the server it went
 * to. The client upgrades a TCP connection to TLS and names the server only when its URL
 * gave a host name (for SNI, which takes no address); for an address, Node then checks
 * the certificate against "localhost", which refused a certificate naming the address as
 * an IP SAN and accepted one naming localhost. Called by Node with the connection's
 * options as `this`: their socket is the TCP connection, whose peer is that address.
 */
function serverIdentity(
  this: { servername?: string; socket?: Socket } | undefined,
  hostname: string,
  certificate: PeerCertificate,
): Error | undefined {
  const address = this?.servername ? undefined : this?.socket?.remoteAddress;
  return checkServerIdentity(address ?? hostname, certificate);
}

const RECONNECT_WAIT_MS = 500;
/** Attempts at reading a server's verdict after a first connect that timed out. */
const VERDICT_ATTEMPTS = 3;

/**
 * The client's first connect, given up after `deadlineMs` with a TimeoutError. Its own
 * loop ends only when every server has failed once, but each server of a cluster that
 * answers (then refuses us: a client certificate it wants) names the others again, so
 * against a cluster it would go round them for ever, and a dispatcher would neither start
 * nor stop. Given up, the loop is made to end at its next turn (its wait between servers
 * throws), and a connection it makes meanwhile is closed.
 */
async function firstConnect(
  options: NodeConnectionOptions,
  deadlineMs: number,
): Promise<NatsConnection> {
  let abandoned = false;
  const connecting = natsConnect({
    ...options,
    // The client's own wait between servers (the wait, plus up to 100 ms, or 1 s with
    // TLS, of jitter), until given up.
    reconnectDelayHandler: () => {
      if (abandoned) throw new TimeoutError();
      const jitter = options.tls ? 1000 : 100;
      return RECONNECT_WAIT_MS + Math.floor(Math.random() * (jitter + 1));
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), deadlineMs);
  });
  try {
    const connected = await Promise.race([connecting, deadline]);
    if (connected) return connected;
  } finally {
    clearTimeout(timer);
  }
  abandoned = true;
  connecting.then(
    (late) => late.close().catch(() => {}),
    () => {},
  );
  throw new TimeoutError();
}

/**
 * The error of one connection attempt to the first server (2 s at most), without
 * reconnecting or going on to the servers it names, or undefined when it connects.
 */
async function attemptOnce(options: NodeConnectionOptions): Promise<unknown> {
  try {
    const nc = await natsConnect({
      ...options,
      reconnect: false,
      ignoreClusterUpdates: true,
      noRandomize: true,
      timeout: Math.min(options.timeout ?? 2000, 2000),
    });
    await nc.close();
    return undefined;
  } catch (error) {
    return error;
  }
}

/** The client's options for each form of authentication. */
function authOptions(auth: NatsAuth | undefined, setting: string): ConnectionOptions {
  switch (auth?.kind) {
    case undefined:
      return {};
    case 'password':
      return { user: auth.user, pass: auth.pass };
    case 'token':
      return { token: auth.token };
    case 'nkey':
      checkSeed(auth.seed, setting, 'nkey_file');
      return { authenticator: nkeyAuthenticator(encoder.encode(auth.seed)) };
    case 'creds':
      checkSeed(auth.seed, setting, 'creds_file');
      return { authenticator: credsAuthenticator(encoder.encode(auth.text)) };
  }
}

/** The seed's checksum, checked before connecting: the authenticator would throw mid-handshake. */
function checkSeed(seed: string, setting: string, parameter: string): void {
  try {
    nkeys.fromSeed(encoder.encode(seed));
  } catch {
    // The client's message may quote the seed: not passed on.
    throw new ConfigError(
      setting,
      `${parameter}: the NKey seed is not valid (checksum or encoding)`,
    );
  }
}
