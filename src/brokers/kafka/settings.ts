import { ConfigError } from '../../common/errors.js';
import { decodePercent, redactUrl } from '../../common/url.js';
import { type BrokerUrlParams, settingsFromUrl } from '../url-params.js';

/** Everything a Kafka broker URL configures, validated. */
export interface KafkaSettings {
  /** `host:port` of each bootstrap server. */
  bootstrapServers: string[];
  /** SASL PLAIN credentials, from the URL's user info. */
  sasl: { username: string; password: string } | undefined;
  /** TLS to the brokers (`tls=true`), with Node's default CA store. */
  tls: boolean;
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
}

const defaultPort = 9092;

/** The Kafka broker's settings from its URL; every query parameter is read (and checked) here. */
export function readKafkaSettings(params: BrokerUrlParams): KafkaSettings {
  const url = params.url;
  const bootstrapServers = parseBootstrapServers(url.host, params.setting);
  const sasl = url.username
    ? { username: decodePercent(url.username), password: decodePercent(url.password) }
    : undefined;
  return {
    bootstrapServers,
    sasl,
    tls: params.boolean('tls', false),
    topicTemplate: params.string(
      'topic',
      'edupulse.{aggregate_type}',
      /^(?:[a-zA-Z0-9._-]|\{aggregate_type\}|\{event_type\})+$/,
      'letters, digits, ".", "_", "-" and the placeholders {aggregate_type}, {event_type}',
    ),
    createTopics: params.boolean('create_topics', true),
    partitions: params.integer('partitions', 3, 1, 10_000),
    replicationFactor: params.integer('replication_factor', 1, 1, 32_767),
    clientId: params.string('client_id', 'edupulse-outbox', /^[a-zA-Z0-9._-]{1,255}$/),
    timeoutMs: params.integer('timeout_ms', 10_000, 100, 600_000),
    location: redactUrl(
      `kafka://${url.username ? `${url.username}:${url.password}@` : ''}${bootstrapServers.join(',')}`,
    ),
  };
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
  /** The setting the URL came from, for ConfigError. */
  setting: string;
}

/** A Kafka source's settings from the broker URL: the publisher's, then its own. */
export function readKafkaSourceSettings(params: BrokerUrlParams): KafkaSourceSettings {
  return {
    ...readKafkaSettings(params),
    from: params.string('from', 'earliest', /^(earliest|latest)$/, 'earliest or latest') as
      | 'earliest'
      | 'latest',
    sessionTimeoutMs: params.integer('session_timeout_ms', 10_000, 6_000, 300_000),
    setting: params.setting,
  };
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
