/**
 * Why a listener refuses this client, asked directly with one connection of our own that
 * sends an ApiVersions request (allowed before SASL).
 *
 * - In TLS 1.3 the server checks the client's certificate only after the handshake has
 *   completed on the client's side, so its refusal (an alert: certificate required, bad
 *   certificate, unknown CA) reaches the client library as a socket error it does not pass
 *   on: the library's first request just fails with "connection closed", as when a broker
 *   goes away. Asked over TLS with the same options, the refusal comes back with its code.
 * - A listener of the other kind (TLS asked of a PLAINTEXT listener, or plain text of an
 *   SSL one) just closes the connection, which looks like an outage too. Asked both ways,
 *   it answers only the way it speaks.
 */
import { isIP, Socket } from 'node:net';
import { type ConnectionOptions, connect } from 'node:tls';
import type { KafkaTls } from './settings.js';

const CORRELATION_ID = 1;

/** ApiVersions v0: size, api key 18, version 0, correlation id, client id. */
function apiVersionsRequest(clientId: string): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const body = Buffer.alloc(10 + id.length);
  body.writeInt16BE(18, 0);
  body.writeInt16BE(0, 2);
  body.writeInt32BE(CORRELATION_ID, 4);
  body.writeInt16BE(id.length, 8);
  id.copy(body, 10);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);
  return Buffer.concat([size, body]);
}

/** What one probe saw. */
export type Probed =
  /** The listener answered the request: it speaks the way it was asked. */
  | { answered: true }
  /**
   * It ended the connection with this error, or closed it without a word (none); `opened`
   * when the connection was set up first (TCP connected, and the TLS handshake completed).
   */
  | { answered: false; error: Error | undefined; opened: boolean };

function hostAndPort(server: string): { host: string; port: number } {
  const separator = server.lastIndexOf(':');
  return {
    host: server.slice(0, separator).replace(/^\[(.*)\]$/, '$1'),
    port: Number(server.slice(separator + 1)),
  };
}

/**
 * Sends ApiVersions to `server` (`host:port`) over TLS with `tls`, or in plain text
 * without; undefined when nothing comes within `timeoutMs`, as from a server that is
 * unreachable or too busy to tell.
 */
function probe(
  server: string,
  tls: ConnectionOptions | undefined,
  clientId: string,
  timeoutMs: number,
): Promise<Probed | undefined> {
  const { host, port } = hostAndPort(server);
  return new Promise((resolve) => {
    let opened = false;
    // With SNI for a host name, as the client sends it (client-options.ts).
    const socket = tls
      ? connect({ host, port, ...tls, ...(isIP(host) ? {} : { servername: host }) })
      : new Socket().connect({ host, port });
    const done = (probed: Probed | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(probed);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const send = () => {
      opened = true;
      socket.write(apiVersionsRequest(clientId));
    };
    socket.once(tls ? 'secureConnect' : 'connect', send);
    // A Kafka answer: its size, then our correlation id. Anything else (a TLS alert from
    // an SSL listener sent plain text) is no answer.
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 8) return;
      const kafka = received.readInt32BE(0) > 0 && received.readInt32BE(4) === CORRELATION_ID;
      done(kafka ? { answered: true } : { answered: false, error: undefined, opened });
    });
    socket.once('error', (error) => done({ answered: false, error, opened }));
    socket.once('close', () => done({ answered: false, error: undefined, opened }));
  });
}

/**
 * The error with which `server` ends a TLS connection made with `tls`, or undefined when
 * it answers, closes without one, or nothing comes within `timeoutMs`.
 */
export async function probeTls(
  server: string,
  tls: KafkaTls,
  clientId: string,
  timeoutMs: number,
): Promise<Error | undefined> {
  const probed = await probe(server, tls, clientId, timeoutMs);
  return probed?.answered === false ? probed.error : undefined;
}

/**
 * Whether `server` speaks the other way than the URL says: 'plain' when TLS was asked and
 * fails before its handshake completes while a plain-text request is answered; 'tls' when
 * plain text was asked and is not answered while a TLS handshake completes (with any
 * certificate: the question is only the listener's kind). Undefined otherwise — a server
 * down or restarting answers neither way.
 */
export async function probeListenerKind(
  server: string,
  tls: KafkaTls | undefined,
  clientId: string,
  timeoutMs: number,
): Promise<'plain' | 'tls' | undefined> {
  const asked = await probe(server, tls, clientId, timeoutMs);
  if (!asked || asked.answered) return undefined;
  if (tls) {
    // A TLS listener that refuses us does so after or during a handshake it answers.
    if (asked.opened) return undefined;
    const plain = await probe(server, undefined, clientId, timeoutMs);
    return plain?.answered ? 'plain' : undefined;
  }
  // Connected, and closed on our request: a TLS listener does so, a server stopping too.
  if (!asked.opened) return undefined;
  const other = await probe(server, { rejectUnauthorized: false }, clientId, timeoutMs);
  return other && (other.answered || other.opened) ? 'tls' : undefined;
}
