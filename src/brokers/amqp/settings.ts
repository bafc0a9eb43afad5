import { ConfigError } from '../../common/errors.js';
import { readSecretFile } from '../../common/setting-files.js';
import { decodePercent, redactUrl } from '../../common/url.js';
import { readTlsFiles, type TlsFiles, tlsFilesGiven } from '../tls-files.js';
import { type BrokerServer, type BrokerUrlParams, settingsFromUrl } from '../url-params.js';

/** TLS of an `amqps://` URL: the PEM texts of its files, and the name to verify. */
export interface AmqpTls extends TlsFiles {
  /**
   * `servername`: the host name the server's certificate must carry (and SNI), instead of
   * the host connected to; for servers reached by an address their certificate lacks.
   */
  servername?: string;
}

/** The settings of an `amqp[s]://user:pass@host:5672[,host:5672…][/vhost]?…` broker URL, resolved. */
export interface AmqpSettings {
  /**
   * The servers, tried in this order: the broker connects to the first that answers and,
   * when that connection drops, starts again from the next one.
   */
  servers: BrokerServer[];
  /** The virtual host (the URL's path, percent-decoded). Default `/`. */
  vhost: string;
  /** The user; with neither user nor password in the URL, amqplib's default (`guest`). */
  username: string | undefined;
  /** From the URL, or `password_file`'s content. */
  password: string | undefined;
  /** `amqps://`: TLS, the server's certificate verified (against `ca_file` if given). */
  tls: AmqpTls | undefined;
  /**
   * `heartbeat`: seconds between heartbeats asked of the server (a server asking fewer
   * wins), 10 by default. A connection gone silent is dropped after two to three.
   */
  heartbeatS: number;
  /** `frame_max`: the largest frame in bytes asked of the server; absent: amqplib's 131072. */
  frameMax: number | undefined;
  /**
   * The first server as an amqplib URL without our query parameters (and without a
   * `password_file`'s password or the TLS files): for tools that connect on their own.
   */
  serverUrl: string;
  /** The servers with the password replaced, for messages. */
  location: string;
  /** The setting the URL came from, for ConfigError (`broker` in the CLI). */
  setting: string;
  /** `exchange`: the durable topic exchange events go to. Default `edupulse.events`. */
  exchange: string;
  /** `accept_unroutable`: count a message no queue is bound for as published. Default false. */
  acceptUnroutable: boolean;
  /** `max_in_flight`: publishes sent but not yet confirmed, at most. Default 512. */
  maxInFlight: number;
  /** `timeout_ms`: connect timeout, and how long unconfirmed publishes wait without any confirm. */
  timeoutMs: number;
  /**
   * `max_message_bytes`: larger bodies are refused here. RabbitMQ answers an oversized
   * message by closing the channel without naming the message, which would look like an
   * outage and hold every event back; default 16 MiB, RabbitMQ 4's `max_message_size`.
   */
  maxMessageBytes: number;
}

/** Seconds between heartbeats unless the URL says: silence is noticed in 20–30 s. */
const DEFAULT_HEARTBEAT_S = 10;

// RabbitMQ's own rule for names, minus the reserved `amq.` prefix and the nameless
// default exchange (which ignores routing keys).
export const exchangeName = /^(?!amq\.)[A-Za-z0-9_.:-]{1,255}$/;
/**
 * The RabbitMQ broker's settings from its URL; every query parameter (`exchange`,
 * `accept_unroutable`, `max_in_flight`, `timeout_ms`, `max_message_bytes`, `heartbeat`,
 * `frame_max`, `password_file`, and with `amqps://` `ca_file`, `cert_file`, `key_file`,
 * `servername`) is read and checked here; the files are read now.
 */
