import { redactUrl } from '../../common/url.js';
import { type BrokerUrlParams, settingsFromUrl } from '../url-params.js';

/** The settings of an `amqp://user:pass@host:5672[/vhost]?…` broker URL, resolved. */
export interface AmqpSettings {
  /** What amqplib connects to: the URL without our query parameters. */
  serverUrl: string;
  /** The same with the password replaced, for error messages. */
  location: string;
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

// RabbitMQ's own rule for names, minus the reserved `amq.` prefix and the nameless
// default exchange (which ignores routing keys).
export const exchangeName = /^(?!amq\.)[A-Za-z0-9_.:-]{1,255}$/;
/**
 * The RabbitMQ broker's settings from its URL; every query parameter (`exchange`,
 * `accept_unroutable`, `max_in_flight`, `timeout_ms`, `max_message_bytes`) is read and
 * checked here.
 */
export function readAmqpSettings(params: BrokerUrlParams): AmqpSettings {
  return {
    ...serverUrls(params.url),
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
  /** The setting the URL came from, for ConfigError. */
  setting: string;
}

/** A RabbitMQ source's settings from the broker URL: the publisher's, then its own. */
export function readAmqpSourceSettings(
  params: BrokerUrlParams,
  consumer: string,
): AmqpSourceSettings {
  const settings = readAmqpSettings(params);
  const queue = params.string('queue', `${settings.exchange}.${consumer}`, queueName, queueHint);
  const queueType = params.string('queue_type', 'classic', queueTypes, 'classic or quorum');
  return {
    ...settings,
    queue,
    queueType: queueType as 'classic' | 'quorum',
    setting: params.setting,
  };
}

function serverUrls(url: URL): { serverUrl: string; location: string } {
  const server = new URL(url.href);
  // Our parameters are not amqplib's (it would read e.g. `heartbeat` from the query).
  server.search = '';
  server.hash = '';
  return { serverUrl: server.href, location: redactUrl(server.href) };
}

/** The settings a `amqp` broker URL gives, as the broker reads them (for tools). */
export function amqpSettings(url: string, setting = 'broker'): AmqpSettings {
  return settingsFromUrl(url, readAmqpSettings, setting);
}
