import type {
  Base,
  ConnectionPoolEventPayload,
  MessageToProduce,
  Producer,
  Serializers,
} from '@platformatic/kafka';

export type KafkaProducer = Producer<string, string, Buffer, Buffer>;
export type KafkaRecord = MessageToProduce<string, string, Buffer, Buffer>;

export type KafkaLibrary = typeof import('@platformatic/kafka');
let library: KafkaLibrary | undefined;

/**
 * The client library, loaded on first connect: it is about half of a dispatcher's memory
 * at start, and a dispatcher publishing elsewhere never needs it.
 */
export async function kafkaLibrary(): Promise<KafkaLibrary> {
  library ??= await import('@platformatic/kafka');
  return library;
}

/** Header names and values arrive encoded (HeaderBytes): sent as they are. */
const encodedHeaders = (data?: Buffer) => data;
export const serializersOf = (lib: KafkaLibrary): Serializers<string, string, Buffer, Buffer> => ({
  key: lib.stringSerializer,
  value: lib.stringSerializer,
  headerKey: encodedHeaders,
  headerValue: encodedHeaders,
});

/**
 * Makes `client` safe from a connection's second 'error' event. @platformatic/kafka 1.35
 * emits 'error' on a connection once for its socket's error and again for the SASL
 * exchange that the closed socket ends, while its pool listens once: the second, heard by
 * nobody, would crash the process (seen when a TLS 1.3 listener refuses the client's
 * certificate during SASL, and possible whenever a broker drops a connection mid-SASL).
 * Every connection the client opens, or fails to open, gets a listener of ours; the
 * failure still reaches the caller through the request that needed the connection.
 */
export function guardConnections<T extends Pick<Base, 'on'>>(client: T): T {
  const guarded = new WeakSet<object>();
  const guard = ({ connection }: ConnectionPoolEventPayload) => {
    if (guarded.has(connection)) return;
    guarded.add(connection);
    connection.on('error', () => {});
  };
  client.on('client:broker:connect', guard);
  client.on('client:broker:failed', guard);
  return client;
}
