/**
 * A Kafka of the test file's own (so its outages stop nobody else's server), and an
 * independent consumer: @platformatic/kafka's Consumer plus the official cloudevents SDK's
 * Kafka binding, none of this project's code.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Admin, Consumer, type MessagesStream, stringDeserializers } from '@platformatic/kafka';
import { CloudEvent, Kafka, type KafkaMessage } from 'cloudevents';
import type { ReceivedMessage } from '../brokers/conformance.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../..', import.meta.url));

/** A Kafka of the tests' own: its work dir and ports. */
export interface KafkaInstance {
  home: string;
  port: number;
  controllerPort: number;
  /** More of kafka.sh's variables (KAFKA_EXTRA_LISTENERS, KAFKA_LIBS_DIR, …). */
  env?: Record<string, string>;
}

/**
 * A Kafka from this repository's script with storage under .kafka/<name> (git-ignored,
 * reused between runs), listening on `port` and its controller on `port + 1`. Fixed ports
 * sit below the kernel's ephemeral range (32768 and up), where a client socket of another
 * test could hold them when the instance starts.
 */
export function kafkaInstance(name: string, port: number): KafkaInstance & { bootstrap: string } {
  return {
    home: `${repo}.kafka/${name}`,
    port,
    controllerPort: port + 1,
    bootstrap: `127.0.0.1:${port}`,
  };
}

/** The second Kafka, which the outage tests stop and start; not the shared one on 9092. */
export const testKafka = kafkaInstance('outage', 19092);

/** `scripts/kafka/kafka.sh start|stop|install` for a Kafka of the tests' own (the test Kafka by default). */
export async function testKafkaScript(
  command: 'start' | 'stop' | 'install',
  instance: KafkaInstance = testKafka,
): Promise<void> {
  try {
    await run('bash', [`${repo}scripts/kafka/kafka.sh`, command], {
      timeout: 180_000,
      env: {
        ...process.env,
        KAFKA_HOME_DIR: instance.home,
        KAFKA_PORT: String(instance.port),
        KAFKA_CONTROLLER_PORT: String(instance.controllerPort),
        ...instance.env,
      },
    });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`kafka.sh ${command} failed:\n${stdout ?? ''}${stderr ?? ''}`, {
      cause: error,
    });
  }
}

/** A name no other test (or earlier run) uses: starts with a letter, legal in topics and groups. */
export function uniqueName(prefix = 't'): string {
  return `${prefix}${randomBytes(5).toString('hex')}`;
}

/**
 * An admin client of `bootstrap` (`host:port`, or several of a cluster separated by
 * commas): by default the test Kafka, not the shared one on 9092.
 */
export function testAdmin(bootstrap: string = testKafka.bootstrap): Admin {
  return new Admin({
    clientId: 'edupulse-test-admin',
    bootstrapBrokers: bootstrap.split(','),
    retries: 3,
    retryDelay: 250,
  });
}

/** Deletes every topic and consumer group whose name starts with `prefix` (on `bootstrap`). */
export async function deleteTestResources(
  prefix: string,
  bootstrap: string = testKafka.bootstrap,
  { untilGone = false } = {},
): Promise<void> {
  const admin = testAdmin(bootstrap);
  try {
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(prefix));
    if (topics.length > 0) {
      await admin.deleteTopics({ topics });
      // Kafka answers once its controller has recorded the deletion; the broker applies it
      // a moment later, and until then still takes records sent to those topics. (Not by
      // default: a publisher still running may create them again.)
      if (untilGone)
        await waitFor(
          'the deleted topics to be gone',
          async () => !(await admin.listTopics()).some((topic) => topics.includes(topic)),
          { intervalMs: 100 },
        );
    }
    const groups = [...(await admin.listGroups()).keys()].filter((id) => id.startsWith(prefix));
    if (groups.length > 0) await admin.deleteGroups({ groups }).catch(() => {});
  } finally {
    await admin.close();
  }
}

/** One record as read, with the partition and key the outbox does not report. */
export interface ConsumedRecord {
  topic: string;
  partition: number;
  /** Its offset in the partition: a record read twice (the reader restarted) has the same. */
  offset: bigint;
  key: string;
  headers: Record<string, string>;
  value: string;
}

