import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** CPU milliseconds, split between this Node process and the PostgreSQL backends serving it. */
export interface CpuSplit {
  node_cpu_ms: number;
  postgres_cpu_ms: number;
}

const TICKS_PER_S = 100; // USER_HZ on Linux

/** utime + stime of a process in ms, from /proc; undefined when it cannot be read. */
function processCpuMs(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** A broker server's processes, by what /proc says of them. */
const brokerServers = {
  nats: (comm: string) => comm === 'nats-server',
  amqp: (comm: string) => comm === 'beam.smp',
  kafka: (comm: string, cmdline: () => string) =>
    comm === 'java' && cmdline().includes('kafka.Kafka'),
} as const;

export type BrokerServer = keyof typeof brokerServers;

/**
 * CPU ms used so far by the processes of a broker server running on this machine (NATS's
 * nats-server, RabbitMQ's beam.smp, Kafka's JVM); undefined when none is found here.
 */
export function brokerServerCpuMs(server: BrokerServer): number | undefined {
  const matches = brokerServers[server];
  let total: number | undefined;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      const cmdline = () => readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!matches(comm, cmdline)) continue;
      const ms = processCpuMs(Number(pid));
      if (ms !== undefined) total = (total ?? 0) + ms;
    } catch {}
  }
  return total;
}

/**
 * The CPU a phase costs the broker server and the whole machine: `stop()` gives the ms
 * each used since the meter started (undefined where /proc cannot tell).
 */
export function serverCpuMeter(server: BrokerServer) {
  const brokerBefore = brokerServerCpuMs(server);
  const machineBefore = machineBusyMs();
  return {
    stop(): { broker_cpu_ms?: number; machine_cpu_ms?: number } {
      const broker = brokerServerCpuMs(server);
      const machine = machineBusyMs();
      return {
        ...(broker !== undefined && brokerBefore !== undefined
          ? { broker_cpu_ms: broker - brokerBefore }
          : {}),
        ...(machine !== undefined && machineBefore !== undefined
          ? { machine_cpu_ms: machine - machineBefore }
          : {}),
      };
    },
  };
}

/**
 * CPU ms the whole machine has spent (every core, /proc/stat: all but idle and iowait),
 * or undefined where it cannot be read.
 */
export function machineBusyMs(): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/) ?? [];
    // cpu user nice system idle iowait irq softirq steal
    const busy = [1, 2, 3, 6, 7, 8].map((i) => Number(fields[i]));
    if (fields[0] !== 'cpu' || busy.some((ticks) => !Number.isFinite(ticks))) return undefined;
    return (busy.reduce((sum, ticks) => sum + ticks, 0) * 1000) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** The meter's own connection, and whether the server runs on this machine (so /proc shows its backends). */
async function meterConnection(
  databaseUrl: string,
): Promise<{ client: pg.Client; local: boolean }> {
  const client = new pg.Client({
    connectionString: databaseUrl,
    application_name: 'edupulse-bench-meter',
  });
  await client.connect();
  const { rows } = await client.query<{ local: boolean }>(
    `SELECT coalesce(host(inet_server_addr()) IN ('127.0.0.1', '::1'), true) AS local`,
  );
  return { client, local: rows[0]?.local === true };
}

/**
 * Measures where the cycles of a phase go: this process's CPU, and the CPU of the
 * PostgreSQL backends whose `application_name` is `applicationName` (read from /proc, so
 * only when the server runs on this machine; otherwise `postgres_cpu_ms` is absent).
 * Call `stop()` while the phase's connections are still open.
 */
export async function cpuMeter(databaseUrl: string, applicationName: string) {
  const { client, local } = await meterConnection(databaseUrl);
  const backends = async () => {
    const found = new Map<number, number>();
    if (!local) return found;
    const { rows: pids } = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
      [applicationName],
    );
    for (const { pid } of pids) {
      const ms = processCpuMs(pid);
      if (ms !== undefined) found.set(pid, ms);
    }
    return found;
  };
  const before = await backends();
  const nodeBefore = process.cpuUsage();
  return {
    async stop(): Promise<Partial<CpuSplit> & { node_cpu_ms: number }> {
      const node = process.cpuUsage(nodeBefore);
      const after = await backends();
      await client.end();
      const node_cpu_ms = (node.user + node.system) / 1000;
      if (!local || after.size === 0) return { node_cpu_ms };
      let postgres_cpu_ms = 0;
      for (const [pid, ms] of after) postgres_cpu_ms += ms - (before.get(pid) ?? 0);
      return { node_cpu_ms, postgres_cpu_ms };
    },
  };
}

/**
 * CPU ms a process has used, in nanosecond resolution from /proc/<pid>/schedstat (its
 * time on a CPU) where the kernel offers it, else from /proc/<pid>/stat in 10 ms ticks:
 * an idle backend uses a few ms a second, which ticks would round away.
 */
function preciseCpuMs(pid: number): number | undefined {
  try {
    const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
    if (Number.isFinite(ns)) return ns / 1e6;
  } catch {}
  return processCpuMs(pid);
}

/** What `backendCpuSampler` measured. */
export interface SampledBackendCpu {
  postgres_cpu_ms: number;
  /** Distinct backends measured over the phase. */
  backends: number;
  /** From the first sample to the last. */
  seconds: number;
}

/** Which backends `backendCpuSampler` measures: by application name, or by pid. */
export interface BackendSelection {
  applicationNames: readonly string[];
  /** Read at every sample, so a session opened again later is followed. */
  pids: () => readonly number[];
}

/**
 * The CPU of the PostgreSQL backends `selected` over a phase, sampled every `intervalMs`
 * so backends that come and go during it (a pool closing idle connections and opening
 * new ones) count too: one first seen after the start counts from its fork, its
 * connection start included; one that ends loses at most the CPU of its last interval.
 * Undefined when the server is not on this machine (the CPU is read from /proc). Call
 * `stop()` while the phase's connections are still open.
 */
export async function backendCpuSampler(
  databaseUrl: string,
  selected: BackendSelection,
  intervalMs = 1000,
): Promise<{ stop(): Promise<SampledBackendCpu> } | undefined> {
  const { client, local } = await meterConnection(databaseUrl);
  if (!local) {
    await client.end();
    return undefined;
  }
  const seen = new Map<number, { first: number; last: number }>();
  const sample = async (starting: boolean) => {
    const { rows: pids } = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1) OR pid = ANY($2)',
      [selected.applicationNames, selected.pids()],
    );
    for (const { pid } of pids) {
      const ms = preciseCpuMs(pid);
      if (ms === undefined) continue;
      const known = seen.get(pid);
      if (known) known.last = ms;
      else seen.set(pid, { first: starting ? ms : 0, last: ms });
    }
  };
  await sample(true);
  const started = process.hrtime.bigint();
  let stopped = false;
  // A failed sample ends the loop; stop() reports it rather than an unhandled rejection.
  const sampling = (async () => {
    while (!stopped) {
      await sleep(intervalMs);
      if (!stopped) await sample(false);
    }
  })().then(
    () => undefined,
    (error: unknown) => error,
  );
  return {
    async stop() {
      stopped = true;
      try {
        const failed = await sampling;
        if (failed !== undefined) throw failed;
        await sample(false);
      } finally {
        await client.end();
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      let postgres_cpu_ms = 0;
      for (const { first, last } of seen.values()) postgres_cpu_ms += last - first;
      return { postgres_cpu_ms, backends: seen.size, seconds };
    },
  };
}
