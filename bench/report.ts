import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { ConfigError, redactUrl } from 'edupulse-outbox';
import pg from 'pg';
import {
  BenchContext,
  type BenchSettings,
  errorMessage,
  type Scenario,
  type ScenarioResult,
} from './context.js';
import { DEBEZIUM_VERSION } from './debezium.js';
import { installedVersion } from './packages.js';
import { consumeInbox } from './scenarios/consume-inbox.js';
import { drainBrokers } from './scenarios/drain-brokers.js';
import { drainNoop } from './scenarios/drain-noop.js';
import { idleCost } from './scenarios/idle-cost.js';
import { memoryConsume } from './scenarios/memory-consume.js';
import { memoryDrain } from './scenarios/memory-drain.js';
import { peer } from './scenarios/peer.js';
import { peerDebezium } from './scenarios/peer-debezium.js';
import { producerCost } from './scenarios/producer-cost.js';
import { scale } from './scenarios/scale.js';
import { steadyLatency } from './scenarios/steady-latency.js';

/** Every scenario, in the order a full run measures them. */
export const scenarios: readonly Scenario[] = [
  drainNoop,
  drainBrokers,
  consumeInbox,
  steadyLatency,
  producerCost,
  idleCost,
  scale,
  memoryDrain,
  memoryConsume,
  peer,
  peerDebezium,
];

/** The scenario names as the performance issue spells them, in order; what `--only` takes. */
export const scenarioNames: readonly string[] = scenarios.flatMap((s) => s.names);

export interface BenchReport {
  machine: string;
  date: string;
  mode: 'quick' | 'full';
  /** False while scenarios remain: the report is written after each one, so a run that fails keeps what it measured. */
  complete: boolean;
  versions: Record<string, string>;
  scenarios: ScenarioResult[];
}

async function versions(databaseUrl: string): Promise<Record<string, string>> {
  const client = new pg.Client(databaseUrl);
  // The run's first connection: a server that cannot be reached is a bad setting.
  await client.connect().catch((error: unknown) => {
    throw new ConfigError(
      'database-url',
      `${redactUrl(databaseUrl)} not reachable: ${errorMessage(error)}`,
      { cause: error },
    );
  });
  try {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return {
      'edupulse-outbox': installedVersion('edupulse-outbox') ?? 'unknown',
      node: process.versions.node,
      postgresql: rows[0]?.server_version ?? 'unknown',
      ...clientVersions(),
      // The Debezium peer's, as its pom.xml pins it (built only when its scenarios run).
      debezium: DEBEZIUM_VERSION,
    };
  } finally {
    await client.end();
  }
}

const CLIENTS = [
  'pg',
  '@nats-io/jetstream',
  'amqplib',
  '@platformatic/kafka',
  'pg-transactional-outbox',
] as const;

/** Installed versions of the client libraries measured (and of the peer, when present). */
function clientVersions(): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const name of CLIENTS) {
    const version = installedVersion(name);
    if (version !== undefined) versions[name] = version;
  }
  return versions;
}

/**
 * Runs the scenarios named in `only` (all when empty) and returns the report, handing it
 * to `measured` after each scenario (and once complete).
 */
export async function runBench(
  settings: BenchSettings,
  only: ReadonlySet<string> = new Set(),
  measured: (report: BenchReport) => void = () => {},
  bench = new BenchContext(settings),
): Promise<BenchReport> {
  const report: BenchReport = {
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB`,
    date: new Date().toISOString(),
    mode: settings.quick ? 'quick' : 'full',
    complete: false,
    versions: await versions(settings.databaseUrl),
    scenarios: [],
  };
  for (const scenario of scenarios) {
    const wanted = only.size === 0 ? new Set(scenario.names) : only;
    if (!scenario.names.some((name) => wanted.has(name))) continue;
    report.scenarios.push(...(await scenario.run(bench, wanted)));
    measured(report);
  }
  report.complete = true;
  measured(report);
  return report;
}

export function writeReport(report: BenchReport, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}

const notFigures = new Set(['name', 'target', 'met', 'skipped']);

/** A Markdown table: scenario, its figures, its target and whether it was met. */
export function reportTable(report: BenchReport): string {
  const lines = ['| scenario | figures | target | met |', '| --- | --- | --- | --- |'];
  for (const s of report.scenarios) {
    const figures = s.skipped
      ? `skipped: ${s.skipped}`
      : Object.entries(s)
          .filter(([key]) => !notFigures.has(key))
          .map(
            ([key, value]) =>
              `${key} ${typeof value === 'number' ? value.toLocaleString('en-US') : String(value)}`,
          )
          .join(', ');
    const met = s.met === undefined ? '' : s.met ? 'yes' : 'no';
    lines.push(`| ${s.name} | ${figures} | ${s.target ?? ''} | ${met} |`);
  }
  return lines.join('\n');
}
