// The benchmark runner: `npm run bench [-- --quick] [-- --only a,b]` builds the package
// and this folder, then runs `node bench/dist/run.js`. It uses the package as an
// application would, by its name, and lives outside it: the package ships no bench code.
import { resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from 'edupulse-outbox';
import { errorMessage, type SteadyBroker, steadyBrokers } from './context.js';
import { reportTable, runBench, scenarioNames, writeReport } from './report.js';

interface BenchFlags {
  quick?: boolean;
  steadyRate: number;
  steadyBroker: SteadyBroker;
  only?: string;
  databaseUrl: string;
  natsUrl: string;
  amqpUrl: string;
  kafkaUrl: string;
  out: string;
  verbose?: boolean;
}

/** Exit codes as the CLI's: a setting that cannot be used is 2, anything else 1. */
const exitCodes = { ok: 0, failure: 1, badSetting: 2 } as const;

/** `--steady-rate`: a whole number of events a second, 1 to 100,000. */
function parseRate(raw: string): number {
  const rate = Number(raw);
  if (!/^\d+$/.test(raw) || rate < 1 || rate > 100_000) {
    throw new InvalidArgumentError('a whole number of events a second, 1 to 100000');
  }
  return rate;
}

/** The names in `--only`, each checked against the scenarios. */
function parseOnly(raw: string | undefined): Set<string> {
  const names = new Set(
    (raw ?? '')
      .split(',')
      .map((name) => name.trim())
      .filter(Boolean),
  );
  for (const name of names) {
    if (!scenarioNames.includes(name)) {
      throw new ConfigError(
        'only',
        `unknown scenario "${name}" (expected ${scenarioNames.join(', ')})`,
      );
    }
  }
  return names;
}

/** A postgres:// URL, or a ConfigError naming the setting (the URL itself is not quoted). */
function parseDatabaseUrl(raw: string): string {
  let protocol: string | undefined;
  try {
    protocol = new URL(raw).protocol;
  } catch {}
  if (protocol !== 'postgres:' && protocol !== 'postgresql:') {
    throw new ConfigError('database-url', 'expected postgres://user@host:5432/database');
  }
  return raw;
}

/**
 * The secrets in the URL settings (passwords; a lone NATS user is a token), so an error
 * a server or client quotes back never prints one.
 */
function urlSecrets(flags: BenchFlags): string[] {
  const secrets: string[] = [];
  for (const raw of [flags.databaseUrl, flags.natsUrl, flags.amqpUrl, flags.kafkaUrl]) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      continue;
    }
    const token = url.protocol === 'nats:' && !url.password ? url.username : '';
    for (const secret of [url.password, token]) {
      if (!secret) continue;
      secrets.push(secret);
      try {
        secrets.push(decodeURIComponent(secret));
      } catch {} // a malformed escape: only the text as written can be quoted back
    }
  }
  return secrets;
}

function program(): Command {
  // Named as it is run: the npm script builds the package and this runner first.
  return new Command('npm run bench --')
    .description(
      'measure the dispatcher against raw limits and the peer on this machine; prints a table and writes JSON',
    )
    .option('--quick', 'smaller backlogs and shorter steady phases (under 5 minutes)')
    .option('--only <names>', `comma-separated scenarios (${scenarioNames.join(', ')})`)
    .addOption(
      new Option(
        '--steady-rate <events/s>',
        'the rate steady-latency plans (its target is for 1,000; a sweep shows where it breaks)',
      )
        .argParser(parseRate)
        .default(1000),
    )
    .addOption(
      new Option(
        '--steady-broker <broker>',
        'the broker the steady scenarios publish to (their targets are for NATS)',
      )
        .choices(steadyBrokers)
        .default('nats'),
    )
    .addOption(
      new Option(
        '--database-url <url>',
        'PostgreSQL server to measure on (each scenario uses a schema of its own)',
      )
        .env('DATABASE_URL')
        .default('postgres://postgres@127.0.0.1:5432/test'),
    )
    .addOption(
      new Option('--nats-url <url>', 'NATS server for the NATS scenarios').default(
        'nats://127.0.0.1:4222',
      ),
    )
    .addOption(
      new Option('--amqp-url <url>', 'RabbitMQ for the AMQP scenarios').default(
        'amqp://guest:guest@127.0.0.1:5672',
      ),
    )
    .addOption(
      new Option('--kafka-url <url>', 'Kafka for the Kafka scenarios').default(
        'kafka://127.0.0.1:9092',
      ),
    )
    .addOption(
      new Option('--out <file>', 'where the JSON report goes').default('bench/results/latest.json'),
    )
    .option('--verbose', 'stack traces on errors')
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => write(`bench: ${text.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('(add --help for the list of settings)');
}

/** Parses argv, runs the scenarios, writes the report; returns the exit code. */
async function main(argv: readonly string[]): Promise<number> {
  const command = program();
  try {
    command.parse([...argv], { from: 'user' });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    // --help ends here with code 0; usage errors exit 2 like any other bad setting.
    return error.exitCode === 0 ? exitCodes.ok : exitCodes.badSetting;
  }
  const flags = command.opts<BenchFlags>();
  const out = resolve(flags.out);
  let written = false;
  try {
    const only = parseOnly(flags.only);
    const report = await runBench(
      {
        quick: flags.quick === true,
        steadyRate: flags.steadyRate,
        steadyBroker: flags.steadyBroker,
        databaseUrl: parseDatabaseUrl(flags.databaseUrl),
        natsUrl: flags.natsUrl,
        amqpUrl: flags.amqpUrl,
        kafkaUrl: flags.kafkaUrl,
      },
      only,
      (sofar) => {
        writeReport(sofar, out);
        written = true;
      },
    );
    process.stdout.write(`${reportTable(report)}\n`);
    process.stderr.write(`bench: report written to ${out}\n`);
    return exitCodes.ok;
  } catch (error) {
    let text = `bench: ${errorMessage(error)}\n`;
    if (flags.verbose && error instanceof Error && error.stack) text += `${error.stack}\n`;
    for (const secret of urlSecrets(flags)) text = text.replaceAll(secret, '***');
    if (written) text += `bench: the scenarios measured before this are in ${out}\n`;
    process.stderr.write(text);
    return error instanceof ConfigError ? exitCodes.badSetting : exitCodes.failure;
  }
}

// Exits explicitly, as the CLI does, so a stray handle in a client library can never keep
// a finished run alive.
process.exit(await main(process.argv.slice(2)));
