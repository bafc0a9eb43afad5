/**
 * Why a TLS listener refuses this client, asked directly. In TLS 1.3 the server checks the
 * client's certificate only after the handshake has completed on the client's side, so
 * its refusal (an alert: certificate required, bad certificate, unknown CA) reaches the
 * client library as a socket error it does not pass on: the library's first request just
 * fails with "connection closed", as when a broker goes away. One connection of our own,
 * with the same TLS options, sends an ApiVersions request (allowed before SASL): an answer
 * means TLS is not what fails; a TLS error comes back with its code.
 */
import { isIP } from 'node:net';
import { connect } from 'node:tls';
import type { KafkaTls } from './settings.js';

/** ApiVersions v0: size, api key 18, version 0, correlation id, client id. */
function apiVersionsRequest(clientId: string): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const body = Buffer.alloc(10 + id.length);
  body.writeInt16BE(18, 0);
  body.writeInt16BE(0, 2);
  body.writeInt32BE(1, 4);
  body.writeInt16BE(id.length, 8);
  id.copy(body, 10);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);
  return Buffer.concat([size, body]);
}

/**
 * The error with which `server` (`host:port`) ends a TLS connection made with `tls`, or
 * undefined when it answers, or nothing comes within `timeoutMs`.
 */
export function probeTls(
  server: string,
  tls: KafkaTls,
  clientId: string,
  timeoutMs: number,
): Promise<Error | undefined> {
  const separator = server.lastIndexOf(':');
  const host = server.slice(0, separator).replace(/^\[(.*)\]$/, '$1');
  const port = Number(server.slice(separator + 1));
  return new Promise((resolve) => {
    // With SNI for a host name, as the client sends it (client-options.ts).
    const socket = connect({ host, port, ...tls, ...(isIP(host) ? {} : { servername: host }) });
    const done = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(error);
    };
    const timer = setTimeout(() => done(), timeoutMs);
    socket.once('secureConnect', () => socket.write(apiVersionsRequest(clientId)));
    socket.once('data', () => done());
    socket.once('error', (error) => done(error));
    socket.once('close', () => done());
  });
}
