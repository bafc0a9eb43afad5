import { ConfigError } from '../../common/errors.js';
import { readSecretFile } from '../../common/setting-files.js';
import { clip } from '../../common/text.js';
import { decodePercent, redactUrl } from '../../common/url.js';
import { readTlsFiles, type TlsFiles, tlsFilesGiven } from '../tls-files.js';
import { type BrokerUrlParams, settingsFromUrl } from '../url-params.js';

/** The SASL mechanisms a Kafka URL may name (`sasl_mechanism`), as the protocol spells them. */
export const kafkaSaslMechanisms = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export type KafkaSaslMechanism = (typeof kafkaSaslMechanisms)[number];

/** SASL credentials: the user of the URL, its password from the URL or `password_file`. */
export interface KafkaSasl {
  mechanism: KafkaSaslMechanism;
  username: string;
  password: string;
}

/** TLS to the brokers, with the PEM contents of the URL's files (`ca_file`, `cert_file`, `key_file`). */
export type KafkaTls = TlsFiles;

/** Everything a Kafka broker URL configures, validated. */
export interface KafkaSettings {
  /** `host:port` of each bootstrap server. */
  bootstrapServers: string[];
  /** SASL credentials, when the URL has user info. */
  sasl: KafkaSasl | undefined;
  /** TLS to the brokers (`tls=true`, or a `…_file` of TLS), else plain text. */
  tls: KafkaTls | undefined;
  /** Topic name template: `{aggregate_type}` and `{event_type}` are replaced. */
  topicTemplate: string;
  /** Create a missing topic before its first publish. */
  createTopics: boolean;
  /** Partitions of a topic this broker creates. */
  partitions: number;
  /** Replication factor of a topic this broker creates. */
  replicationFactor: number;
  clientId: string;
  /** Bound on connecting, on each broker request, and on a produce acknowledgement. */
  timeoutMs: number;
  /** The servers for messages, password redacted. */
  location: string;
  /** The setting the URL came from, for ConfigError (`broker` in the CLI). */
  setting: string;
}

const defaultPort = 9092;

/** The longest topic name Kafka allows. */
export const MAX_TOPIC_LENGTH = 249;

/**
 * `topic`: legal characters and placeholders, and a template that can make a topic name
 * Kafka allows at all (not "." or "..", and at most 249 characters with one-character
 * names put in), so that a bad setting is refused at start, not event by event.
 */
function readTopicTemplate(params: BrokerUrlParams): string {
  const template = params.string(
    'topic',
    'edupulse.{aggregate_type}',
    /^(?:[a-zA-Z0-9._-]|\{aggregate_type\}|\{event_type\})+$/,
    'letters, digits, ".", "_", "-" and the placeholders {aggregate_type}, {event_type}',
  );
  if (template === '.' || template === '..') {
    throw new ConfigError(params.setting, `topic="${template}" is a name Kafka does not allow`);
  }
  const shortest = template.replaceAll('{aggregate_type}', 'a').replaceAll('{event_type}', 'e');
  if (shortest.length > MAX_TOPIC_LENGTH) {
    throw new ConfigError(
      params.setting,
      `topic="${clip(template, 80)}" makes topic names of ${shortest.length} characters or more, over Kafka's ${MAX_TOPIC_LENGTH}`,
    );
  }
  return template;
}

/** The Kafka broker's settings from its URL; every query parameter is read (and checked) here. */
export function readKafkaSettings(params: BrokerUrlParams): KafkaSettings {
  const url = params.url;
  params.assertNoPath('the topic is the parameter topic=');
  const bootstrapServers = parseBootstrapServers(url.host, params.setting);
  return {
    bootstrapServers,
    sasl: readSasl(params),
    tls: readTls(params),
    topicTemplate: readTopicTemplate(params),
    createTopics: params.boolean('create_topics', true),
    partitions: params.integer('partitions', 3, 1, 10_000),
    replicationFactor: params.integer('replication_factor', 1, 1, 32_767),
    clientId: params.string('client_id', 'edupulse-outbox', /^[a-zA-Z0-9._-]{1,255}$/),
    timeoutMs: params.integer('timeout_ms', 10_000, 100, 600_000),
    // user:***@ also when the password comes from password_file (a lone user would be
    // masked whole, as for a NATS token).
    location: redactUrl(
      `kafka://${url.username ? `${url.username}:${url.password || '***'}@` : ''}${bootstrapServers.join(',')}`,
    ),
    setting: params.setting,
  };
}

/**
 * `kafka://user:password@…`, or `kafka://user@…?password_file=/run/secrets/kafka`, with
 * `sasl_mechanism` (`plain` unless given; `scram-sha-256`, `scram-sha-512`).
 */
