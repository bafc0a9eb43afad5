import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { scenarioNames } from '../../bench/names.js';
import { ConfigError } from '../../errors.js';
import { execute } from '../execute.js';
import { parseDatabaseUrl, settings } from '../settings.js';

interface BenchFlags {
  quick?: boolean;
  only?: string;
  databaseUrl: string;
  natsUrl: string;
  amqpUrl: string;
  kafkaUrl: string;
  out: string;
  verbose?: boolean;
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

export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'measure the dispatcher against raw limits and the peer on this machine; prints a table and writes JSON',
    )
    .option('--quick', 'smaller backlogs and shorter steady phases (under 5 minutes)')
    .option('--only <names>', `comma-separated scenarios (${scenarioNames.join(', ')})`)
    .addOption(
      settings
        .databaseUrl('PostgreSQL server to measure on (each scenario uses a schema of its own)')
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
    .addOption(settings.verbose())
    .action(async (flags: BenchFlags) => {
      await execute(flags, async () => {
        const only = parseOnly(flags.only);
        // Loaded only here: the scenarios bring every broker's client library.
        const { reportTable, runBench, writeReport } = await import('../../bench/run.js');
        const report = await runBench(
          {
            quick: flags.quick === true,
            databaseUrl: parseDatabaseUrl('database-url', flags.databaseUrl),
            natsUrl: flags.natsUrl,
            amqpUrl: flags.amqpUrl,
            kafkaUrl: flags.kafkaUrl,
          },
          only,
        );
        const out = resolve(flags.out);
        writeReport(report, out);
        process.stdout.write(`${reportTable(report)}\n`);
        process.stderr.write(`bench: report written to ${out}\n`);
        return 0;
      });
    });
}
