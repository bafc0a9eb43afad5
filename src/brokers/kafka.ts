/**
 * Kafka broker on @platformatic/kafka (pure TypeScript: nothing downloaded at install).
 *
 * One idempotent producer (acks=all): the client then keeps one request in flight per
 * connection, so a partition's records are written in the order sent, and its own retries
 * are deduplicated by the broker. Key = aggregate id, so one aggregate stays in one
 * partition; value = the payload as stored; headers = the CloudEvents Kafka binding.
 */

import type {
  Admin,
  BaseOptions,
  MessageToProduce,
  Producer,
  Serializers,
} from '@platformatic/kafka';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../errors.js';
import { binaryModeHeaders, bindingPrefix, type OutboxMessage } from '../events/cloudevents.js';
import { clip, escapeControl } from '../text.js';
import { withTimeout } from '../timeout.js';
import { decodePercent, redactUrl } from '../url.js';
import { type EventBroker, type PublishResult, published } from './broker.js';
import type { BrokerUrlParams } from './names.js';

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

type KafkaProducer = Producer<string, string, Buffer, Buffer>;
type KafkaRecord = MessageToProduce<string, string, Buffer, Buffer>;

type KafkaLibrary = typeof import('@platformatic/kafka');
let library: KafkaLibrary | undefined;

/**
 * The client library, loaded on first connect: it is about half of a dispatcher's memory
 * at start, and a dispatcher publishing elsewhere never needs it.
 */
export async function kafkaLibrary(): Promise<KafkaLibrary> {
  library ??= await import('@platformatic/kafka');
  return library;
}

function loadedLibrary(): KafkaLibrary {
  if (!library) throw new Error('the Kafka client library is not loaded (connect first)');
  return library;
}

/** Header names and values arrive encoded (HeaderBytes): sent as they are. */
const encodedHeaders = (data?: Buffer) => data;
const serializersOf = (lib: KafkaLibrary): Serializers<string, string, Buffer, Buffer> => ({
  key: lib.stringSerializer,
  value: lib.stringSerializer,
  headerKey: encodedHeaders,
  headerValue: encodedHeaders,
});

/**
 * Header bytes for the records, encoded as the client's string serializer would (UTF-8).
 * The names are few and the same on every record, and most values repeat from one record
 * to the next (specversion, source, content type, type, often time): each name keeps the
 * bytes of its last value, so a batch encodes only what changes.
 */
class HeaderBytes {
  private readonly names = new Map<string, { name: Buffer; text: string; value: Buffer }>();

  encode(headers: Record<string, string>): Map<Buffer, Buffer> {
    const encoded = new Map<Buffer, Buffer>();
    for (const name in headers) {
      const text = headers[name] as string;
      let last = this.names.get(name);
      if (!last) {
        last = { name: Buffer.from(name, 'utf8'), text, value: Buffer.from(text, 'utf8') };
        this.names.set(name, last);
      } else if (last.text !== text) {
        last.text = text;
        last.value = Buffer.from(text, 'utf8');
      }
      encoded.set(last.name, last.value);
    }
    return encoded;
  }
}

const defaultPort = 9092;
/** Few, short retries inside the client: a longer outage is the dispatcher's backoff to handle. */
const clientRetries = 3;
const clientRetryDelayMs = 250;
/** Kafka's legal topic characters; anything else in an aggregate or event type becomes `_`. */
const illegalTopicCharacters = /[^a-zA-Z0-9._-]/g;
const illegalTopicCharacter = /[^a-zA-Z0-9._-]/;

/** Broker refusals that concern the message itself: sending it unchanged will fail again. */
const permanentErrors = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_RECORD',
  'INVALID_TIMESTAMP',
  'TOPIC_AUTHORIZATION_FAILED',
]);

/** Errors that refuse this client as a whole, not one message: reported as unavailability. */
const clientRefusals = new Set([
  'CLUSTER_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
  'ILLEGAL_SASL_STATE',
  'UNSUPPORTED_SASL_MECHANISM',
]);

/** A Kafka broker from its URL; reads every query parameter now, so typos fail at once. */
export function createKafkaBroker(params: BrokerUrlParams, source: string): EventBroker {
  return new KafkaBroker(readKafkaSettings(params), source);
}

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

