import { setTimeout as sleep } from 'node:timers/promises';
import { Admin, Consumer, stringDeserializers } from '@platformatic/kafka';
import { kafkaSettings } from 'edupulse-outbox';

/**
 * Topics of one benchmark run on the bench's Kafka, with what a comparison of publishers
 * reads from the broker itself: how many records a topic holds, and when the broker
 * appended them. Topics are created with `message.timestamp.type = LogAppendTime`, so each
 * record's timestamp is the broker's clock when it was written, whoever produced it.
 */
export class BenchTopics {
  readonly bootstrapServers: string[];
  private readonly admin: Admin;
  private readonly created: string[] = [];
  private readonly groups: string[] = [];

  constructor(kafkaUrl: string) {
    this.bootstrapServers = kafkaSettings(kafkaUrl, 'kafka-url').bootstrapServers;
    this.admin = new Admin({ clientId: 'edupulse-bench', bootstrapBrokers: this.bootstrapServers });
  }

  /** Fails (with the client's error) when the Kafka cannot be reached. */
  async check(): Promise<void> {
    await this.admin.listTopics();
  }

  /** 3 partitions (our adapter's default), 1 replica, broker-side timestamps. */
  async create(topic: string, partitions = 3): Promise<void> {
    await this.admin.createTopics({
      topics: [topic],
      partitions,
      replicas: 1,
      configs: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }],
    });
    this.created.push(topic);
    // Metadata settles on the broker before anyone produces.
    await this.admin.metadata({ topics: [topic] });
  }

  /** Records in `topic`: the sum of its partitions' end offsets. */
  async count(topic: string, partitions = 3): Promise<number> {
    const [listed] = await this.admin.listOffsets({
      topics: [
        {
          name: topic,
          partitions: Array.from({ length: partitions }, (_, partitionIndex) => ({
            partitionIndex,
            timestamp: -1n, // latest
          })),
        },
      ],
    });
    return (listed?.partitions ?? []).reduce((sum, p) => sum + Number(p.offset), 0);
  }

  /** Polls `count` every `intervalMs` until the topic holds `expected` records. */
  async waitForCount(
    topic: string,
    expected: number,
    options: { intervalMs?: number; timeoutMs?: number; onPoll?: () => Promise<void> | void } = {},
  ): Promise<void> {
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    for (;;) {
      const count = await this.count(topic);
      await options.onPoll?.();
      if (count >= expected) return;
      if (Date.now() > deadline) {
        throw new Error(`${topic} holds ${count} of ${expected} records after the time allowed`);
      }
      await sleep(options.intervalMs ?? 100);
    }
  }

  /**
   * Reads `expected` records of `topic` from the start: the first and last append times
   * (ms, the broker's clock) and how many distinct event ids `idOf` found in them.
   */
  async appended(
    topic: string,
    expected: number,
    idOf: (headers: Map<string, string>) => string | undefined,
  ): Promise<{ firstMs: number; lastMs: number; distinct: number; read: number }> {
    const groupId = `edupulse-bench-read-${topic}`;
    this.groups.push(groupId);
    const consumer = new Consumer({
      clientId: 'edupulse-bench',
      groupId,
      bootstrapBrokers: this.bootstrapServers,
      deserializers: stringDeserializers,
      maxWaitTime: 500,
      autocommit: false,
    });
    const ids = new Set<string>();
    let firstMs = Number.POSITIVE_INFINITY;
    let lastMs = 0;
    let read = 0;
    try {
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest' });
      const timer = setTimeout(() => stream.close(), 300_000);
      try {
        for await (const message of stream) {
          read++;
          const at = Number(message.timestamp);
          firstMs = Math.min(firstMs, at);
          lastMs = Math.max(lastMs, at);
          const id = idOf(message.headers);
          if (id !== undefined) ids.add(id);
          if (read >= expected) break;
        }
      } finally {
        clearTimeout(timer);
        await stream.close().catch(() => {});
      }
    } finally {
      // The callback form: the promise overload is not picked for close(true).
      await new Promise<void>((resolve) => consumer.close(true, () => resolve()));
    }
    return { firstMs, lastMs, distinct: ids.size, read };
  }

  /** A consumer group this run made elsewhere, to delete with the topics. */
  own(groupId: string): void {
    this.groups.push(groupId);
  }

  /** Deletes every topic and consumer group of the run, and closes the client. */
  async close(): Promise<void> {
    try {
      if (this.created.length > 0) await this.admin.deleteTopics({ topics: this.created });
      if (this.groups.length > 0) {
        await this.admin.deleteGroups({ groups: this.groups }).catch(() => {});
      }
    } finally {
      await this.admin.close();
    }
  }
}
