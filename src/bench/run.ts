import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';
import pg from 'pg';
import { BenchContext, type BenchSettings, type Scenario, type ScenarioResult } from './context.js';
import { scenarioNames } from './names.js';
import { drainBrokers } from './scenarios/drain-brokers.js';
import { drainNoop } from './scenarios/drain-noop.js';
import { memoryDrain } from './scenarios/memory-drain.js';
import { peer } from './scenarios/peer.js';
import { producerCost } from './scenarios/producer-cost.js';
import { scale } from './scenarios/scale.js';
import { steadyLatency } from './scenarios/steady-latency.js';

/** Every scenario, in the order a full run measures them. */
export const scenarios: readonly Scenario[] = [
  drainNoop,
  drainBrokers,
  steadyLatency,
  producerCost,
  scale,
  memoryDrain,
  peer,
];

const registered = scenarios.flatMap((s) => s.names);
if (registered.join() !== scenarioNames.join()) {
  throw new Error(
    `bench/names.ts lists ${scenarioNames.join()}, the scenarios ${registered.join()}`,
  );
}

export interface BenchReport {
  machine: string;
  date: string;
  mode: 'quick' | 'full';
  versions: Record<string, string>;
  scenarios: ScenarioResult[];
}

async function versions(databaseUrl: string): Promise<Record<string, string>> {
  const client = new pg.Client(databaseUrl);
  await client.connect();
  try {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    return {
      'edupulse-outbox': pkg.version,
      node: process.versions.node,
      postgresql: rows[0]?.server_version ?? 'unknown',
      ...clientVersions(),
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
    // In this repository, or next to it when installed as a dependency.
    for (const base of ['../../node_modules/', '../../../']) {
      try {
        const url = new URL(`${base}${name}/package.json`, import.meta.url);
        versions[name] = (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
        break;
      } catch {}
    }
  }
  return versions;
}

/** Runs the scenarios named in `only` (all when empty) and returns the report. */
export async function runBench(
  settings: BenchSettings,
  only: ReadonlySet<string> = new Set(),
  bench = new BenchContext(settings),
): Promise<BenchReport> {
  const report: BenchReport = {
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB`,
    date: new Date().toISOString(),
    mode: settings.quick ? 'quick' : 'full',
    versions: await versions(settings.databaseUrl),
    scenarios: [],
  };
  for (const scenario of scenarios) {
    const wanted = only.size === 0 ? new Set(scenario.names) : only;
    if (!scenario.names.some((name) => wanted.has(name))) continue;
    report.scenarios.push(...(await scenario.run(bench, wanted)));
  }
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