/** The topic of a message: the template filled in, illegal characters replaced. */
export function kafkaTopic(template: string, message: OutboxMessage): string {
  return template
    .replaceAll('{aggregate_type}', message.aggregateType.replace(illegalTopicCharacters, '_'))
    .replaceAll('{event_type}', message.eventType.replace(illegalTopicCharacters, '_'));
}

/**
 * The Java client's partition for a keyed record (murmur2, sign bit masked), so Java
 * producers keyed by the same aggregate id agree. @platformatic/kafka's default drops the
 * sign by `>>> 0` instead, which differs; and computing it here tells which records share
 * a partition batch, for attributing a partition's error to its messages.
 */
export function kafkaPartition(key: string, partitions: number): number {
  return (loadedLibrary().murmur2(key) & 0x7fffffff) % partitions;
}

interface Clients {
  producer: KafkaProducer;
  admin: Admin;
  /** A send failed and the producer id was not renewed since (see restartSequences). */
  staleSequences: boolean;
}

/** One message on its way: where its result goes and the record that carries it. */
interface Entry {
  index: number;
  record: KafkaRecord & { partition: number };
}

/** A partition's error in a produce response. */
interface PartitionFailure {
  reason: string;
  permanent: boolean;
}

class KafkaBroker implements EventBroker {
  readonly name = 'kafka';
  private clients: Clients | undefined;
  /** Topics created or found to exist; kept across reconnects, so each is created once. */
  private readonly knownTopics = new Set<string>();
  /** Topics published to: one of these missing later has vanished, an outage, not a bad event. */
  private readonly seenTopics = new Set<string>();
  /** Publishes run one at a time: a failed send resets the producer's sequence numbers. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly headerBytes = new HeaderBytes();

  constructor(
    private readonly settings: KafkaSettings,
    private readonly source: string,
  ) {}

  async connect(): Promise<void> {
    if (this.clients) return;
    const options = this.clientOptions();
    const lib = await kafkaLibrary();
    const producer: KafkaProducer = new lib.Producer({
      ...options,
      idempotent: true,
      acks: lib.ProduceAcks.ALL,
      serializers: serializersOf(lib),
      // Topics are created here with the configured partitions, not by the server's defaults.
      autocreateTopics: false,
    });
    const admin = new lib.Admin(options);
    try {
      await this.withinTimeout(
        (async () => {
          await producer.metadata({ topics: [] });
          // Asks for a producer id now: a cluster refusing idempotence fails here, not later.
          await producer.initIdempotentProducer({});
        })(),
      );
    } catch (error) {
      await closeQuietly({ producer, admin, staleSequences: false });
      throw this.unavailable('cannot connect', error);
    }
    this.clients = { producer, admin, staleSequences: false };
  }

  /**
   * Names the topic template uses that hold characters a topic name cannot (Kafka allows
   * letters, digits, ".", "_" and "-"), and topics over Kafka's 249 characters.
   */
  validate(message: OutboxMessage): string | undefined {
    const { topicTemplate } = this.settings;
    const used = [
      ['aggregate_type', '{aggregate_type}', message.aggregateType],
      ['event_type', '{event_type}', message.eventType],
    ] as const;
    for (const [field, placeholder, value] of used) {
      if (topicTemplate.includes(placeholder) && illegalTopicCharacter.test(value)) {
        return `${field}: "${clip(escapeControl(value), 80)}" cannot be part of a Kafka topic name (letters, digits, ".", "_" and "-")`;
      }
    }
    const topic = kafkaTopic(topicTemplate, message);
    return topic.length > 249
      ? `topic "${clip(topic, 80)}" is ${topic.length} characters, over Kafka's 249 (aggregate_type or event_type too long)`
      : undefined;
  }

  /** A metadata request to the cluster, not answered from the client's cache. */
  async check(): Promise<void> {
    const clients = this.clients;
    if (!clients) throw new BrokerUnavailableError(`${this.settings.location}: not connected`);
    try {
      await this.withinTimeout(clients.producer.metadata({ topics: [], forceUpdate: true }));
    } catch (error) {
      throw this.unavailable('does not answer', error);
    }
  }

  publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]> {
    // The clients are taken now, so a close() right after this call still lets it finish.
    const clients = this.clients;
    if (!clients) {
      return Promise.reject(new BrokerUnavailableError(`${this.settings.location}: not connected`));
    }
    const run = this.queue.then(() => this.publishNow(clients, batch));
    this.queue = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    const clients = this.clients;
    if (!clients) return;
    this.clients = undefined;
    // Every publish resolves only once acknowledged, so waiting for them is the flush; a
    // server that stopped answering gets timeout_ms, then closing fails what is left.
    await this.withinTimeout(this.queue).catch(() => {});
    await closeQuietly(clients);
  }

  private clientOptions(): BaseOptions {
    const { bootstrapServers, clientId, timeoutMs, sasl, tls } = this.settings;
    return {
      clientId,
      bootstrapBrokers: bootstrapServers,
      timeout: timeoutMs,
      connectTimeout: timeoutMs,
      requestTimeout: timeoutMs,
      retries: clientRetries,
      retryDelay: clientRetryDelayMs,
      ...(sasl ? { sasl: { mechanism: 'PLAIN' as const, ...sasl } } : {}),
      ...(tls ? { tls: {} } : {}),
    };
  }

  private async publishNow(
    clients: Clients,
    batch: readonly OutboxMessage[],
  ): Promise<PublishResult[]> {
    if (clients.staleSequences) await this.restartSequences(clients);
    const results: PublishResult[] = new Array(batch.length);
    const topics = batch.map((message) => kafkaTopic(this.settings.topicTemplate, message));
    const refused = await this.ensureTopics(clients.admin, [...new Set(topics)]);
    const partitions = await this.partitionCounts(
      clients.producer,
      [...new Set(topics)].filter((topic) => !refused.has(topic)),
      refused,
    );
    const entries: Entry[] = [];
    batch.forEach((message, index) => {
      const topic = topics[index] as string;
      const refusal = refused.get(topic);
      if (refusal) results[index] = refusal;
      else entries.push({ index, record: this.record(message, topic, partitions.get(topic) ?? 1) });
    });
    if (entries.length > 0) await this.produce(clients, entries, results);
    return results;
  }

  private record(message: OutboxMessage, topic: string, partitions: number): Entry['record'] {
    return {
      topic,
      partition: kafkaPartition(message.aggregateId, partitions),
      key: message.aggregateId,
      value: message.payload,
      headers: this.headerBytes.encode(
        binaryModeHeaders(message, this.source, bindingPrefix.kafka),
      ),
      // No timestamp: the server's retention counts from it, so it stays "now"; the event
      // time travels in ce_time.
    };
  }

  /** Creates the topics not seen yet; returns the ones whose messages are refused. */
  private async ensureTopics(
    admin: Admin,
    topics: readonly string[],
  ): Promise<Map<string, PublishResult>> {
    const refused = new Map<string, PublishResult>();
    if (!this.settings.createTopics) return refused;
    const missing = topics.filter((topic) => !this.knownTopics.has(topic));
    await Promise.all(
      missing.map(async (topic) => {
        const refusal = await this.createTopic(admin, topic);
        if (refusal) refused.set(topic, refusal);
        else this.knownTopics.add(topic);
      }),
    );
    return refused;
  }

  private async createTopic(admin: Admin, topic: string): Promise<PublishResult | undefined> {
    const { partitions, replicationFactor } = this.settings;
    try {
      await admin.createTopics({ topics: [topic], partitions, replicas: replicationFactor });
      return undefined;
    } catch (error) {
      const refusal = findProtocolError(error);
      switch (refusal?.apiId) {
        case 'TOPIC_ALREADY_EXISTS':
          return undefined;
        // Not allowed to create: it may exist all the same; producing will tell.
        case 'TOPIC_AUTHORIZATION_FAILED':
        case 'CLUSTER_AUTHORIZATION_FAILED':
          return undefined;
        case 'INVALID_TOPIC_EXCEPTION':
          return { ok: false, permanent: true, error: `topic "${topic}": ${reason(refusal)}` };
      }
      // The rest (replication factor above the broker count, a creation policy, …) is a
      // setting to fix, not a fault of the events: no attempt is spent on them.
      throw this.unavailable(`cannot create topic "${topic}"`, error);
    }
  }

  /** Partition count per topic; a topic that does not exist refuses its messages. */
  private async partitionCounts(
    producer: KafkaProducer,
    topics: readonly string[],
    refused: Map<string, PublishResult>,
  ): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    // One topic per request: the client fails a whole request for one unknown topic.
    await Promise.all(
      topics.map(async (topic) => {
        try {
          const metadata = await producer.metadata({ topics: [topic] });
          counts.set(topic, metadata.topics.get(topic)?.partitionsCount ?? 1);
        } catch (error) {
          if (isUnavailable(error)) throw this.unavailable('cannot read metadata', error);
          this.topicMissing(topic, error);
          refused.set(topic, {
            ok: false,
            permanent: true,
            error: `topic "${topic}" does not exist and create_topics=false: ${errorMessage(error)}`,
          });
        }
      }),
    );
    return counts;
  }

  /**
   * A topic the cluster does not know. Deleted while we run (created here, or published to
   * before): an outage, not the events' fault, so it throws BrokerUnavailableError and no
   * attempt is spent; the dispatcher's next try creates it again (create_topics=true) or
   * waits until someone does. Returns only for a topic never seen with create_topics=false:
   * those events are refused.
   */
  private topicMissing(topic: string, error: unknown): void {
    const vanished = this.knownTopics.delete(topic) || this.seenTopics.has(topic);
    if (this.settings.createTopics || vanished) {
      const next = this.settings.createTopics
        ? 'it is created again on the next try'
        : 'create_topics=false: waiting for it to be created again';
      throw this.unavailable(`topic "${topic}" is gone (${next})`, error);
    }
  }

  /**
   * Sends the records in one request per leader and fills in their results. A partition
   * batch is accepted or refused whole; when a refusal may concern only one of its
   * records (too large, invalid), each of them is sent again alone to find which.
   */
  private async produce(
    clients: Clients,
    entries: readonly Entry[],
    results: PublishResult[],
    isolate = true,
  ): Promise<void> {
    try {
      await clients.producer.send({ messages: entries.map((entry) => entry.record) });
      for (const entry of entries) {
        results[entry.index] = published;
        this.seenTopics.add(entry.record.topic);
      }
      return;
    } catch (error) {
      clients.staleSequences = true;
      if (isUnavailable(error)) throw this.unavailable('publish failed', error);
      // The client's cached metadata may still list a topic deleted since: ask afresh.
      await this.checkTopicsExist(
        clients.producer,
        new Set(entries.map((entry) => entry.record.topic)),
      );
      await this.restartSequences(clients);
      const again = settleFailedSend(error, entries, results, isolate);
      for (const entry of again) await this.produce(clients, [entry], results, false);
    }
  }

  /** Throws (see topicMissing) if one of `topics` is no longer known to the cluster. */
  private async checkTopicsExist(producer: KafkaProducer, topics: Set<string>): Promise<void> {
    for (const topic of topics) {
      try {
        await producer.metadata({ topics: [topic], forceUpdate: true });
      } catch (error) {
        if (isUnavailable(error)) throw this.unavailable('cannot read metadata', error);
        this.topicMissing(topic, error);
      }
    }
  }

  /**
   * After a failed send the client's sequence numbers may be wrong: it does not count the
   * partitions that succeeded in a request that failed elsewhere, and the server would
   * then refuse (or, worse, take as duplicates) the next records there. A new producer id
   * starts every partition's sequence afresh.
   */
  private async restartSequences(clients: Clients): Promise<void> {
    try {
      await clients.producer.initIdempotentProducer({});
      clients.staleSequences = false;
    } catch (error) {
      throw this.unavailable('cannot restart the idempotent producer', error);
    }
  }

  private withinTimeout<T>(work: Promise<T>): Promise<T> {
    return withTimeout(work, this.settings.timeoutMs);
  }

  private unavailable(what: string, error: unknown): BrokerUnavailableError {
    if (error instanceof BrokerUnavailableError) return error;
    return new BrokerUnavailableError(
      `${this.settings.location}: ${what}: ${describeError(error)}`,
      { cause: error },
    );
  }
}

