/**
 * Kafka's receiving half (see ../source.ts): one consumer-group member reading the topics
 * of the consumer's event types, committing offsets only once their messages are done
 * (offsets.ts), and pausing its fetches while `maxInFlight` messages are not acked.
 *
 * The URL is the publisher's (settings.ts), plus one parameter of the consumer's own:
 * - `from=earliest|latest` (default `earliest`): where the group starts reading a
 *   partition it has no committed offset for; `earliest` takes what was published before
 *   the consumer's first start. That position is committed at once (pin): with `latest`
 *   the next start begins there, not at a later `latest`, and with either every partition
 *   read has an offset in the group.
 */

import type { Consumer, Message, MessagesStream } from '@platformatic/kafka';
import { BrokerUnavailableError, ConfigError } from '../../common/errors.js';
import { withTimeout } from '../../common/timeout.js';
import type { Delivery, MessageSource, MessageSourceOptions } from '../source.js';
import { clientOptions } from './client-options.js';
import { describeError, findProtocolError, isUnavailable, reason } from './errors.js';
import { guardConnections, type KafkaLibrary, kafkaLibrary } from './library.js';
import { HeldAtJoin, OffsetCommits } from './offsets.js';
import { kafkaTopic, partitionKey } from './records.js';
import { refusedSettingsError } from './refused-settings.js';
import type { KafkaSourceSettings } from './settings.js';

/** Refusals of what the source declares (topics, group): settings to fix, not an outage. */
const refusals = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_PARTITIONS',
  'POLICY_VIOLATION',
  'INVALID_GROUP_ID',
  'INCONSISTENT_GROUP_PROTOCOL',
]);

type KafkaConsumer = Consumer<Buffer, Buffer, Buffer, Buffer>;
type KafkaStream = MessagesStream<Buffer, Buffer, Buffer, Buffer>;

/** How often a started source reads its topics' partition counts (see watchPartitionCounts). */
const PARTITION_CHECK_MS = 30_000;
type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;
type PauseReason = 'byCaller' | 'byBound' | 'byPin';

/** Most bytes of records one fetch request asks for. */
const fetchMaxBytes = 1_048_576;

/** A Kafka source with the settings of the broker URL (settings.ts). */
export function createKafkaSource(
  settings: KafkaSourceSettings,
  options: MessageSourceOptions,
): MessageSource {
  return new KafkaSource(settings, options);
}

/**
 * Refuses a template that spreads one aggregate type's events over several topics (with
 * `{event_type}`, two types of it consumed): Kafka orders a partition, not topics, so one
 * aggregate's events would come out of order, and the inbox would park the late ones.
 */
export function assertOneTopicPerAggregateType(
  template: string,
  events: MessageSourceOptions['events'],
  setting: string,
): void {
  const topics = new Map<string, Set<string>>();
  for (const { type, aggregateType } of events) {
    const seen = topics.get(aggregateType) ?? new Set<string>();
    seen.add(kafkaTopic(template, { aggregateType, eventType: type }));
    topics.set(aggregateType, seen);
    if (seen.size > 1) {
      throw new ConfigError(
        setting,
        `topic="${template}" puts the events of aggregate type "${aggregateType}" in ${seen.size} topics (${[...seen].join(', ')}), between which Kafka keeps no order, so one aggregate's events would be handled out of order: publish and consume without {event_type} in the topic, or consume each of these event types with a consumer (and inbox) of its own`,
      );
    }
  }
}

/**
 * The aggregate type each topic of the event types holds, where the template makes a
 * topic per aggregate type (it has `{aggregate_type}`) and no two of them fill it in to
 * one name: a student's `created` in the student's topic is then told from a course's. A
 * topic of no such template, or of two aggregate types, is left out: nothing tells.
 */