export interface KafkaTestConsumer {
  /** What the conformance suite checks, in the order read. */
  readonly received: ReceivedMessage[];
  readonly records: ConsumedRecord[];
  /** Each record as the cloudevents SDK read it. */
  readonly events: CloudEvent<unknown>[];
  /** Records the SDK refused as CloudEvents, with its reason. */
  readonly invalid: string[];
  /** Stops reading; fails if the SDK refused a record, which `received` leaves out. */
  close(): Promise<void>;
}

/**
 * Reads `topics` from the earliest offset, on `bootstrap` (default: the test Kafka). It
 * waits for a topic the outbox has not created yet, and starts again (in a new group, so no
 * member of the old one is waited for) when a server outage ends its stream: what it reads
 * twice, the suite takes as redelivery.
 */
export function consumeTestTopics(
  topics: string[],
  groupPrefix: string,
  bootstrap: string = testKafka.bootstrap,
): KafkaTestConsumer {
  const state = {
    received: [] as ReceivedMessage[],
    records: [] as ConsumedRecord[],
    events: [] as CloudEvent<unknown>[],
    invalid: [] as string[],
  };
  let closed = false;
  let current:
    | {
        consumer: Consumer<string, string, string, string>;
        stream?: MessagesStream<string, string, string, string>;
      }
    | undefined;

  const onRecord = (record: ConsumedRecord) => {
    state.records.push(record);
    try {
      const kafkaMessage: KafkaMessage<string> = {
        key: record.key,
        value: record.value,
        headers: record.headers,
        body: record.value,
      };
      const event = Kafka.toEvent(kafkaMessage);
      if (!(event instanceof CloudEvent)) throw new Error('not one binary-mode CloudEvent');
      event.validate();
      state.events.push(event);
    } catch (error) {
      state.invalid.push(`${record.headers.ce_id}: ${String(error)}`);
      return;
    }
    state.received.push(toReceived(record));
  };

  const once = async (generation: number) => {
    const consumer = new Consumer({
      clientId: 'edupulse-test-consumer',
      groupId: `${groupPrefix}-${generation}`,
      bootstrapBrokers: bootstrap.split(','),
      deserializers: stringDeserializers,
      maxWaitTime: 500,
      sessionTimeout: 10_000,
      rebalanceTimeout: 10_000,
      heartbeatInterval: 500,
      retries: 2,
      retryDelay: 250,
    });
    current = { consumer };
    // Heartbeat failures while the server is down: the stream's end restarts us.
    consumer.on('error', () => {});
    try {
      const stream = await consumer.consume({ topics, mode: 'earliest' });
      current.stream = stream;
      await new Promise<void>((resolve) => {
        stream.on('data', (message) =>
          onRecord({
            topic: message.topic,
            partition: message.partition,
            offset: message.offset,
            key: message.key,
            headers: Object.fromEntries(message.headers),
            value: message.value,
          }),
        );
        stream.once('error', () => resolve());
        stream.once('close', () => resolve());
      });
    } catch {
      // The topic does not exist yet, or the server is down: try again shortly.
    } finally {
      await forceClose(consumer);
    }
  };

  const loop = (async () => {
    for (let generation = 0; !closed; generation++) {
      await once(generation);
      if (!closed) await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();

  return {
    ...state,
    async close() {
      closed = true;
      await current?.stream?.close().catch(() => {});
      if (current) await forceClose(current.consumer);
      await loop;
      if (state.invalid.length > 0) {
        throw new Error(`not valid CloudEvents:\n${state.invalid.join('\n')}`);
      }
    },
  };
}

function toReceived(record: ConsumedRecord): ReceivedMessage {
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(record.headers)) {
    if (name.startsWith('ce_')) attributes[name.slice('ce_'.length)] = value;
  }
  return {
    dedupId: record.headers.ce_id ?? '',
    attributes,
    contentType: record.headers['content-type'] ?? '',
    body: record.value,
  };
}

/** Closes a consumer and its streams, whatever state the server left it in. */
function forceClose(consumer: Consumer<string, string, string, string>): Promise<void> {
  // The callback form: the promise overload is not picked for close(true).
  return new Promise((resolve) => consumer.close(true, () => resolve()));
}
