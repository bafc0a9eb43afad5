/**
 * Kafka broker on @platformatic/kafka (pure TypeScript: nothing downloaded at install).
 *
 * One idempotent producer (acks=all): the client then keeps one request in flight per
 * connection, so a partition's records are written in the order sent, and its own retries
 * are deduplicated by the broker. Key = aggregate id, so one aggregate stays in one
 * partition; value = the payload as stored; headers = the CloudEvents Kafka binding.
 */

import type { Admin } from '@platformatic/kafka';
import { BrokerUnavailableError, ConfigError, errorMessage } from '../../common/errors.js';
import { clip, escapeControl } from '../../common/text.js';
import { withTimeout } from '../../common/timeout.js';
import {
  type ConnectOptions,
  type EventBroker,
  type OutboxMessage,
  type PublishResult,
  published,
} from '../broker.js';
import { binaryModeHeaders, bindingPrefix } from '../cloudevents.js';
import { clientOptions } from './client-options.js';
import {
  authorizationRefusal,
  describeError,
  findProtocolError,
  isUnavailable,
  reason,
  settleFailedSend,
} from './errors.js';
import { guardConnections, type KafkaProducer, kafkaLibrary, serializersOf } from './library.js';
import {
  type Entry,
  HeaderBytes,
  illegalTopicCharacter,
  kafkaPartition,
  kafkaTopic,
  requestSized,
} from './records.js';
import { refusedSettingsError } from './refused-settings.js';
import { type KafkaSettings, MAX_TOPIC_LENGTH } from './settings.js';

/** A Kafka broker with the settings of its URL (settings.ts). */
export function createKafkaBroker(settings: KafkaSettings, source: string): EventBroker {
  return new KafkaBroker(settings, source);
}

interface Clients {
  producer: KafkaProducer;
  admin: Admin;
  /** A send failed and the producer id was not renewed since (see restartSequences). */
  staleSequences: boolean;
}

class KafkaBroker implements EventBroker {
  readonly name = 'kafka';
  private clients: Clients | undefined;
  /** The warning about `{event_type}` in the topic template is given once, not per reconnect. */
  private toldTopics = false;
  /** Topics created or found to exist; kept across reconnects, so each is created once. */
  private readonly knownTopics = new Set<string>();
  /** Topics published to: one of these missing later has vanished, an outage, not a bad event. */
  private readonly seenTopics = new Set<string>();
  /** Topics this user may not create (no CREATE ACL): an administrator makes them. */
  private readonly notOurs = new Set<string>();
  /** Publishes run one at a time: a failed send resets the producer's sequence numbers. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly headerBytes = new HeaderBytes();

  constructor(
    private readonly settings: KafkaSettings,
    private readonly source: string,
  ) {}

  async connect(connecting?: ConnectOptions): Promise<void> {
    if (this.clients) return;
    if (this.settings.topicTemplate.includes('{event_type}') && !this.toldTopics) {
      this.toldTopics = true;
      connecting?.logger?.warn(
        { broker: this.name, topic: this.settings.topicTemplate },
        "the topic template has {event_type}: an aggregate's events of different types go to different topics, between which Kafka keeps no order; consume() refuses to read two types of one aggregate type from such topics",
      );
    }
    const options = clientOptions(this.settings);
    const lib = await kafkaLibrary();
    const producer: KafkaProducer = guardConnections(
      new lib.Producer({
        ...options,
        idempotent: true,
        acks: lib.ProduceAcks.ALL,
        serializers: serializersOf(lib),
        // Topics are created here with the configured partitions, not by the server's defaults.
        autocreateTopics: false,
      }),
    );
    const admin = guardConnections(new lib.Admin(options));
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
      // A certificate or credentials the server refuses, or an ACL missing (the idempotent
      // producer's IDEMPOTENT_WRITE): a setting to fix, not an outage.
      this.throwIfForbidden('cannot start the idempotent producer', error);
      throw (
        (await refusedSettingsError(error, this.settings)) ??
        this.unavailable('cannot connect', error)
      );
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
    return topic.length > MAX_TOPIC_LENGTH
      ? `topic "${clip(topic, 80)}" is ${topic.length} characters, over Kafka's ${MAX_TOPIC_LENGTH} (aggregate_type or event_type too long)`
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
    for (const run of requestSized(entries)) await this.produce(clients, run, results);
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
        // Not allowed to create: it may exist all the same (made by an administrator);
        // reading its metadata will tell.
        case 'TOPIC_AUTHORIZATION_FAILED':
        case 'CLUSTER_AUTHORIZATION_FAILED':
          this.notOurs.add(topic);
          return undefined;
        case 'INVALID_TOPIC_EXCEPTION':
          return { ok: false, permanent: true, error: `topic "${topic}": ${reason(refusal)}` };
        // The topic's settings (partitions, a creation policy): the URL's to fix, not the
        // events' fault, and no retry mends them. They stop the dispatcher, as consume()
        // refuses to start with them.
        case 'INVALID_PARTITIONS':
        case 'POLICY_VIOLATION':
        case 'INVALID_CONFIG':
          throw new ConfigError(
            this.settings.setting,
            `${this.settings.location}: cannot create topic "${topic}" (partitions ${partitions}, replication_factor ${replicationFactor}): ${reason(refusal)}`,
            { cause: error },
          );
        // Fewer brokers registered than the replication factor: too high a setting, or
        // brokers restarting (a rolling restart), which passes. Ridden out as an outage
        // (no attempt spent), the reason first so that a cut log line keeps it.
        case 'INVALID_REPLICATION_FACTOR':
          throw new BrokerUnavailableError(
            `${this.settings.location}: replication_factor ${replicationFactor} is more than the brokers the cluster has registered now, so topic "${topic}" cannot be created (a broker restarting; or lower replication_factor): ${reason(refusal)}`,
            { cause: error },
          );
      }
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
          this.throwIfForbidden(`cannot read the metadata of topic "${topic}"`, error);
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
    // A topic this user could not create was only assumed to exist: not known, until published to.
    const known = this.knownTopics.delete(topic) && !this.notOurs.has(topic);
    const vanished = known || this.seenTopics.has(topic);
    if (this.notOurs.has(topic)) {
      if (vanished) {
        throw this.unavailable(
          `topic "${topic}" is gone, and this user may not create it: waiting for it to be created again`,
          error,
        );
      }
      // Retrying cannot create it: say so once, instead of an outage for ever.
      throw new ConfigError(
        this.settings.setting,
        `${this.settings.location}: topic "${topic}" does not exist, and this user may not create it (no CREATE ACL); create it beforehand, grant the user CREATE on it, or set create_topics=false to park the events of topics that do not exist`,
        { cause: error },
      );
    }
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
      this.throwIfForbidden('publish refused', error);
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
        this.throwIfForbidden(`cannot read the metadata of topic "${topic}"`, error);
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
      this.throwIfForbidden('cannot restart the idempotent producer', error);
      throw this.unavailable('cannot restart the idempotent producer', error);
    }
  }

  /**
   * Throws a ConfigError when an ACL refused the client: the dispatcher stops (`run` exits
   * 2) with every event still in the outbox, rather than parking them or retrying for ever.
   */
  private throwIfForbidden(what: string, error: unknown): void {
    const refusal = authorizationRefusal(error);
    if (!refusal) return;
    throw new ConfigError(this.settings.setting, `${this.settings.location}: ${what}: ${refusal}`, {
      cause: error,
    });
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

async function closeQuietly(clients: Clients): Promise<void> {
  await Promise.allSettled([clients.producer.close(), clients.admin.close()]);
}