export function topicAggregateTypes(
  template: string,
  events: MessageSourceOptions['events'],
): Map<string, string> {
  const found = new Map<string, string | undefined>();
  if (!template.includes('{aggregate_type}')) return new Map();
  for (const { type, aggregateType } of events) {
    const topic = kafkaTopic(template, { aggregateType, eventType: type });
    found.set(
      topic,
      found.has(topic) && found.get(topic) !== aggregateType ? undefined : aggregateType,
    );
  }
  return new Map([...found].filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** The topics of the event types: the template filled in as the publisher does (records.ts). */
export function sourceTopics(template: string, events: MessageSourceOptions['events']): string[] {
  const topics = events.map(({ type, aggregateType }) =>
    kafkaTopic(template, { aggregateType, eventType: type }),
  );
  return [...new Set(topics)];
}

class KafkaSource implements MessageSource {
  readonly binding = 'kafka';
  /** The group keeps each partition, so each aggregate, on one member. */
  readonly needsLease = false;
  readonly location: string;
  private state: 'new' | 'starting' | 'started' | 'closing' | 'closed' = 'new';
  private consumer: KafkaConsumer | undefined;
  private stream: KafkaStream | undefined;
  private commits: OffsetCommits | undefined;
  private onMessage: (delivery: Delivery) => void = () => {};
  private onLost: ((error: Error) => void) | undefined;
  private inFlight = 0;
  /** Partitions of the last join, `topic\u0000partition`. */
  private assigned = new Set<string>();
  /** What the stream still holds of partitions withdrawn or given back (see reassigned). */
  private readonly heldAtJoin = new HeldAtJoin();
  /** Paused by pause() (for good), or by the maxInFlight bound (until acks free room). */
  private readonly paused = { byCaller: false, byBound: false, byPin: false };
  private closing: Promise<void> | undefined;
  /** The next look at the topics' partition counts (watchPartitionCounts). */
  private partitionCheck: NodeJS.Timeout | undefined;
  /** Joining the group again after the client gave its heartbeats up (heartbeatStopped). */
  private rejoining: Promise<void> | undefined;
  /** When the last such join began: a heartbeat failing again soon after is not retried so. */
  private rejoinedAt = 0;
  /** A heartbeat given up while starting, acted on once started. */
  private heartbeatLostWhileStarting: unknown;
  /** The aggregate type of each topic that tells it (topicAggregateTypes). */
  private readonly aggregateTypes: Map<string, string>;
  /** The commits of start positions under way (pin). */
  private pinning: Promise<void> = Promise.resolve();

  constructor(
    private readonly settings: KafkaSourceSettings,
    private readonly options: MessageSourceOptions,
  ) {
    this.location = settings.location;
    this.aggregateTypes = topicAggregateTypes(settings.topicTemplate, options.events);
  }

  /** Read when receiving, by which time start() has refused a template that does not fit. */
  get reading(): string {
    const topics = sourceTopics(this.settings.topicTemplate, this.options.events);
    return `topics ${topics.map((topic) => `"${topic}"`).join(', ')} in group "${this.options.consumer}"`;
  }

  async start(onMessage: (delivery: Delivery) => void, onLost: (error: Error) => void) {
    if (this.state !== 'new') throw new Error(`${this.location}: a Kafka source starts once`);
    this.state = 'starting';
    const topics = sourceTopics(this.settings.topicTemplate, this.options.events);
    if (topics.length === 0)
      throw new ConfigError(this.settings.setting, 'no event types to consume');
    assertOneTopicPerAggregateType(
      this.settings.topicTemplate,
      this.options.events,
      this.settings.setting,
    );
    const lib = await kafkaLibrary();
    const { sessionTimeoutMs } = this.settings;
    // Joining may wait for a dead member's session to expire: the coordinator holds the
    // JoinGroup request that long, so requests (and the start) are given that much more.
    const joinTimeoutMs = this.settings.timeoutMs + sessionTimeoutMs;
    const consumer: KafkaConsumer = guardConnections(
      new lib.Consumer({
        ...clientOptions(this.settings),
        requestTimeout: joinTimeoutMs,
        groupId: this.options.consumer,
        sessionTimeout: sessionTimeoutMs,
        rebalanceTimeout: sessionTimeoutMs,
        heartbeatInterval: Math.min(3_000, Math.floor(sessionTimeoutMs / 3)),
        autocommit: false,
        ...(this.settings.groupInstanceId
          ? { groupInstanceId: this.settings.groupInstanceId }
          : {}),
        // Long polls end well within the request timeout, which would otherwise fail them.
        maxWaitTime: Math.min(5_000, Math.floor(this.settings.timeoutMs / 2)),
        // Fetched and not yet delivered: the fetch loop stops once this many wait.
        highWaterMark: Math.max(16, this.options.maxInFlight),
        // What one fetch brings at most (a record larger than this still comes, alone). The
        // client's 10 MiB made a consumer draining a backlog twice as large in memory
        // (bench/README.md, memory-consume-kafka), and no faster.
        maxBytes: fetchMaxBytes,
      }),
    );
    this.consumer = consumer;
    const { logger, consumer: group } = this.options;
    this.commits = new OffsetCommits(consumer, (error, memberId) => {
      if (this.fenced(error, memberId)) return;
      logger.warn(
        { location: this.location, consumer: group, err: describeError(error) },
        'kafka offset commit failed; retrying',
      );
    });
    // Emitted when rejoining the group failed for good; unheard, it would throw. Fenced,
    // it is not the server away: starting again would fence the other process in turn.
    consumer.on('error', (error) => {
      if (!this.fenced(error)) this.lose(error);
    });
    consumer.on('consumer:heartbeat:error', ({ error, memberId }) => {
      if (!this.fenced(error, memberId)) this.heartbeatStopped(consumer, error);
    });
    consumer.on('consumer:group:join', ({ generationId, assignments }) => {
      logger.debug(
        { location: this.location, consumer: group, generationId, assignments },
        'kafka group joined',
      );
      this.reassigned(assignments ?? []);
    });
    try {
      await withTimeout(this.open(lib, consumer, topics), joinTimeoutMs);
    } catch (error) {
      // Rejects now, within timeout_ms; close() waits for the release. A close() during
      // start releases the consumer itself.
      if (this.state === 'starting') {
        this.state = 'closed';
        this.closing = this.release(consumer);
      }
      throw await this.startError(error);
    }
    const stream = this.stream as KafkaStream;
    if (this.state !== 'starting') {
      await stream.close().catch(() => {});
      throw new BrokerUnavailableError(`${this.location}: closed while starting`);
    }
    this.onMessage = onMessage;
    this.onLost = onLost;
    this.state = 'started';
    // Paused first, the stream stays paused when the data listener is added.
    if (this.paused.byCaller) stream.pause();
    stream.on('data', (message: KafkaMessage) => this.receive(message));
    if (this.heartbeatLostWhileStarting !== undefined) {
      this.heartbeatStopped(consumer, this.heartbeatLostWhileStarting);
    }
    await this.watchPartitionCounts(consumer, topics);
  }

  /**
   * Partitions added to a topic are not assigned to anyone until the group joins again
   * (the client does not ask for it): their messages would wait, unread and unmentioned,
   * until the consumer restarts. Every PARTITION_CHECK_MS the counts are read again; a
   * change starts the source anew, joining the group with them.
   */
  private async watchPartitionCounts(consumer: KafkaConsumer, topics: string[]) {
    const counts = async () => {
      const ends = await withTimeout(consumer.listOffsets({ topics }), this.settings.timeoutMs);
      return new Map([...ends].map(([topic, partitions]) => [topic, partitions.length]));
    };
    const joined = await counts().catch(() => undefined);
    if (!joined) return;
    const look = async () => {
      if (this.state !== 'started') return;
      const now = await counts().catch(() => undefined);
      const grown = [...(now ?? [])].filter(([topic, n]) => n !== joined.get(topic));
      if (grown.length === 0) {
        this.partitionCheck = setTimeout(() => void look(), PARTITION_CHECK_MS).unref();
        return;
      }
      const what = grown.map(([t, n]) => `${t} has ${n} partitions (${joined.get(t)} when joined)`);
      this.options.logger.info(
        { location: this.location, consumer: this.options.consumer },
        `kafka: ${what.join(', ')}: joining the group again to read them`,
      );
      this.lose(new Error(`${what.join(', ')}`));
    };
    this.partitionCheck = setTimeout(() => void look(), PARTITION_CHECK_MS).unref();
  }

  /** Creates the topics, joins the group, and waits for the stream's starting offsets. */
  private async open(lib: KafkaLibrary, consumer: KafkaConsumer, topics: string[]) {
    if (this.settings.createTopics) await this.createTopics(lib, topics);
    const options = {
      topics,
      mode: lib.MessagesStreamModes.COMMITTED,
      fallbackMode: this.settings.from,
      autocommit: false,
    };
    // The callback form: the listeners are on before the stream can emit anything.
    await new Promise<void>((resolve, reject) =>
      consumer.consume(options, (error, stream) => {
        if (error || !stream) return reject(error);
        this.stream = stream;
        // For good: an 'error' event nobody listens to would throw.
        stream.on('error', (streamError) => this.lose(streamError));
        stream.on('close', () => this.lose(new Error('the message stream ended')));
        // At every join, once the stream knows where it starts on its partitions.
        stream.on('offsets', () => this.pin(consumer, stream));
        // 'offsets' once it has read the committed offsets; an error there destroys it.
        stream.once('offsets', resolve);
        stream.once('error', reject);
      }),
    );
    // Nothing is fetched before the data listener is on, after start: the first start
    // positions are in the group before a message is handed over.
    await this.pinning;
  }

  /**
   * Commits where the stream starts on each assigned partition the group has no offset
   * for. With `from=latest`, uncommitted, that position would be `latest` again at the
   * next start: a process stopped (or killed) before its first commit would skip what it
   * had received and not finished, and everything published while no process of the
   * consumer ran. With either, every partition a member reads then has an offset in the
   * group: one that moves to another member is withdrawn and read there from it, and
   * given back is read here from the group's offset again (see reassigned), never from
   * where this member's stream had got to nor committed over the other member's progress.
   * Called at the stream's 'offsets' (at every join, just before it fetches): the
   * positions are taken then, and a started stream is paused until they are in the
   * group. At the start a failure fails the start; after it, it loses the source (a start
   * pins before it hands anything over).
   */
  private pin(consumer: KafkaConsumer, stream: KafkaStream) {
    const commits = this.commits;
    if (!commits || (this.state !== 'starting' && this.state !== 'started')) return;
    const starts = commits
      .unpinned(consumer.assignments ?? [])
      .map(({ topic, partition }) => ({
        topic,
        partition,
        offset: commits.resumePoint(
          topic,
          partition,
          stream.offsetsToFetch.get(`${topic}:${partition}`),
        ),
      }))
      .filter(
        (start): start is { topic: string; partition: number; offset: bigint } =>
          start.offset !== undefined,
      );
    if (starts.length === 0) return;
    if (this.state === 'started') this.pauseStream('byPin');
    // The member the commits go out as: fenced as an earlier one is no duplicate name.
    const sentAs = consumer.memberId;
    const pinning = this.pinning
      .catch(() => {})
      .then(() => this.pinStarts(consumer, starts, commits));
    this.pinning = pinning;
    pinning.then(
      // Only the last pin resumes: an earlier one settling would let the stream fetch
      // partitions whose start a later join is still committing.
      () => {
        if (this.pinning === pinning) this.resumeStream('byPin');
      },
      (error: unknown) => {
        // Fenced (static membership): said as such, not taken for the server away.
        if (this.state !== 'started' || this.fenced(error, sentAs)) return;
        this.options.logger.warn(
          { location: this.location, consumer: this.options.consumer, err: describeError(error) },
          'kafka: could not commit the starting offsets of newly assigned partitions; starting again',
        );
        this.lose(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  private async pinStarts(
    consumer: KafkaConsumer,
    starts: readonly { topic: string; partition: number; offset: bigint }[],
    commits: OffsetCommits,
  ) {
    if (this.state !== 'starting' && this.state !== 'started') return;
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of starts) {
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
    }
    const committed = await consumer.listCommittedOffsets({
      topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
    });
    const none: (typeof starts)[number][] = [];
    for (const start of starts) {
      const offset = committed.get(start.topic)?.[start.partition];
      if (offset !== undefined && offset >= 0n) commits.known(start.topic, start.partition, offset);
      else none.push(start);
    }
    if (none.length > 0 && (this.state === 'starting' || this.state === 'started')) {
      await commits.pin(none);
    }
  }

  /** Creates missing topics as the publisher does, so a consumer may start first. */
  private async createTopics(lib: KafkaLibrary, topics: string[]) {
    const admin = guardConnections(new lib.Admin(clientOptions(this.settings)));
    const { partitions, replicationFactor: replicas } = this.settings;
    try {
      await Promise.all(
        topics.map((topic) =>
          admin.createTopics({ topics: [topic], partitions, replicas }).catch((error) => {
            const apiId = findProtocolError(error)?.apiId;
            // Exists already, or not ours to create: it may exist all the same; joining tells.
            if (apiId === 'TOPIC_ALREADY_EXISTS' || apiId?.endsWith('AUTHORIZATION_FAILED')) return;
            throw error;
          }),
        ),
      );
    } finally {
      await admin.close().catch(() => {});
    }
  }

  private receive(message: KafkaMessage) {
    // Closing: what still flows out of the stream's buffer goes to the next source.
    const commits = this.commits;
    if (this.state !== 'started' || !commits) return;
    const { topic, partition, offset } = message;
    // Fetched before a rebalance gave its partition away (the new owner reads it), or
    // before the partition was given back (it comes again from the commit).
    if (this.heldAtJoin.drop(partitionKey(topic, partition))) return;
    const offsets = commits.deliver(topic, partition, offset);
    if (!offsets) return;
    this.inFlight++;
    if (this.inFlight >= this.options.maxInFlight) this.pauseStream('byBound');
    const headers: Record<string, string> = {};
    for (const [name, value] of message.headers) {
      headers[name.toString('utf8')] = value?.toString('utf8') ?? '';
    }
    let acked = false;
    const delivery: Delivery = {
      headers,
      contentType: headers['content-type'],
      body: message.value ?? new Uint8Array(0),
      origin: `kafka ${topic}/${partition}@${offset}`,
      aggregateType: this.aggregateTypes.get(topic),
      withdrawn: () => offsets.withdrawn,
      ack: async () => {
        if (acked || this.state === 'closed') return;
        acked = true;
        // Counted out of the bound when withdrawn; its offset is the new owner's to commit.
        if (offsets.withdrawn) return;
        this.inFlight--;
        commits.ack(offsets, offset);
        if (this.inFlight < this.options.maxInFlight) this.resumeStream('byBound');
      },
    };
    try {
      this.onMessage(delivery);
    } catch (error) {
      // The message stays in flight, holding its partition's commits: start afresh.
      this.lose(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * A join's assignments. A partition this member had and lost is the new owner's from
   * the group's committed offset: its messages here that are not done are withdrawn (the
   * consumer does not start them; those running finish, their acks ignored), they leave
   * the in-flight bound, and what the stream still holds of it is dropped. Without this
   * the member worked through everything it had received of partitions it no longer
   * owned, each of which the new owner received again. Only partitions committed on from
   * here (see OffsetCommits.withdraw); the others are worked through as before.
   *
   * A withdrawn partition given back is read again from the group's committed offset,
   * afresh (its offsets were forgotten). What the stream had buffered of it before is
   * older than that and must not come first, or the offsets would refuse what is fetched
   * again: the messages buffered at the join, first out of the stream, are dropped for
   * it. Nothing of it was fetched while it was away.
   */
  private reassigned(assignments: readonly { topic: string; partitions: readonly number[] }[]) {
    const now = new Set<string>();
    for (const { topic, partitions } of assignments) {
      for (const partition of partitions) now.add(partitionKey(topic, partition));
    }
    for (const key of now) this.heldAtJoin.giveBack(key, this.stream?.readableLength ?? 0);
    for (const key of this.assigned) {
      if (now.has(key)) continue;
      const [topic, partition] = key.split('\u0000') as [string, string];
      const offsets = this.commits?.withdraw(topic, Number(partition));
      if (!offsets) continue;
      this.heldAtJoin.withdraw(key);
      this.inFlight -= offsets.open;
    }
    this.assigned = now;
    if (this.inFlight < this.options.maxInFlight) this.resumeStream('byBound');
  }

  private pauseStream(by: PauseReason) {
    this.paused[by] = true;
    this.stream?.pause();
  }

  private resumeStream(by: PauseReason) {
    if (!this.paused[by]) return;
    this.paused[by] = false;
    // The stream's resume() also restarts its fetch loop, which pause() stopped.
    if (this.state === 'started' && !Object.values(this.paused).some(Boolean)) {
      this.stream?.resume();
    }
  }

  /** A metadata request, not answered from the client's cache. */
  async check(): Promise<void> {
    const consumer = this.consumer;
    if (!consumer || this.state !== 'started') {
      throw new BrokerUnavailableError(`${this.location}: not connected`);
    }
    try {
      await withTimeout(
        consumer.metadata({ topics: [], forceUpdate: true }),
        this.settings.timeoutMs,
      );
    } catch (error) {
      throw this.unavailable('does not answer', error);
    }
  }

  /**
   * The group's lag over the consumer's topics: per partition the latest offset minus the
   * committed one; a partition the group never committed on counts from its earliest
   * offset (`from=earliest`) or not at all (`from=latest`, until the first start commits
   * its position).
   */
  async backlog(): Promise<number> {
    const consumer = this.consumer;
    if (!consumer || this.state !== 'started') {
      throw new BrokerUnavailableError(`${this.location}: not connected`);
    }
    const topics = sourceTopics(this.settings.topicTemplate, this.options.events);
    try {
      return await withTimeout(this.lag(consumer, topics), this.settings.timeoutMs);
    } catch (error) {
      throw this.unavailable('cannot read the group lag', error);
    }
  }

  private async lag(consumer: KafkaConsumer, topics: string[]): Promise<number> {
    const latest = await consumer.listOffsets({ topics });
    const earliest =
      this.settings.from === 'earliest'
        ? await consumer.listOffsets({ topics, timestamp: -2n })
        : latest;
    const committed = await consumer.listCommittedOffsets({
      topics: [...latest].map(([topic, offsets]) => ({
        topic,
        partitions: offsets.map((_, partition) => partition),
      })),
    });
    let total = 0n;
    for (const [topic, offsets] of latest) {
      offsets.forEach((end, partition) => {
        const done = committed.get(topic)?.[partition] ?? -1n;
        const from = done >= 0n ? done : (earliest.get(topic)?.[partition] ?? end);
        if (end > from) total += end - from;
      });
    }
    return Number(total);
  }

  async pause(): Promise<void> {
    this.pauseStream('byCaller');
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** Stops fetching, commits what is done, leaves the group. */
  private async shutdown() {
    const { consumer, stream, commits } = this;
    this.state = 'closing';
    clearTimeout(this.partitionCheck);
    const within = (work: Promise<unknown>) =>
      withTimeout(work, this.settings.timeoutMs).catch(() => {});
    if (stream) await within(stream.close());
    if (commits) await within(commits.flush());
    // A join under way would start the heartbeats again after the leave.
    if (this.rejoining) await within(this.rejoining);
    this.state = 'closed';
    if (consumer) await this.release(consumer);
  }

  /** Leaves the group and closes the connections, whatever state the server is in. */
  private async release(consumer: KafkaConsumer) {
    // Forced: closes the consumer's streams too. The callback form: the promise overload
    // is not picked for close(true).
    const close = () =>
      withTimeout(
        new Promise<void>((resolve, reject) =>
          consumer.close(true, (error) => (error ? reject(error) : resolve())),
        ),
        this.settings.timeoutMs,
      );
    try {
      await close();
    } catch {
      // The server did not take the LeaveGroup: its session timeout drops this member.
      // Without a member id, close() skips leaving and only closes the connections.
      consumer.memberId = null;
      await close().catch(() => {});
    }
  }

  /**
   * A static member (`group_instance_id`) whose name another process joined under is
   * fenced out of the group: its commits and heartbeats fail, but the client goes on
   * fetching. Two processes on the same partitions would race each other, and starting
   * again would fence the other in turn: the source is lost with a ConfigError, which
   * stops the consumer. True when `error` says so. `sentAs` is the member id the failed
   * request was sent as: told its member id was unknown, the client joins again under the
   * name with a new one (fencing the other process), and an answer to a request sent
   * before it joined is about a membership this process no longer has. Without a member
   * id (its rejoin under way, or given up) it is fenced.
   */
  private fenced(error: unknown, sentAs?: string | null): boolean {
    const name = this.settings.groupInstanceId;
    if (!name || findProtocolError(error)?.apiId !== 'FENCED_INSTANCE_ID') return false;
    const memberId = this.consumer?.memberId;
    if (sentAs && memberId && sentAs !== memberId) {
      this.options.logger.debug(
        { location: this.location, consumer: this.options.consumer, sentAs },
        'kafka: fenced as a member id this process has since joined again under; ignored',
      );
      return true;
    }
    this.lose(this.fencedError(name));
    return true;
  }

  /**
   * @platformatic/kafka (1.35) gives a heartbeat up after an error it does not take for a
   * rejoin error (its connection dropped, the request timed out): it cancels its timer,
   * then refreshes the one it cleared, and sends no heartbeat again. The group then
   * evicts the member after its session and gives its partitions to others while it
   * still reads them, until a commit is refused. Joining again starts the heartbeats
   * anew: a follower keeps its place; the group's leader joining again rebalances the
   * group, once. A heartbeat given up again within a session of that join, or a join
   * that fails, loses the source: the caller starts anew, with backoff.
   */
  private heartbeatStopped(consumer: KafkaConsumer, error: unknown) {
    if (this.state === 'starting') {
      this.heartbeatLostWhileStarting = error;
      return;
    }
    if (this.state !== 'started' || this.rejoining) return;
    const lost = (cause: unknown) =>
      this.lose(cause instanceof Error ? cause : new Error(String(cause)));
    if (Date.now() - this.rejoinedAt < this.settings.sessionTimeoutMs) return lost(error);
    this.rejoinedAt = Date.now();
    this.options.logger.warn(
      { location: this.location, consumer: this.options.consumer, err: describeError(error) },
      'kafka heartbeat failed; joining the group again',
    );
    this.rejoining = consumer
      .joinGroup({})
      .then(
        () => {},
        (joinError: unknown) => {
          if (!this.fenced(joinError)) lost(joinError);
        },
      )
      .finally(() => {
        this.rejoining = undefined;
      });
  }

  private fencedError(name: string, cause?: unknown): ConfigError {
    return new ConfigError(
      this.settings.setting,
      `group_instance_id="${name}": another process joined consumer group "${this.options.consumer}" under the same name and the group fenced this one out; give each process its own group_instance_id`,
      cause === undefined ? undefined : { cause },
    );
  }

  /** Once, after start resolved and before close: the caller closes and starts anew. */
  private lose(error: Error) {
    const onLost = this.onLost;
    if (this.state !== 'started' || !onLost) return;
    this.onLost = undefined;
    const lost = () =>
      onLost(error instanceof ConfigError ? error : this.unavailable('lost the consumer', error));
    // A committed offset the partition no longer holds (retention deleted what was not
    // read yet, or an offset set past the end): every start would fetch from it and be
    // refused again, on every partition. Moved to where the partition's messages are,
    // saying what that skips, before the consumer starts anew.
    if (findProtocolError(error)?.apiId === 'OFFSET_OUT_OF_RANGE') {
      void withTimeout(this.moveOutOfRangeOffsets(), this.settings.timeoutMs)
        .catch((repairError: unknown) =>
          this.options.logger.warn(
            {
              location: this.location,
              consumer: this.options.consumer,
              err: describeError(repairError),
            },
            'kafka: could not move the offsets out of range; starting again',
          ),
        )
        .finally(lost);
      return;
    }
    lost();
  }

  /**
   * Commits, for each partition of the topics whose committed offset is out of its range,
   * its first offset (when the offset is below it: the messages between were deleted
   * unread) or its end (when past it), and warns with what is skipped.
   */
  private async moveOutOfRangeOffsets(): Promise<void> {
    const consumer = this.consumer;
    if (!consumer) return;
    const topics = sourceTopics(this.settings.topicTemplate, this.options.events);
    const latest = await consumer.listOffsets({ topics });
    const earliest = await consumer.listOffsets({ topics, timestamp: -2n });
    const committed = await consumer.listCommittedOffsets({
      topics: [...latest].map(([topic, ends]) => ({ topic, partitions: ends.map((_, p) => p) })),
    });
    const moves: { topic: string; partition: number; offset: bigint; leaderEpoch: number }[] = [];
    for (const [topic, ends] of latest) {
      ends.forEach((end, partition) => {
        const done = committed.get(topic)?.[partition] ?? -1n;
        const first = earliest.get(topic)?.[partition] ?? 0n;
        if (done < 0n || (done >= first && done <= end)) return;
        const offset = done < first ? first : end;
        moves.push({ topic, partition, offset, leaderEpoch: -1 });
        this.options.logger.warn(
          {
            location: this.location,
            consumer: this.options.consumer,
            topic,
            partition,
            committed: String(done),
            earliest: String(first),
            end: String(end),
          },
          done < first
            ? `kafka: ${first - done} messages of ${topic} partition ${partition} were deleted before this consumer read them (retention, or records deleted): its events are not applied here; going on from offset ${first}`
            : `kafka: the committed offset ${done} of ${topic} partition ${partition} is past its end (${end}), as when an offset was set by hand or the topic made anew: going on from ${end}`,
        );
      });
    }
    if (moves.length > 0) await consumer.commit({ offsets: moves });
  }

  private async startError(error: unknown): Promise<Error> {
    if (error instanceof ConfigError || error instanceof BrokerUnavailableError) return error;
    const refused = await refusedSettingsError(error, this.settings);
    if (refused) return refused;
    const refusal = findProtocolError(error);
    // The other process took the name back between this one's join and its sync: starting
    // again would fence it in turn.
    const name = this.settings.groupInstanceId;
    if (name && refusal?.apiId === 'FENCED_INSTANCE_ID') return this.fencedError(name, error);
    if (refusal?.apiId && refusals.has(refusal.apiId) && !isUnavailable(error)) {
      // The group is the consumer's name, not in the URL: the message names it.
      const what =
        refusal.apiId === 'GROUP_AUTHORIZATION_FAILED'
          ? `this user may not read consumer group "${this.options.consumer}" (${reason(refusal)}); grant it READ on the group`
          : reason(refusal);
      return new ConfigError(this.settings.setting, `${this.location}: ${what}`, {
        cause: error,
      });
    }
    return this.unavailable('cannot start consuming', error);
  }

  private unavailable(what: string, error: unknown): BrokerUnavailableError {
    if (error instanceof BrokerUnavailableError) return error;
    return new BrokerUnavailableError(`${this.location}: ${what}: ${describeError(error)}`, {
      cause: error,
    });
  }
}
