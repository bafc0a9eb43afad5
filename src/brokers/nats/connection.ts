import {
  type NatsConnection,
  type NodeConnectionOptions,
  connect as natsConnect,
} from '@nats-io/transport-node';
import { BrokerUnavailableError, errorMessage } from '../../common/errors.js';
import type { NatsSettings } from './settings.js';

/** A connection to the settings' server, or BrokerUnavailableError naming it (password redacted). */
export async function dialNats(settings: NatsSettings, name: string): Promise<NatsConnection> {
  const { server, location, user, pass, token, timeoutMs } = settings;
  const options: NodeConnectionOptions = {
    servers: server,
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
    ...(user !== undefined ? { user, pass } : {}),
    ...(token !== undefined ? { token } : {}),
  };
  try {
    return await natsConnect(options);
  } catch (error) {
    throw new BrokerUnavailableError(
      `cannot connect to NATS at ${location}: ${errorMessage(error)}`,
      {
        cause: error,
      },
    );
  }
}
