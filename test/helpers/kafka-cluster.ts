/**
 * A private 3-node Kafka cluster (KRaft, each node broker and controller) from this
 * repository's script (scripts/kafka/kafka.sh), in a scratch directory on free ports,
 * beside the shared Kafka on 9092 which it leaves alone. Replicated as a production
 * cluster is: 3 replicas by default, `min.insync.replicas=2`, internal topics likewise.
 *
 * Each node is one kafka.sh work dir. The script writes a single-node configuration; the
 * lines appended from KAFKA_EXTRA_CONFIG come later in the file, and a later key wins in
 * a Java properties file, so they make it node N of a 3-voter quorum. The three storages
 * are formatted with one cluster id: the script takes it from its work dir's `cluster-id`
 * file, written here first.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../scripts/free-port.mjs';
import { testKafkaScript } from './kafka.js';

const repoKafka = fileURLToPath(new URL('../../.kafka', import.meta.url));

export interface KafkaNode {
  /** The node id (1, 2, 3), as metadata names partition leaders. */
  readonly id: number;
  /** `127.0.0.1:<port>` of its client listener. */
  readonly bootstrap: string;
  /** The JVM's process id, while it runs. */
  readonly pid: number | undefined;
  /** SIGKILL: a crash, nothing handed over; resolves once the process is gone. */
  kill(): Promise<void>;
}

export interface PrivateKafkaCluster {
  readonly nodes: readonly KafkaNode[];
  /** Every node's client address, comma separated. */
  readonly bootstrap: string;
  byId(id: number): KafkaNode | undefined;
  /** Kills every node still running and removes the directory. */
  destroy(): Promise<void>;
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (what StorageTool prints). */
/** Like Kafka's own random ids: never one that starts with '-', which a command line reads as an option. */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startKafkaCluster(size = 3): Promise<PrivateKafkaCluster> {
  // The jars of the repository's own Kafka work dir (fetched there once, under its lock).
  await testKafkaScript('install', { home: repoKafka, port: 9092, controllerPort: 9093 });

  const dir = mkdtempSync(join(tmpdir(), 'edupulse-kafka-cluster-'));
  const ports = new Set<number>();
  while (ports.size < 2 * size) ports.add(await freePort());
  const free = [...ports];
  const ids = Array.from({ length: size }, (_, i) => i + 1);
  const port = (id: number) => free[2 * (id - 1)] as number;
  const controllerPort = (id: number) => free[2 * (id - 1) + 1] as number;
  const voters = ids.map((id) => `${id}@127.0.0.1:${controllerPort(id)}`).join(',');
  const id = clusterId();
  const replicas = Math.min(size, 3);
  const minIsr = Math.max(1, replicas - 1);

  const instances = ids.map((node) => {
    const home = join(dir, `node${node}`);
    mkdirSync(home);
    writeFileSync(join(home, 'cluster-id'), `${id}\n`);
    const config = join(home, 'cluster.properties');
    writeFileSync(
      config,
      [
        `node.id=${node}`,
        `controller.quorum.voters=${voters}`,
        `num.partitions=${size}`,
        `default.replication.factor=${replicas}`,
        `min.insync.replicas=${minIsr}`,
        `offsets.topic.replication.factor=${replicas}`,
        `transaction.state.log.replication.factor=${replicas}`,
        `transaction.state.log.min.isr=${minIsr}`,
        `share.coordinator.state.topic.replication.factor=${replicas}`,
        `share.coordinator.state.topic.min.isr=${minIsr}`,
        '',
      ].join('\n'),
    );
    return {
      node,
      home,
      port: port(node),
      controllerPort: controllerPort(node),
      env: {
        KAFKA_LIBS_DIR: join(repoKafka, 'libs'),
        KAFKA_EXTRA_CONFIG: config,
        // Three JVMs beside the shared Kafka on a 2-core box: a small heap each.
        KAFKA_HEAP_OPTS: '-Xms128m -Xmx512m',
        KAFKA_START_TIMEOUT: '150',
      },
    };
  });

  const pidOf = (home: string): number | undefined => {
    try {
      const pid = Number(readFileSync(join(home, 'kafka.pid'), 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const killAll = () => {
    for (const instance of instances) {
      const pid = pidOf(instance.home);
      if (pid) process.kill(pid, 'SIGKILL');
    }
  };
  // kafka.sh starts the JVMs in sessions of their own: not left running if the test
  // process dies without its afterAll.
  process.once('exit', killAll);

  const destroy = async () => {
    process.off('exit', killAll);
    // A scratch cluster whose data is removed next: no clean shutdown to wait for.
    killAll();
    for (const instance of instances) {
      while (pidOf(instance.home)) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    rmSync(dir, { recursive: true, force: true });
  };

  // All at once: a node serves clients only once a majority of the voters is up.
  try {
    await Promise.all(instances.map((instance) => testKafkaScript('start', instance)));
  } catch (error) {
    await destroy();
    throw error;
  }

  const nodes: KafkaNode[] = instances.map((instance) => ({
    id: instance.node,
    bootstrap: `127.0.0.1:${instance.port}`,
    get pid() {
      return pidOf(instance.home);
    },
    async kill() {
      const pid = pidOf(instance.home);
      if (!pid) return;
      process.kill(pid, 'SIGKILL');
      while (alive(pid)) await new Promise((resolve) => setTimeout(resolve, 50));
    },
  }));
  return {
    nodes,
    bootstrap: nodes.map((node) => node.bootstrap).join(','),
    byId: (node) => nodes.find((candidate) => candidate.id === node),
    destroy,
  };
}
