import { redactUrl } from '../../common/url.js';
import { type BrokerUrlParams, settingsFromUrl } from '../url-params.js';
import { type NatsAuth, readNatsAuth } from './auth.js';
import { type NatsTls, readNatsTls } from './tls.js';

/** Settings of the NATS JetStream broker, read from the broker URL's query parameters. */
export interface NatsSettings {
  /**
   * `host:port` of each server: `nats://a:4222,b:4222,c:4222` names a cluster's seeds; the
   * client connects to one that answers and, when it drops, to another.
   */
  servers: string[];
  /** The server URL without query and with credentials masked, for messages. */
  location: string;
  /** The setting the URL came from, named in configuration errors. */
  setting: string;
  /** User and password, token, NKey or creds (see auth.ts); files already read. */
  auth?: NatsAuth;
  /**
   * TLS required, with these PEM texts (`tls=true`, `ca_file`, `cert_file`, `key_file`);
   * absent: the client's choice (TLS when the server offers it).
   */
  tls?: NatsTls;
  /** `stream`: the JetStream stream the events are stored in. Default `EDUPULSE`. */
  stream: string;
  /** `subject_prefix`: first subject token, `<prefix>.<aggregate_type>.<event_type>`. Default `edupulse`. */
  subjectPrefix: string;
  /** `max_in_flight`: publishes awaiting their PubAck at once. Default 256. */
  maxInFlight: number;
  /** `duplicate_window_s`: the server's dedup window, used only when creating the stream. Default 120. */
  duplicateWindowS: number;
  /** `replicas`: copies of the stream a JetStream cluster keeps, used only when creating it. Default 1. */
  replicas: number;
  /** `timeout_ms`: wait for one PubAck, for the connection handshake and for each stream request. Default 5000. */
  timeoutMs: number;
}

// Stream names and subject tokens: a conservative subset of what NATS allows, so a name
// is also a valid file name on the server and a single subject token.
const NAME = /^[A-Za-z0-9_-]{1,255}$/;
const NAME_HINT = 'letters, digits, _ or -';

/** The NATS broker's settings from its URL; every query parameter is read (and checked) here. */
export function readNatsSettings(params: BrokerUrlParams): NatsSettings {
  const url = params.url;
  params.assertNoPath('the stream and subjects are the parameters stream= and subject_prefix=');
  const servers = natsServers(params);
  const auth = readNatsAuth(params);
  const tls = readNatsTls(params);
  return {
    servers,
    location: serverLabel(url),
    setting: params.setting,
    ...(auth ? { auth } : {}),
    ...(tls ? { tls } : {}),
    stream: params.string('stream', 'EDUPULSE', NAME, NAME_HINT),
    subjectPrefix: params.string('subject_prefix', 'edupulse', NAME, NAME_HINT),
    maxInFlight: params.integer('max_in_flight', 256, 1, 65_536),
    duplicateWindowS: params.integer('duplicate_window_s', 120, 1, 7 * 24 * 3600),
    replicas: params.integer('replicas', 1, 1, 5),
    timeoutMs: params.integer('timeout_ms', 5000, 100, 120_000),
  };
}

/** What a NATS consumer adds to the publisher's URL parameters. */
export interface NatsSourceSettings extends NatsSettings {
  /** `ack_wait_s`: how long the server waits for an ack before redelivering. Default 30. */
  ackWaitS: number;
  /** `deliver`: where a new durable consumer starts: `all` the stream holds, or `new` events only. Default `all`. */
  deliver: 'all' | 'new';
}

/** A NATS source's settings from the broker URL: the publisher's, then its own. */
export function readNatsSourceSettings(params: BrokerUrlParams): NatsSourceSettings {
  return { ...readNatsSettings(params), ...readNatsConsumerParams(params) };
}

/** The consumer's own parameters; the dispatcher reads them too, checked and unused. */
export function readNatsConsumerParams(
  params: BrokerUrlParams,
): Pick<NatsSourceSettings, 'ackWaitS' | 'deliver'> {
  return {
    ackWaitS: params.integer('ack_wait_s', 30, 5, 3600),
    deliver: params.string('deliver', 'all', /^(all|new)$/, 'all or new') as 'all' | 'new',
  };
}

/** `host:port` of each server of the URL, port 4222 where none is written. */
function natsServers(params: BrokerUrlParams): string[] {
  if (params.url.host === '') return ['127.0.0.1:4222'];
  return params.servers(4222, 'a NATS server').map(({ host, port }) => `${host}:${port}`);
}

/** `nats://user:***@host:4222`: no query, no password, no token. */
function serverLabel(url: URL): string {
  const bare = new URL(url.href);
  bare.search = '';
  return redactUrl(bare.href).replace(/\/$/, '');
}

/** The settings a `nats` broker URL gives, as the broker reads them (for tools). */
export function natsSettings(url: string, setting = 'broker'): NatsSettings {
  return settingsFromUrl(url, readNatsSettings, setting);
}
