/**
 * A TCP forwarder for outage tests: the code under test connects through it, so stopping
 * it is a network outage (connections cut, new ones refused) without touching the shared
 * server. Independent consumers connect to the server directly.
 */
import net from 'node:net';

/** Which way data goes: from the code under test to the server, or back. */
export type Direction = 'to-server' | 'to-client';

export interface TcpProxy {
  /** The local port, stable across stop() and start(). */
  readonly port: number;
  /** Stops listening and cuts every open connection. */
  stop(): Promise<void>;
  /** Listens again on the same port. No-op when running. */
  start(): Promise<void>;
  /**
   * Holds data going one way (default: both) without closing anything: a silent network.
   * Held data is delivered on thaw().
   */
  freeze(direction?: Direction): void;
  /** Lets held data flow again, both ways. */
  thaw(): void;
  /**
   * Holds every open connection both ways for good, while new ones flow: a network that
   * went silent (a failover to another address, a host cut off), whose connections the
   * code under test must give up on by itself. Neither side hears anything of the other
   * again, even a close. Returns the local ports of the server-side sockets (the server's
   * `client_port`).
   */
  strand(): number[];
  /**
   * Reads the code under test has sent so far, over all its connections: a client that
   * waits for each answer before it writes again sends one per round trip.
   */
  readonly writesToServer: number;
}

export interface TcpProxyTarget {
  host: string;
  port: number;
}

interface SocketPair {
  client: net.Socket;
  upstream: net.Socket;
}

function ends(pair: SocketPair, direction: Direction): [net.Socket, net.Socket] {
  return direction === 'to-server' ? [pair.client, pair.upstream] : [pair.upstream, pair.client];
}

function flow(pair: SocketPair, direction: Direction): void {
  const [from, to] = ends(pair, direction);
  from.pipe(to);
}

/** Unpiped and paused, a socket stops reading: data waits in the kernel buffers. */
function hold(pair: SocketPair, direction: Direction): void {
  const [from, to] = ends(pair, direction);
  from.unpipe(to);
  from.pause();
}

const directions: readonly Direction[] = ['to-server', 'to-client'];

export async function startTcpProxy(target: TcpProxyTarget): Promise<TcpProxy> {
  const pairs = new Set<SocketPair>();
  /** Stranded pairs, destroyed by stop(). */
  const stranded = new Set<SocketPair>();
  const frozen = new Set<Direction>();
  let server: net.Server | undefined;
  let port = 0;
  let writesToServer = 0;

  const forward = (client: net.Socket) => {
    const pair = { client, upstream: net.connect(target.port, target.host) };
    pairs.add(pair);
    client.on('data', () => writesToServer++);
    const cut = () => {
      pair.client.destroy();
      pair.upstream.destroy();
      pairs.delete(pair);
    };
    for (const socket of [pair.client, pair.upstream]) {
      socket.on('error', cut);
      socket.on('close', cut);
    }
    for (const direction of directions) if (!frozen.has(direction)) flow(pair, direction);
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const next = net.createServer(forward);
      next.once('error', reject);
      next.listen(port, '127.0.0.1', () => {
        const address = next.address();
        if (address && typeof address === 'object') port = address.port;
        server = next;
        resolve();
      });
    });

  await listen();
  return {
    get port() {
      return port;
    },
    get writesToServer() {
      return writesToServer;
    },
    async stop() {
      const closing = server;
      server = undefined;
      for (const pair of stranded) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      stranded.clear();
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
      if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
    },
    async start() {
      if (!server) await listen();
    },
    freeze(direction) {
      for (const d of direction ? [direction] : directions) {
        if (frozen.has(d)) continue;
        frozen.add(d);
        for (const pair of pairs) hold(pair, d);
      }
    },
    thaw() {
      for (const d of frozen) for (const pair of pairs) flow(pair, d);
      frozen.clear();
    },
    strand() {
      const ports: number[] = [];
      for (const pair of pairs) {
        for (const d of directions) if (!frozen.has(d)) hold(pair, d);
        for (const socket of [pair.client, pair.upstream]) {
          socket.removeAllListeners('close');
          socket.removeAllListeners('error');
          socket.on('error', () => {});
        }
        if (pair.upstream.localPort !== undefined) ports.push(pair.upstream.localPort);
        pairs.delete(pair);
        stranded.add(pair);
      }
      return ports;
    },
  };
}
