import { Command } from 'commander';
import { brokerFromUrl } from '../../brokers/index.js';
import { createLogger } from '../../common/logger.js';
import { loadWithPeer, optionalPeers } from '../../common/peers.js';
import { counted } from '../../common/text.js';
import { redactUrl } from '../../common/url.js';
import type { Database } from '../../db/database.js';
import { quoteSchema } from '../../db/identifier.js';
import { migrate } from '../../db/migrate.js';
import { pgliteDatabase } from '../../db/pglite.js';
import { createDispatcher } from '../../dispatcher/dispatcher.js';
import { createOutbox } from '../../outbox/outbox.js';
import { openDatabase } from '../database.js';
import { createTraffic } from '../demo/traffic.js';
import { execute } from '../execute.js';
import {
  type DispatcherFlags,
  dispatchOptions,
  parseDatabaseUrl,
  parseDispatchFlags,
  parseInteger,
  settings,
} from '../settings.js';
import { onShutdownSignal } from '../shutdown.js';

interface DemoFlags extends DispatcherFlags {
  databaseUrl?: string;
  events?: string;
  rate: string;
  verbose?: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** After Ctrl-C, how long the demo waits for the dispatcher to publish anything more. */
const STALL_MS = 10_000;

async function openDemoDatabase(
  url: string | undefined,
  flags: DemoFlags,
  logger: ReturnType<typeof createLogger>,
) {
  if (url === undefined || url === '') {
    // Loaded only here: the embedded server is a large WebAssembly module that run/migrate
    // never need, and an optional peer dependency.
    const { PGlite } = await loadWithPeer(
      'database-url',
      optionalPeers.pglite,
      () => import('@electric-sql/pglite'),
    );
    process.stderr.write(
      'demo: starting the embedded PostgreSQL (PGlite, in memory): a few seconds\n',
    );
    const pglite = await PGlite.create();
    return {
      db: pgliteDatabase(pglite),
      where: 'embedded PostgreSQL (PGlite, in memory)',
      close: () => pglite.close(),
    };
  }
  const db: Database = await openDatabase(parseDatabaseUrl('database-url', url), logger);
  return { db, where: `PostgreSQL, schema "${flags.schema}"`, close: () => db.close() };
}

export function demoCommand(): Command {
  const command = new Command('demo')
    .description(
      'simulate EduPulse traffic (lessons published, enrolments, quizzes) through the outbox and publish it; the default of `npm start`',
    )
    .addOption(
      settings.databaseUrl('PostgreSQL connection URL; without one, an embedded PGlite in memory'),
    )
    .addOption(settings.schema())
    .addOption(settings.broker())
    .addOption(settings.source())
    .option('--events <n>', 'stop after this many events are published, then print a summary')
    .option('--rate <events-per-s>', 'events produced per second; 0 = as fast as possible', '200');
  for (const option of dispatchOptions()) command.addOption(option);
  return command
    .addOption(settings.verbose())
    .addHelpText(
      'after',
      `
CloudEvents go to the broker (stdout for log:), progress to stderr.
Ctrl-C: stop producing, publish what is pending, exit 0; a second Ctrl-C exits at once (130).
When nothing more is published for 10 s (a broker that refuses or cannot be reached), the
demo exits 1 saying how many events were left unpublished.`,
    )
    .action(async (flags: DemoFlags) => {
      await execute(flags, async ({ verbose }) => {
        const logger = createLogger(verbose ? 'debug' : 'warn');
        const target =
          flags.events === undefined ? undefined : parseInteger('events', flags.events, 1, 1e9);
        const rate = parseInteger('rate', flags.rate, 0, 1e6);
        const dispatch = { schema: flags.schema, ...parseDispatchFlags(flags) };
        const broker = brokerFromUrl(flags.broker, { source: flags.source });
        // From the start: a Ctrl-C while the database starts ends the demo before it
        // produces anything.
        let stopping = false;
        const removeHandlers = onShutdownSignal(
          () => {
            stopping = true;
            process.stderr.write(
              '\ndemo: stopping: publishing what is pending (Ctrl-C again exits at once)\n',
            );
          },
          () => process.exit(130),
        );
        const { db, where, close } = await openDemoDatabase(flags.databaseUrl, flags, logger).catch(
          (error: unknown) => {
            removeHandlers();
            throw error;
          },
        );
        try {
          await migrate(db, flags.schema);
          // Events an earlier run left (a server's schema): the dispatcher publishes them
          // too, and the demo waits for them as for its own.
          const { rows } = await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM ${quoteSchema(flags.schema)}.outbox`,
          );
          const waiting = rows[0]?.n ?? 0;
          const outbox = createOutbox({ schema: flags.schema });
          const dispatcher = createDispatcher({ db, broker, logger, ...dispatch });
          let fatal: Error | undefined;
          dispatcher.once('fatal', (error: Error) => {
            fatal = error;
            stopping = true;
          });
          await dispatcher.start();
          process.stderr.write(
            `demo: ${where} → ${redactUrl(flags.broker)}${target ? `, ${target} events` : ''}\n`,
          );
          if (waiting > 0) {
            process.stderr.write(
              `demo: ${counted(waiting, 'event')} already in the outbox, left by an earlier run, go out too\n`,
            );
          }

          const started = Date.now();
          let produced = 0;
          const progress = createProgress(() => ({
            produced,
            published: dispatcher.stats.published,
            dead: dispatcher.stats.deadLettered,
          }));
          const traffic = createTraffic();
          // The embedded database answers without a turn of the event loop: take one, so
          // a Ctrl-C given while it started is seen before the first event.
          await new Promise((resolve) => setImmediate(resolve));
          while (!stopping && (target === undefined || produced < target)) {
            let events = traffic.next();
            if (target !== undefined) events = events.slice(0, target - produced);
            await db.transaction((tx) => outbox.enqueue(tx, events));
            produced += events.length;
            const ahead = rate > 0 ? started + (produced / rate) * 1000 - Date.now() : 0;
            // Never two transactions back to back without a turn of the event loop: an
            // embedded database answers without one, and the dispatcher, the progress
            // line and Ctrl-C would wait for the loop to end.
            if (ahead > 0) await sleep(ahead);
            else await new Promise((resolve) => setImmediate(resolve));
          }
          // Everything produced is published (or dead-lettered) before we stop, as long as
          // the dispatcher gets on with it: a broker that refuses or cannot be reached
          // would keep the demo waiting for retries without end.
          const done = () => dispatcher.stats.published + dispatcher.stats.deadLettered;
          let progressAt = Date.now();
          let seen = done();
          while (!fatal && done() < produced + waiting && Date.now() - progressAt < STALL_MS) {
            await sleep(20);
            if (done() !== seen) {
              seen = done();
              progressAt = Date.now();
            }
          }
          await dispatcher.stop();
          progress.stop();
          if (fatal) throw fatal;
          const pending = produced + waiting - done();
          if (pending > 0) {
            process.stderr.write(
              `demo: ${pending} of ${produced + waiting} events not published: none went out in the last ${STALL_MS / 1000} s (see the lines above); they stay in the outbox${flags.databaseUrl ? '' : ' of the embedded database, gone when the demo ends'}\n`,
            );
            return 1;
          }
          const seconds = (Date.now() - started) / 1000;
          const { published, deadLettered } = dispatcher.stats;
          process.stderr.write(
            `demo: produced ${produced}, published ${published}, dead letters ${deadLettered} in ${seconds.toFixed(1)} s (${Math.round(published / seconds)} events/s)\n`,
          );
          return 0;
        } finally {
          removeHandlers();
          await close();
        }
      });
    });
}

/** The live line on stderr: rewritten in place on a terminal, one line every few seconds otherwise. */
function createProgress(read: () => { produced: number; published: number; dead: number }) {
  const tty = process.stderr.isTTY === true;
  let last = { at: Date.now(), published: 0 };
  const timer = setInterval(
    () => {
      const now = Date.now();
      const { produced, published, dead } = read();
      const rate = Math.round(((published - last.published) * 1000) / Math.max(1, now - last.at));
      last = { at: now, published };
      const line = `produced ${produced} · published ${published} · backlog ${produced - published - dead} · ${rate} events/s`;
      process.stderr.write(tty ? `\r\u001b[2K${line}` : `${line}\n`);
    },
    tty ? 250 : 2000,
  );
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      if (tty) process.stderr.write('\r\u001b[2K');
    },
  };
}