function readSasl(params: BrokerUrlParams): KafkaSasl | undefined {
  const { url, setting } = params;
  const named = params.optional('sasl_mechanism');
  const passwordFile = params.optional('password_file');
  if (!url.username) {
    // kafka://:secret@host: without a user there is no SASL, and the password would go unused.
    if (url.password) {
      throw new ConfigError(
        setting,
        'a password needs a user name in the URL (kafka://user:password@host:9092)',
      );
    }
    for (const [name, value] of [
      ['sasl_mechanism', named],
      ['password_file', passwordFile],
    ] as const) {
      if (value !== undefined) {
        throw new ConfigError(
          setting,
          `${name} needs a user name in the URL (kafka://user@host:9092/?${name}=…)`,
        );
      }
    }
    return undefined;
  }
  const mechanism = (named ?? 'plain').toUpperCase() as KafkaSaslMechanism;
  if (!kafkaSaslMechanisms.includes(mechanism)) {
    throw new ConfigError(
      setting,
      `sasl_mechanism="${named}" is not valid (plain, scram-sha-256 or scram-sha-512)`,
    );
  }
  if (passwordFile !== undefined && url.password) {
    throw new ConfigError(setting, 'password_file and a password are both given: keep one');
  }
  return {
    mechanism,
    username: decodePercent(url.username),
    password:
      passwordFile !== undefined
        ? readSecretFile(setting, 'password_file', passwordFile)
        : decodePercent(url.password),
  };
}

/**
 * `tls=true` (Node's default CAs), `ca_file` (the CAs to trust instead), `cert_file` with
 * `key_file` (a client certificate). A file of TLS means TLS; `tls=false` with one is refused.
 */
function readTls(params: BrokerUrlParams): KafkaTls | undefined {
  const given = tlsFilesGiven(params);
  const tls = params.boolean('tls', given.length > 0);
  if (!tls && given.length > 0) {
    throw new ConfigError(
      params.setting,
      `${given.join(', ')} given with tls=false: drop tls=false`,
    );
  }
  const files = readTlsFiles(params);
  return tls ? files : undefined;
}

/** What a Kafka consumer adds to the publisher's URL parameters. */
export interface KafkaSourceSettings extends KafkaSettings {
  /** `from`: where a group starts on a partition it has no committed offset for. Default `earliest`. */
  from: 'earliest' | 'latest';
  /**
   * `session_timeout_ms`: a member that stops heartbeating (a killed process) is out of
   * the group after this long, and its partitions go to the others; default 10 s (the
   * client's own default, 60 s, would hold them that long).
   */
  sessionTimeoutMs: number;
  /**
   * `group_instance_id`: makes this process a static member of its group under this name
   * (one per process: a host or pod name). A process started again under the same name
   * takes its partitions back at once, without a rebalance of the group; one gone for
   * good keeps them until `session_timeout_ms` has passed.
   */
  groupInstanceId: string | undefined;
}

/** A Kafka source's settings from the broker URL: the publisher's, then its own. */
export function readKafkaSourceSettings(params: BrokerUrlParams): KafkaSourceSettings {
  return { ...readKafkaSettings(params), ...readKafkaConsumerParams(params) };
}

/** The consumer's own parameters; the dispatcher reads them too, checked and unused. */
export function readKafkaConsumerParams(
  params: BrokerUrlParams,
): Pick<KafkaSourceSettings, 'from' | 'sessionTimeoutMs' | 'groupInstanceId'> {
  return {
    from: params.string('from', 'earliest', /^(earliest|latest)$/, 'earliest or latest') as
      | 'earliest'
      | 'latest',
    sessionTimeoutMs: params.integer('session_timeout_ms', 10_000, 6_000, 300_000),
    groupInstanceId: readGroupInstanceId(params),
  };
}

/** Kafka's own rule for the name, so that a bad one is refused before the group sees it. */
function readGroupInstanceId(params: BrokerUrlParams): string | undefined {
  if (params.optional('group_instance_id') === undefined) return undefined;
  return params.string(
    'group_instance_id',
    '',
    /^[a-zA-Z0-9._-]{1,249}$/,
    'one to 249 letters, digits, ".", "_" or "-"',
  );
}

/**
 * `a:9092`, `a,b:9092` (each host without a port gets 9092) or `a%3A9092,b%3A9093`: the
 * WHATWG URL parser refuses `a:9092,b:9093` in a URL's authority, so the colons of every
 * host but the last may be written `%3A`.
 */
function parseBootstrapServers(host: string, setting: string): string[] {
  return decodePercent(host)
    .split(',')
    .map((server) => {
      const match = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9._-]+)(?::(\d{1,5}))?$/.exec(server.trim());
      const port = Number(match?.[2] ?? defaultPort);
      if (!match || port < 1 || port > 65_535) {
        throw new ConfigError(
          setting,
          `"${server}" is not a Kafka bootstrap server (expected host:port, several separated by commas)`,
        );
      }
      return `${match[1]}:${port}`;
    });
}

/** The settings a `kafka` broker URL gives, as the broker reads them (for tools). */
export function kafkaSettings(url: string, setting = 'broker'): KafkaSettings {
  return settingsFromUrl(url, readKafkaSettings, setting);
}
