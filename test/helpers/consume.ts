import {
  type AnyEventDefinition,
  type ConsumeOptions,
  type Consumer,
  consume,
} from '../../src/consumer/index.js';

/** consume() with a handler that pushes each event's id onto `received`, in order. */
export function consumeIds<const Defs extends readonly AnyEventDefinition[]>(
  options: Omit<ConsumeOptions<Defs>, 'handler'>,
  received: string[],
): Promise<Consumer> {
  return consume({
    ...options,
    handler: (event) => {
      received.push(event.id);
    },
  } as ConsumeOptions<Defs>);
}
