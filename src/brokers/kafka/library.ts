import type { MessageToProduce, Producer, Serializers } from '@platformatic/kafka';

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

export function loadedLibrary(): KafkaLibrary {
  if (!library) throw new Error('the Kafka client library is not loaded (connect first)');
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
