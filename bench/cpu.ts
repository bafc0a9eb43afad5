import { readFileSync } from 'node:fs';
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

/**
 * Measures where the cycles of a phase go: this process's CPU, and the CPU of the
 * PostgreSQL backends whose `application_name` is `applicationName` (read from /proc, so
 * only when the server runs on this machine; otherwise `postgres_cpu_ms` is absent).
 * Call `stop()` while the phase's connections are still open.
 */
export async function cpuMeter(databaseUrl: string, applicationName: string) {
  const client = new pg.Client({
    connectionString: databaseUrl,
    application_name: 'edupulse-bench-meter',
  });
  await client.connect();
  const { rows } = await client.query<{ local: boolean }>(
    `SELECT coalesce(host(inet_server_addr()) IN ('127.0.0.1', '::1'), true) AS local`,
  );
  const local = rows[0]?.local === true;
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
