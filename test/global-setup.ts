/**
 * Before any test file: the Kafka the broker tests need is this repository's own
 * (scripts/kafka/kafka.sh), so `npm test` starts it when nothing answers on its port.
 * PostgreSQL, NATS and RabbitMQ are machine services; a test that finds one down fails
 * with its connection error (DEVELOPERS.md has the commands that start them).
 */
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

export default async function setup(): Promise<void> {
  if (await answers(9092)) return;
  const script = fileURLToPath(new URL('../scripts/kafka/kafka.sh', import.meta.url));
  execFileSync('bash', [script, 'start'], { stdio: 'inherit' });
}
