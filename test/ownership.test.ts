/**
 * Dispatchers share the partitions through PostgreSQL alone: `run` processes join, crash
 * and leave, and `status` shows the ownership settle again within 5 s each time.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../src/brokers/memory.js';
import { silentLogger } from '../src/common/logger.js';
import { BrokerUnavailableError, createDispatcher } from '../src/index.js';
import { type CliProcess, killChildren, runCli, spawnCli } from './helpers/cli.js';
import {
  createPgliteTestSchema,
  createPgTestSchema,
  PG_URL,
  type TestSchema,
} from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

afterEach(killChildren);

interface Status {
  pending: number;
  dispatchers: { pid: number; name: string; partitions: number[] }[];
}

describe('partition ownership across run processes', () => {
  let t: TestSchema;
  beforeAll(async () => {
    t = await createPgTestSchema('ownership');
  });
  afterAll(async () => {
    await killChildren();
    await t?.drop();
  });

  const status = async (): Promise<Status> => {
    const result = await runCli([
      'status',
      '--database-url',
      PG_URL,
      '--schema',
      t.schema,
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as Status;
  };

  /** Every partition owned exactly once, by `members` dispatchers, none above its fair share. */
  const balanced = (s: Status, members: number) => {
    const owned = s.dispatchers.flatMap((d) => d.partitions);
    return (
      s.dispatchers.length === members &&
      owned.length === 64 &&
      new Set(owned).size === 64 &&
      s.dispatchers.every((d) => d.partitions.length <= Math.ceil(64 / members))
    );
  };

  const spawnRun = () =>
    spawnCli(['run', '--database-url', PG_URL, '--schema', t.schema, '--broker', 'memory:']);

  const settles = async (members: number, what: string) => {
    let last: Status | undefined;
    await waitFor(
      what,
      async () => {
        last = await status();
        return balanced(last, members);
      },
      { timeoutMs: 5000, intervalMs: 200 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last status: ${JSON.stringify(last)}`);
    });
  };

  const members = (count: number, what: string) =>
    waitFor(what, async () => (await status()).dispatchers.length === count, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });

  it('spreads 64 partitions over 3 dispatchers, and rebalances after a crash, a join and a stop', async () => {
    const runs: CliProcess[] = [spawnRun(), spawnRun(), spawnRun()];
    // Start-up (node, connections) is not what is measured: wait until all three are members.
    await members(3, 'three members');
    await settles(3, '64 partitions over 3 dispatchers');

    const crashed = runs[0] as CliProcess;
    crashed.child.kill('SIGKILL');
    await crashed.exited;
    await settles(2, 'the crashed dispatcher’s partitions taken over within 5 s');

    runs.push(spawnRun());
    await members(3, 'the newcomer to join');
    await settles(3, 'a joining dispatcher given its share within 5 s');

    const leaving = runs[1] as CliProcess;
    leaving.child.kill('SIGTERM');
    expect((await leaving.exited).code).toBe(0);
    await settles(2, 'a stopped dispatcher’s partitions taken over within 5 s');

    for (const run of runs.slice(2)) run.child.kill('SIGTERM');
    for (const run of runs.slice(2)) expect((await run.exited).code).toBe(0);
    expect((await status()).dispatchers).toEqual([]);
  });

  it('status prints the backlog and each dispatcher with its partitions', async () => {
    const run = spawnRun();
    await waitFor('one member owning everything', async () => balanced(await status(), 1), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    const result = await runCli(['status', '--database-url', PG_URL, '--schema', t.schema]);
    expect(result.code).toBe(0);
    // An empty backlog has no oldest event to give the age of.
    expect(result.stdout).toMatch(/: 0 pending, 0 dead letters/);
    expect(result.stdout).toContain('dispatchers: 1');
    expect(result.stdout).toMatch(/64 partitions: 0-63/);
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  });
});

describe('a dispatcher whose broker fails while another one works', () => {
  /** A broker that, while `down`, refuses connections and round trips, or only publishes. */
  class Failing extends MemoryBroker {
    down = false;
    constructor(private readonly what: 'unreachable' | 'refusing') {
      super({
        onPublish: () => this.fail(),
        onCheck: () => {
          if (this.what === 'unreachable') this.fail();
        },
      });
    }
    override async connect(): Promise<void> {
      if (this.what === 'unreachable') this.fail();
      await super.connect();
    }
    private fail(): undefined {
      if (this.down) throw new BrokerUnavailableError(`${this.what} (played)`);
      return undefined;
    }
  }

  /** Two dispatchers sharing a fresh schema, `failing` the second's broker; 300 events once it is down. */
  async function sharing(failing: Failing, run: (parts: Sharing) => Promise<void>) {
    const t = await createPgTestSchema('ownership_aside');
    const healthy = new MemoryBroker();
    const warnings: string[] = [];
    const options = {
      db: t.db,
      schema: t.schema,
      rebalanceIntervalMs: 200,
      retryBaseDelayMs: 100,
      retryMaxDelayMs: 500,
    };
    const a = createDispatcher({ ...options, broker: healthy });
    const b = createDispatcher({
      ...options,
      broker: failing,
      logger: { ...silentLogger, warn: (_fields, message) => warnings.push(message) },
    });
    try {
      await a.start();
      await b.start();
      const shared = () => a.ownedPartitions().length === 32 && b.ownedPartitions().length === 32;
      await waitFor('the partitions shared', shared, { timeoutMs: 15_000 });
      failing.down = true;
      // Over every partition, half of them the failing one's.
      await t.db.query(
        `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         SELECT 'lesson', 'l-' || i, 'lesson-published', '{}' FROM generate_series(1, 300) AS i`,
      );
      await run({ healthy, b, warnings, shared });
    } finally {
      await b.stop();
      await a.stop();
      await t.drop();
    }
  }
  interface Sharing {
    healthy: MemoryBroker;
    b: ReturnType<typeof createDispatcher>;
    warnings: string[];
    shared: () => boolean;
  }

  it('cannot reach it: gives its partitions to the others, and takes a share again once it can', async () => {
    const failing = new Failing('unreachable');
    await sharing(failing, async ({ healthy, b, warnings, shared }) => {
      await waitFor('every event published, by the other', () => healthy.messages.length === 300, {
        timeoutMs: 60_000,
      });
      expect(b.ownedPartitions()).toEqual([]);
      expect(warnings).toContainEqual(
        expect.stringMatching(
          /^the broker could not be reached for \d+ s: this dispatcher gives its partitions to the others/,
        ),
      );
      failing.down = false;
      await waitFor('a share taken again', shared, { timeoutMs: 15_000 });
    });
  });

  it('reaches it but its publishes fail (as they would for any dispatcher): keeps its partitions', async () => {
    const failing = new Failing('refusing');
    await sharing(failing, async ({ healthy, b, warnings }) => {
      // Past the 20 s after which an unreachable broker is given up on.
      await new Promise((resolve) => setTimeout(resolve, 25_000));
      expect(b.ownedPartitions()).toHaveLength(32);
      expect(warnings.filter((w) => w.includes('gives its partitions'))).toEqual([]);
      expect(healthy.messages.length).toBeLessThan(300);
    });
  });
});

it('an embedded single-session database: one dispatcher owns every partition', async () => {
  const t = await createPgliteTestSchema('ownership_pglite');
  try {
    const d = createDispatcher({ db: t.db, schema: t.schema, broker: new MemoryBroker() });
    await d.start();
    expect(d.ownedPartitions()).toHaveLength(64);
    await d.stop();
  } finally {
    await t.drop();
  }
});

describe('partition count fixed when the schema is created', () => {
  it('spreads rows over the count given to migrate, and refuses another one later', async () => {
    const t = await createPgTestSchema('partitions16', { migrate: false });
    try {
      const migrated = await runCli([
        'migrate',
        '--database-url',
        PG_URL,
        '--schema',
        t.schema,
        '--partitions',
        '16',
      ]);
      expect(migrated.code, migrated.stderr).toBe(0);
      await t.db.query(
        `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         SELECT 'lesson', 'a-' || i, 'lesson-published', '{}' FROM generate_series(1, 2000) AS i`,
      );
      const { rows } = await t.db.query<{ partitions: number; highest: number }>(
        `SELECT count(DISTINCT partition)::int AS partitions, max(partition)::int AS highest
         FROM "${t.schema}".outbox`,
      );
      expect(rows[0]).toEqual({ partitions: 16, highest: 15 });

      const broker = new MemoryBroker();
      const d = createDispatcher({ db: t.db, schema: t.schema, broker });
      await d.start();
      await waitFor('the 16 partitions owned', () => d.ownedPartitions().length === 16);
      await waitFor('every event published', () => broker.messages.length === 2000);
      await d.stop();

      const again = await runCli([
        'migrate',
        '--database-url',
        PG_URL,
        '--schema',
        t.schema,
        '--partitions',
        '64',
      ]);
      expect(again.code).toBe(2);
      expect(again.stderr).toContain('partitions');
      expect(again.stderr).toContain('16');
    } finally {
      await t.drop();
    }
  });
});
