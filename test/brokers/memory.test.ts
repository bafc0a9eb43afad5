import { binaryModeHeaders, bindingPrefix } from '../../src/brokers/cloudevents.js';
import { MemoryBroker } from '../../src/brokers/memory.js';
import { BrokerUnavailableError } from '../../src/common/errors.js';
import { badInputSuite } from './bad-input.js';
import { type BrokerHarness, brokerConformance, type ReceivedMessage } from './conformance.js';

// The memory broker "server": one list of accepted messages, a switch for outages and a
// size limit standing in for a server's maximum message size.
const MAX_BYTES = 10_000;

const harness: BrokerHarness = {
  name: 'memory',
  async target() {
    let down = false;
    const accepted: ReceivedMessage[] = [];
    const consumers = new Set<ReceivedMessage[]>();
    const brokers: MemoryBroker[] = [];
    return {
      broker() {
        const broker = new MemoryBroker({
          onCheck() {
            if (down) throw new BrokerUnavailableError('memory server is down');
          },
          onPublish(message) {
            if (down) throw new BrokerUnavailableError('memory server is down');
            if (message.payload.length > MAX_BYTES) {
              return {
                ok: false,
                error: `message of ${message.payload.length} bytes exceeds ${MAX_BYTES}`,
                permanent: true,
              };
            }
            const headers = binaryModeHeaders(message, '/edupulse', bindingPrefix.nats);
            const attributes = Object.fromEntries(
              Object.entries(headers)
                .filter(([name]) => name.startsWith(bindingPrefix.nats))
                .map(([name, value]) => [name.slice(bindingPrefix.nats.length), value]),
            );
            const received = {
              dedupId: message.id,
              attributes,
              contentType: headers['content-type'] ?? '',
              body: message.payload,
            };
            accepted.push(received);
            for (const list of consumers) list.push(received);
            return undefined;
          },
        });
        const connect = broker.connect.bind(broker);
        broker.connect = async () => {
          if (down) throw new BrokerUnavailableError('memory server is down');
          await connect();
        };
        brokers.push(broker);
        return broker;
      },
      async consume() {
        const received: ReceivedMessage[] = [];
        consumers.add(received);
        return { received, close: async () => void consumers.delete(received) };
      },
      refused: {
        aggregateType: 'lesson',
        payload: JSON.stringify({ blob: 'x'.repeat(MAX_BYTES + 1) }),
        reason: /exceeds 10000/,
      },
      outage: {
        async stop() {
          down = true;
        },
        async start() {
          down = false;
        },
      },
      async cleanup() {},
    };
  },
};

brokerConformance(harness);
badInputSuite(harness);