export function readAmqpSettings(params: BrokerUrlParams): AmqpSettings {
  const { url, setting } = params;
  const tlsScheme = url.protocol === 'amqps:';
  const servers = params.servers(tlsScheme ? 5671 : 5672, 'a RabbitMQ server');
  const vhost = decodePercent(url.pathname.replace(/^\//, '')) || '/';
  const user = url.username ? decodePercent(url.username) : undefined;
  return {
    servers,
    vhost,
    username: user,
    password: readPassword(params),
    tls: readTls(params, tlsScheme),
    // 0 (no heartbeats) is not offered: a connection that died silently would go unnoticed.
    // Not the server's 60 by default: a consumer on a silent connection receives nothing
    // and hears nothing, and was still stuck 158 s later.
    heartbeatS: params.integer('heartbeat', DEFAULT_HEARTBEAT_S, 1, 3600),
    // AMQP 0-9-1's smallest frame up to 1 MiB: RabbitMQ's default is 128 KiB, and every
    // frame is buffered whole on both sides.
    frameMax: optionalInteger(params, 'frame_max', 4096, 1024 * 1024),
    serverUrl: firstServerUrl(url, servers),
    location: serverLabel(url, servers),
    setting,
    exchange: params.string(
      'exchange',
      'edupulse.events',
      exchangeName,
      'letters, digits, "_", "-", ".", ":"; not starting with "amq."',
    ),
    acceptUnroutable: params.boolean('accept_unroutable', false),
    maxInFlight: params.integer('max_in_flight', 512, 1, 65_535),
    timeoutMs: params.integer('timeout_ms', 10_000, 100, 3_600_000),
    maxMessageBytes: params.integer('max_message_bytes', 16 * 1024 * 1024, 1, 512 * 1024 * 1024),
  };
}

/** The exchange's rule: RabbitMQ's name characters, no reserved `amq.` prefix. */
const queueName = exchangeName;
const queueHint = 'letters, digits, "_", "-", ".", ":"; not starting with "amq."; at most 255';
const queueTypes = /^(classic|quorum)$/;

/** What a RabbitMQ consumer adds to the publisher's URL parameters. */
export interface AmqpSourceSettings extends AmqpSettings {
  /** `queue`: the queue's name. Default `<exchange>.<consumer>`; the exchange's name rules. */
  queue: string;
  /**
   * `queue_type`: `classic` (default) or `quorum`. Both keep one consumer's unacked
   * messages in their order when they go back to the queue (checked on RabbitMQ 3.10).
   */
  queueType: 'classic' | 'quorum';
}

/** A RabbitMQ source's settings from the broker URL: the publisher's, then its own. */
export function readAmqpSourceSettings(
  params: BrokerUrlParams,
  consumer: string,
): AmqpSourceSettings {
  const settings = readAmqpSettings(params);
  const built = `${settings.exchange}.${consumer}`;
  // The name made of the other two: refused as such, not as a `queue=` nobody wrote.
  if (params.optional('queue') === undefined && !queueName.test(built)) {
    throw new ConfigError(
      params.setting,
      `the queue's name "${built.slice(0, 60)}…" (<exchange>.<consumer>) is ${built.length} characters long, over RabbitMQ's 255: give the consumer a shorter name, or the queue one of its own with queue=`,
    );
  }
  return { ...settings, ...readAmqpConsumerParams(params, built) };
}

/**
 * The consumer's own parameters (`queue`, `queue_type`), `built` the queue's name when
 * none is given; the dispatcher reads them too (with no name of its own), checked and
 * unused, so that one URL serves both halves.
 */
export function readAmqpConsumerParams(
  params: BrokerUrlParams,
  built = 'queue',
): Pick<AmqpSourceSettings, 'queue' | 'queueType'> {
  const queue = params.string('queue', built, queueName, queueHint);
  const queueType = params.string('queue_type', 'classic', queueTypes, 'classic or quorum');
  return { queue, queueType: queueType as 'classic' | 'quorum' };
}

/** `password_file`: the password is the file's content; it needs a user, and no password in the URL. */
function readPassword(params: BrokerUrlParams): string | undefined {
  const { url, setting } = params;
  const file = params.optional('password_file');
  if (file === undefined) return url.password ? decodePercent(url.password) : undefined;
  if (!url.username) {
    throw new ConfigError(
      setting,
      'password_file needs a user in the URL (amqps://user@host/?password_file=…)',
    );
  }
  if (url.password) {
    throw new ConfigError(setting, 'password_file and a password are both given: keep one');
  }
  return readSecretFile(setting, 'password_file', file);
}

/** `ca_file`, `cert_file` + `key_file`, `servername`: only with `amqps://`, which means TLS. */
function readTls(params: BrokerUrlParams, tlsScheme: boolean): AmqpTls | undefined {
  const given = tlsFilesGiven(params);
  if (params.url.searchParams.has('servername')) given.push('servername');
  if (!tlsScheme && given.length > 0) {
    throw new ConfigError(
      params.setting,
      `${given.join(', ')} given with amqp://, which is plain text: use amqps://`,
    );
  }
  const files = readTlsFiles(params);
  const servername = params.optional('servername');
  if (!tlsScheme) return undefined;
  if (servername !== undefined && !/^[A-Za-z0-9.-]{1,253}$/.test(servername)) {
    throw new ConfigError(params.setting, `servername="${servername}" is not a host name`);
  }
  return { ...files, ...(servername !== undefined ? { servername } : {}) };
}

/** A whole-number parameter with no default: undefined when the URL does not give it. */
function optionalInteger(
  params: BrokerUrlParams,
  name: string,
  min: number,
  max: number,
): number | undefined {
  return params.optional(name) === undefined ? undefined : params.integer(name, min, min, max);
}

/**
 * `amqps://user:***@a:5671,b:5671/vhost`: every server with its port, no query; `user:***@`
 * also when the password comes from password_file.
 */
function serverLabel(url: URL, servers: BrokerServer[]): string {
  const auth = url.username ? `${url.username}:${url.password || '***'}@` : '';
  const hosts = servers.map(({ host, port }) => `${host}:${port}`).join(',');
  return redactUrl(`${url.protocol}//${auth}${hosts}${url.pathname}`);
}

/** `amqp[s]://user:pass@first-host:port/vhost`, as written (percent-encoding kept). */
function firstServerUrl(url: URL, servers: BrokerServer[]): string {
  const first = servers[0];
  const auth = url.username ? `${url.username}${url.password ? `:${url.password}` : ''}@` : '';
  return `${url.protocol}//${auth}${first ? `${first.host}:${first.port}` : ''}${url.pathname}`;
}

/** The settings a `amqp` broker URL gives, as the broker reads them (for tools). */
export function amqpSettings(url: string, setting = 'broker'): AmqpSettings {
  return settingsFromUrl(url, readAmqpSettings, setting);
}
