/**
 * A private RabbitMQ cluster: `size` private nodes (rabbitmq-node.ts) on ports of their own,
 * beside the shared RabbitMQ on 5672 which it leaves alone. They share one Erlang cookie,
 * and each after the first joins the first (`stop_app`, `join_cluster`, `start_app`), as an
 * operator builds a cluster by hand; quorum queues declared on it then place a replica on
 * every member.
 */
import { randomBytes } from 'node:crypto';
import { type RabbitNode, type RabbitNodeOptions, startRabbitNode } from './rabbitmq-node.js';

export interface RabbitCluster {
  /** The members, the first being the one the others joined. */
  readonly nodes: readonly RabbitNode[];
  /** `user:password@127.0.0.1:<a>,127.0.0.1:<b>,…`: every member's plain AMQP listener. */
  readonly hosts: string;
  /** Stops every member still running and removes their directories. */
  destroy(): Promise<void>;
}

export async function startRabbitCluster(
  size: number,
  options: Pick<RabbitNodeOptions, 'user' | 'password'>,
): Promise<RabbitCluster> {
  const cookie = randomBytes(20).toString('hex').toUpperCase();
  const started = await Promise.allSettled(
    Array.from({ length: size }, () => startRabbitNode({ ...options, cookie })),
  );
  const nodes = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const destroy = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  try {
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    const [first, ...others] = nodes as [RabbitNode, ...RabbitNode[]];
    // One at a time: each join changes the membership the next one joins.
    for (const node of others) {
      await node.ctl(['stop_app']);
      await node.ctl(['join_cluster', first.name]);
      await node.ctl(['start_app']);
    }
    const status = JSON.parse(await first.ctl(['cluster_status', '--formatter', 'json'])) as {
      running_nodes: string[];
    };
    const running = status.running_nodes;
    if (running.length < size) {
      throw new Error(`RabbitMQ cluster: ${running.length} of ${size} nodes running`);
    }
  } catch (error) {
    await destroy();
    throw error;
  }
  return {
    nodes,
    hosts: `${options.user}:${options.password}@${nodes.map((node) => `127.0.0.1:${node.port}`).join(',')}`,
    destroy,
  };
}