/**
 * Fills in the results of a send that failed, partition by partition; returns the entries
 * to send again alone, to find which record of a refused partition batch is at fault.
 */
function settleFailedSend(
  error: unknown,
  entries: readonly Entry[],
  results: PublishResult[],
  isolate: boolean,
): Entry[] {
  const failures = partitionFailures(error);
  const batchSizes = countBy(entries, entryPartition);
  const again: Entry[] = [];
  for (const entry of entries) {
    const failure = failures.get(entryPartition(entry));
    const shared = (batchSizes.get(entryPartition(entry)) ?? 0) > 1;
    if (failure === null) results[entry.index] = published;
    else if (failure === undefined)
      results[entry.index] = { ok: false, permanent: false, error: describeError(error) };
    else if (failure.permanent && isolate && shared) again.push(entry);
    else results[entry.index] = { ok: false, permanent: failure.permanent, error: failure.reason };
  }
  return again;
}

function entryPartition(entry: Entry): string {
  return partitionKey(entry.record.topic, entry.record.partition);
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

async function closeQuietly(clients: Clients): Promise<void> {
  await Promise.allSettled([clients.producer.close(), clients.admin.close()]);
}

/** The tree of errors the client nests (retries, one request per leader, one per partition). */
function* errorTree(error: unknown): Generator<ClientError> {
  if (!error || typeof error !== 'object') return;
  const node = error as ClientError;
  yield node;
  for (const child of node.errors ?? []) yield* errorTree(child);
  if (node.cause) yield* errorTree(node.cause);
}

interface ClientError {
  code?: string;
  message?: string;
  apiId?: string;
  serverErrorMessage?: string | null;
  /** Where in the response a protocol error was found: `/responses/0/partition_responses/1`. */
  path?: string;
  errors?: unknown[];
  cause?: unknown;
  response?: ProduceResponse;
}

interface ProduceResponse {
  responses?: {
    name: string;
    partitionResponses?: { index: number; errorCode: number; errorMessage: string | null }[];
  }[];
}

/** The server cannot be reached or refuses this client: no message is at fault. */
function isUnavailable(error: unknown): boolean {
  for (const node of errorTree(error)) {
    if (node.code === 'PLT_KFK_NETWORK' || node.code === 'PLT_KFK_AUTHENTICATION') return true;
    if (node.apiId && clientRefusals.has(node.apiId)) return true;
  }
  return false;
}

function findProtocolError(error: unknown): ClientError | undefined {
  for (const node of errorTree(error)) if (node.apiId) return node;
  return undefined;
}

/**
 * Per partition of the produce responses in `error`: `null` when the partition's batch was
 * written, its failure otherwise. A partition absent from the map got no answer.
 */
function partitionFailures(error: unknown): Map<string, PartitionFailure | null> {
  const outcomes = new Map<string, PartitionFailure | null>();
  for (const node of errorTree(error)) {
    if (node.code !== 'PLT_KFK_RESPONSE' || !node.response?.responses) continue;
    const protocolErrors = (node.errors ?? []) as ClientError[];
    node.response.responses.forEach(({ name, partitionResponses = [] }, i) => {
      partitionResponses.forEach(({ index, errorCode }, j) => {
        const path = `/responses/${i}/partition_responses/${j}`;
        const failure = protocolErrors.find((e) => e.path === path);
        outcomes.set(
          partitionKey(name, index),
          errorCode === 0 ? null : partitionFailure(failure, errorCode),
        );
      });
    });
  }
  return outcomes;
}

function partitionFailure(error: ClientError | undefined, errorCode: number): PartitionFailure {
  if (!error) return { reason: `Kafka error code ${errorCode}`, permanent: false };
  return { reason: reason(error), permanent: permanentErrors.has(error.apiId ?? '') };
}

/** `MESSAGE_TOO_LARGE: The request included a message larger than …` (the server's words if it sent any). */
function reason(error: ClientError): string {
  return `${error.apiId}: ${error.serverErrorMessage || error.message}`;
}

/** The innermost useful text of a client error: `fetch failed 4 times` says little. */
function describeError(error: unknown): string {
  const messages: string[] = [];
  for (const node of errorTree(error)) {
    const text = node.apiId ? reason(node) : node.message;
    if (text && !node.errors?.length && !messages.includes(text)) messages.push(text);
  }
  return messages.length > 0 ? messages.slice(-3).join('; ') : errorMessage(error);
}
