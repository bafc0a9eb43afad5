// A service that embeds the dispatcher, on the built package (dist/), for the tests that
// need a process of their own (its stderr, its signals, its exit). Settings come from the
// environment: DATABASE_URL, SCHEMA. The first argument says what it does:
//   logs <default|false>  start and stop with the logger option left out, or `false`;
//   signals               stopOnSignals(), then wait for `closed` and close the database;
//   unobserved-fatal      a broker that refuses its configuration, with nobody awaiting
//                         `closed`: the process must go on and exit 0 by itself.
// stdout, one JSON object a line: {"started":true} once start() resolved, {"done":true} at the end.

import {
  ConfigError,
  createDispatcher,
  MemoryBroker,
  pgDatabase,
  stopOnSignals,
} from '../../dist/index.js';

const { DATABASE_URL, SCHEMA } = process.env;
const [mode, loggerOption] = process.argv.slice(2);
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const db = pgDatabase({ connectionString: DATABASE_URL });
const broker = new MemoryBroker();

if (mode === 'logs') {
  const dispatcher = createDispatcher({
    db,
    broker,
    schema: SCHEMA,
    ...(loggerOption === 'false' ? { logger: false } : {}),
  });
  await dispatcher.start();
  print({ started: true });
  await dispatcher.stop();
} else if (mode === 'signals') {
  const dispatcher = createDispatcher({ db, broker, schema: SCHEMA });
  stopOnSignals(dispatcher);
  await dispatcher.start();
  print({ started: true });
  await dispatcher.closed;
} else if (mode === 'unobserved-fatal') {
  broker.connect = async () => {
    throw new ConfigError('broker', 'stream "S" exists but does not capture "p.*.*"');
  };
  const dispatcher = createDispatcher({ db, broker, schema: SCHEMA, waitForBroker: false });
  const fatal = new Promise((resolve) => dispatcher.once('fatal', resolve));
  await dispatcher.start();
  print({ started: true });
  await fatal;
  // Long enough for `closed` to have rejected, unobserved.
  await new Promise((resolve) => setTimeout(resolve, 500));
} else {
  throw new Error(`unknown mode ${mode}`);
}
await db.close();
print({ done: true });
