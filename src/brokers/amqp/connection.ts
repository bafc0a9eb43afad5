/**
 * A connection to one of the URL's RabbitMQ servers, for the publisher (session.ts) and
 * the consumer (source.ts) alike. A refusal that the settings cause — the credentials,
 * the virtual host, the TLS on either side — is a ConfigError naming the setting, since
 * retrying cannot fix it; a server that cannot be reached is BrokerUnavailableError, and
 * the caller retries. Neither message shows the password.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../../common/errors.js';
import { scrubSecrets } from '../../common/secrets.js';
import { tlsRefusal } from '../tls-refusal.js';
import type { BrokerServer } from '../url-params.js';
import type { AmqpSettings } from './settings.js';

export interface AmqpConnection {
  model: ChannelModel;
  /** Index in `settings.servers` of the server connected to. */
  server: number;
}

/**
 * Tries the servers in order from `first` (wrapping around) and returns the first
 * connection that opens. A refusal stops at once: the servers of one cluster share their
 * users and certificates, so the next would refuse the same way.
 */
export async function connectAmqp(
  settings: AmqpSettings,
  connectionName: string,
  first = 0,
): Promise<AmqpConnection> {
  const { servers, location, setting } = settings;
  const failures: string[] = [];
  for (let i = 0; i < servers.length; i++) {
    const server = (first + i) % servers.length;
    const address = servers[server] as BrokerServer;
    try {
      return { model: await connectOne(settings, address, connectionName), server };
    } catch (error) {
      const said = redact(errorMessage(error), settings);
      const refusal = connectRefusal(error, settings);
      if (refusal !== undefined) {
        throw new ConfigError(setting, `cannot connect to ${location}: ${refusal}`, {
          cause: error,
        });
      }
      failures.push(servers.length > 1 ? `${address.host}:${address.port}: ${said}` : said);
    }
  }
  throw new BrokerUnavailableError(`cannot connect to ${location}: ${failures.join('; ')}`);
}

function connectOne(
  settings: AmqpSettings,
  { host, port }: BrokerServer,
  connectionName: string,
): Promise<ChannelModel> {
  const { tls, username, password } = settings;
  return amqp.connect(
    {
      protocol: tls ? 'amqps' : 'amqp',
      hostname: host.replace(/^\[(.*)\]$/, '$1'),
      port,
      // Both undefined: amqplib's guest/guest, as for a URL without user info.
      ...(username !== undefined || password !== undefined
        ? { username: username ?? '', password: password ?? '' }
        : {}),
      vhost: settings.vhost,
      heartbeat: settings.heartbeatS,
      ...(settings.frameMax !== undefined ? { frameMax: settings.frameMax } : {}),
    },
    {
      // Bounds the TCP connect and the AMQP handshake; amqplib lifts it once open.
      timeout: settings.timeoutMs,
      clientProperties: { connection_name: connectionName },
      // Node verifies the server's certificate (rejectUnauthorized is its default) against
      // `ca` or its own store, and the host name against `servername` or the host.
      ...(tls ?? {}),
    },
  );
}

/**
 * Why connecting failed, when retrying cannot help, as a sentence naming what to check;
 * undefined for an outage. amqplib reports the server's refusals in its message only
 * ("Handshake terminated by server: 403 (ACCESS-REFUSED) …"), so those are read from it.
 */
function connectRefusal(error: unknown, settings: AmqpSettings): string | undefined {
  const tls = tlsRefusal(error);
  switch (tls?.kind) {
    case 'untrusted': {
      const trusted = settings.tls?.ca
        ? 'the CA of ca_file'
        : "Node's default CAs (ca_file names the CA to trust)";
      return `TLS: the server's certificate does not verify against ${trusted}: ${tls.said}`;
    }
    case 'wrong-host':
      return `TLS: the server's certificate is not for the host connected to (connect by a name it carries, or set servername): ${tls.said}`;
    case 'client-certificate': {
      const check = settings.tls?.cert
        ? 'check cert_file and key_file'
        : 'give one with cert_file and key_file';
      return `TLS: the server refuses the client certificate (${check}): ${tls.said}`;
    }
    case 'other':
      return `TLS: ${tls.said} (is this port a TLS listener? amqps:// needs one)`;
  }
  const text = redact(errorMessage(error), settings);
  const user = settings.username ?? 'guest';
  if (/^Handshake terminated by server: 403\b/.test(text)) {
    return `the server refused user "${user}" (check the user, and the password or password_file): ${text}`;
  }
  if (/^Handshake terminated by server: 530\b/.test(text)) {
    return `the server does not allow user "${user}" in: ${text}`;
  }
  // connection.open answered with connection.close: the virtual host is missing or the
  // user may not use it (530 NOT_ALLOWED; amqplib drops the code from its message).
  if (/^Expected ConnectionOpenOk; got <ConnectionClose/.test(text)) {
    return `the server refused virtual host "${settings.vhost}" (it does not exist, or user "${user}" has no permissions on it)`;
  }
  return undefined;
}

/** Server and library texts do not carry the password today; this keeps it that way. */
export function redact(text: string, settings: AmqpSettings): string {
  const { password } = settings;
  const plain = password ? text.split(password).join('***') : text;
  return scrubSecrets(plain);
}
