import { afterAll, beforeAll, expect, it } from 'vitest';
import { MemoryBroker } from '../src/brokers/memory.js';
import { ConfigError } from '../src/errors.js';
import { createDispatcher } from '../src/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';

let t: TestSchema;
beforeAll(async () => {
  t = await createPgTestSchema('fatal');
});
afterAll(async () => {
  await t?.drop();
});

it('stops with a fatal event when the broker refuses its configuration, instead of retrying forever', async () => {
  const broker = new MemoryBroker();
  let connects = 0;
  broker.connect = async () => {
    connects++;
    throw new ConfigError('broker', 'stream "S" exists but does not capture "p.*.*"');
  };
  const d = createDispatcher({ db: t.db, broker, schema: t.schema, retryBaseDelayMs: 10 });
  const fatal = new Promise<Error>((resolve) => d.once('fatal', resolve));
  await d.start();
  const error = await fatal;
  expect(error).toBeInstanceOf(ConfigError);
  expect(error.message).toContain('does not capture');
  await d.stop();
  expect(connects).toBe(1);
});
