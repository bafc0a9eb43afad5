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
    reconnectTimeWait: 500,
    // A half-open TCP connection is noticed within ~30 s instead of the default 4 minutes.
    pingInterval: 10_000,
    maxPingOut: 3,
    ...(settings.tls ? { tls: { ...settings.tls } } : {}),
    ...authOptions(settings.auth, setting),
  };
  try {
    return await natsConnect(options);
  } catch (error) {
    const auth = describeAuth(settings.auth);
    let refusal = connectRefusal(error, auth);
    let cause = error;
    if (refusal === undefined && error instanceof TimeoutError) {
      // A server that ends the connection right after the TLS handshake (TLS 1.3 sends its
      // verdict on our certificate then) leaves a reconnecting client waiting for a reply
      // until it times out. One attempt without reconnecting shows what the server said.
      const verdict = await attemptOnce(options);
      refusal = verdict === undefined ? undefined : connectRefusal(verdict, auth);
      if (refusal !== undefined) cause = verdict;
    }
    const message = `cannot connect to NATS at ${location}: ${refusal ?? errorMessage(error)}`;
    throw refusal !== undefined
      ? new ConfigError(setting, message, { cause })
      : new BrokerUnavailableError(message, { cause: error });
  }
}

/** The error of one connection attempt without reconnecting (2 s at most), or undefined. */
async function attemptOnce(options: NodeConnectionOptions): Promise<unknown> {
  try {
    const nc = await natsConnect({
      ...options,
      reconnect: false,
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
