import {
  type AnyEventDefinition,
  type ConsumeOptions,
  type Consumer,
  consume,
} from '../../src/consumer/index.js';
import { ConfigError, type Database, LessonPublished, QuizSubmitted } from '../../src/index.js';

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

type QuizOptions = ConsumeOptions<readonly [typeof QuizSubmitted]>;

/** consume() of quiz-submitted events from `broker`, as consumer `name`, its inbox in `pg`. */
export function consumeQuizzes(
  broker: string,
  name: string,
  pg: { db: Database; schema: string },
  options: Omit<QuizOptions, 'broker' | 'consumer' | 'database' | 'schema' | 'events'>,
): Promise<Consumer> {
  return consume({
    broker,
    consumer: name,
    database: pg.db,
    schema: pg.schema,
    events: [QuizSubmitted],
    ...options,
  } as QuizOptions);
}

/**
 * The ConfigError consume() of lesson events, as consumer `name` on `broker`, rejects
 * with at start; fails the test if it starts instead (stopping it) or rejects otherwise.
 */
export async function startRefusal(
  broker: string,
  name: string,
  pg: { db: Database; schema: string },
): Promise<ConfigError> {
  const outcome = await consume({
    broker,
    consumer: name,
    database: pg.db,
    schema: pg.schema,
    events: [LessonPublished],
    handler: () => {},
  }).then(
    async (consumer) => {
      await consumer.stop();
      return new Error(`consume() as ${name} started`);
    },
    (error: unknown) => error,
  );
  if (outcome instanceof ConfigError) return outcome;
  throw outcome;
}
