/** `edupulse-outbox migrate` as a separate process, on fresh schemas of this file. */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readProducerNotify } from '../src/db/migrate.js';
import { loadMigrations, migrate } from '../src/index.js';
import { killChildren, lines, runCli, stackLines } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema, testSchema } from './helpers/db.js';
import { triggerAndColumnPartitions } from './helpers/partitions.js';

afterEach(killChildren);

describe('migrate', () => {
  // `main` is migrated step by step by the tests below, in order; the others stay apart.
  let main: TestSchema;
  let printed: TestSchema;
  let concurrent: TestSchema;

  beforeAll(async () => {
    [main, printed, concurrent] = await Promise.all([
      createPgTestSchema('cli_mig', { migrate: false }),
      createPgTestSchema('cli_mig_print', { migrate: false }),
      createPgTestSchema('cli_mig_conc', { migrate: false }),
    ]);
  });

  afterAll(async () => {
    await killChildren();
    await Promise.all([main?.drop(), printed?.drop(), concurrent?.drop()]);
  });

  const schemaExists = async (db: TestSchema, schema: string) => {
    const { rows } = await db.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1',
      [schema],
    );
    return rows[0]?.n === 1;
  };

  const tableExists = async (db: TestSchema, table: string) => {
    const { rows } = await db.db.query<{ present: boolean }>(
      'SELECT to_regclass($1) IS NOT NULL AS present',
      [`"${db.schema}".${table}`],
    );
    return rows[0]?.present === true;
  };

  it('--check exits 1 on a fresh schema and creates nothing', async () => {
    const result = await runCli([
      'migrate',
      '--check',
      '--database-url',
      PG_URL,
      '--schema',
      main.schema,
    ]);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).toContain('behind');
    expect(stackLines(result.stderr)).toEqual([]);
    expect(await schemaExists(main, main.schema)).toBe(false);
  });

  it('run on an unmigrated schema exits 2 and says to run migrate', async () => {
    const result = await runCli(['run', '--database-url', PG_URL, '--schema', main.schema]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toContain('migrate');
    expect(result.stderr).toContain(main.schema);
    expect(stackLines(result.stderr)).toEqual([]);
  });

  it('applies the migrations to a fresh schema', async () => {
    const result = await runCli(['migrate', '--database-url', PG_URL, '--schema', main.schema]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('applied');
    expect(result.stdout).toContain(main.schema);
    expect(await tableExists(main, 'outbox')).toBe(true);
    expect(await tableExists(main, 'outbox_dead_letter')).toBe(true);
  });

  it('a second run says the schema is current', async () => {
    const result = await runCli(['migrate', '--database-url', PG_URL, '--schema', main.schema]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('current');
    expect(result.stdout).not.toContain('applied');
  });

  it('--check exits 0 once migrated', async () => {
    const result = await runCli([
      'migrate',
      '--check',
      '--database-url',
      PG_URL,
      '--schema',
      main.schema,
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('current');
  });

  it('--check says what migrate would refuse or change: another --partitions (2), another --producer-notify (1)', async () => {
    const check = (...extra: string[]) =>
      runCli(['migrate', '--check', '--database-url', PG_URL, '--schema', main.schema, ...extra]);
    const partitions = await check('--partitions', '32');
    expect(partitions.code).toBe(2);
    expect(partitions.stderr).toContain('partitions: schema');
    expect(partitions.stderr).toContain('was created with 64 partitions');
    const notify = await check('--producer-notify', 'on');
    expect(notify.code, notify.stderr).toBe(1);
    expect(notify.stdout).toBe(`schema "${main.schema}" has producer notify off, not on\n`);
    const same = await check('--producer-notify', 'off', '--partitions', '64');
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toContain('current');
  });

  it('--print shows the SQL without a database', async () => {
    const schema = testSchema('cli_print');
    // No DATABASE_URL in the child's environment, and none given as a flag.
    const result = await runCli(['migrate', '--print', '--schema', schema]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`CREATE TABLE "${schema}".outbox`);
    expect(result.stdout).toContain(`"${schema}".outbox_dead_letter`);
  });

  it('the --print script applied by hand gives a current schema, notifying as asked', async () => {
    const script = await runCli([
      'migrate',
      '--print',
      '--producer-notify',
      'on',
      '--schema',
      printed.schema,
    ]);
    expect(script.code, script.stderr).toBe(0);
    await printed.db.query(script.stdout);
    expect(await readProducerNotify(printed.db, printed.schema)).toBe(true);
    const check = await runCli([
      'migrate',
      '--check',
      '--database-url',
      PG_URL,
      '--schema',
      printed.schema,
    ]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('--print with --check exits 2: there is no database to check', async () => {
    const result = await runCli(['migrate', '--print', '--check']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('check: ');
  });

  it('two processes migrating one schema at once apply each migration once', async () => {
    const args = ['migrate', '--database-url', PG_URL, '--schema', concurrent.schema];
    const results = await Promise.all([runCli(args), runCli(args)]);
    for (const result of results) expect(result.code, result.stderr).toBe(0);
    // The two may take turns, one migration each: between them, every migration is
    // reported applied exactly once, and recorded once.
    const applied = results
      .flatMap((result) => result.stdout.split('\n'))
      .filter((line) => line.startsWith('applied '))
      .sort();
    const { rows } = await concurrent.db.query<{ version: number; name: string }>(
      `SELECT version, name FROM "${concurrent.schema}".outbox_migrations ORDER BY version`,
    );
    expect(rows.length).toBeGreaterThan(0);
    expect(applied).toEqual(
      rows
        .map((row) => `applied ${row.version} ${row.name} to schema "${concurrent.schema}"`)
        .sort(),
    );
  });
});

describe('migrate on a schema created by an earlier release', () => {
  const versions = loadMigrations().map((m) => m.version);
  const latest = versions.at(-1) ?? 0;
  const opened: TestSchema[] = [];

  afterAll(async () => {
    await killChildren();
    await Promise.all(opened.map((t) => t.drop()));
  });

  /** A schema created with 16 partitions and migrated up to `level` only. */
  async function createdAt(level: number): Promise<TestSchema> {
    const t = await createPgTestSchema('cli_mig_upgrade', { migrate: false });
    opened.push(t);
    await migrate(t.db, t.schema, { partitions: 16, targetVersion: level });
    return t;
  }

  const recorded = async (t: TestSchema) => {
    const { rows } = await t.db.query<{ version: number }>(
      `SELECT version FROM "${t.schema}".outbox_migrations ORDER BY version`,
    );
    return rows.map((row) => row.version);
  };

  it.each(versions.filter((v) => v < latest))(
    'created at level %i with --partitions 16, a plain migrate keeps 16 and exits 0',
    async (level) => {
      const t = await createdAt(level);
      expect(await recorded(t)).toEqual(versions.filter((v) => v <= level));

      const result = await runCli(['migrate', '--database-url', PG_URL, '--schema', t.schema]);
      expect(result.code, result.stderr).toBe(0);
      expect(lines(result.stdout)).toHaveLength(latest - level);
      expect(await recorded(t)).toEqual(versions);
      const { rows } = await t.db.query<{ partitions: number }>(
        `SELECT partitions FROM "${t.schema}".outbox_settings`,
      );
      expect(rows[0]?.partitions).toBe(16);
      const { trigger, column } = await triggerAndColumnPartitions(t.schema);
      expect(Math.max(...column)).toBeLessThan(16);
      expect(trigger).toEqual(column);
    },
  );

  it("--partitions other than the schema's exits 2 and applies nothing", async () => {
    const t = await createdAt(3);
    const result = await runCli([
      'migrate',
      '--database-url',
      PG_URL,
      '--schema',
      t.schema,
      '--partitions',
      '32',
    ]);
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toContain('partitions');
    expect(result.stderr).toContain('16');
    expect(result.stdout).not.toContain('applied');
    expect(await recorded(t)).toEqual(versions.filter((v) => v <= 3));
  });

  it('a schema a later release migrated: migrate and --check exit 2, neither calls it current', async () => {
    const t = await createdAt(latest);
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_migrations (version, name) VALUES ($1, 'from_a_later_release')`,
      [latest + 1],
    );
    for (const args of [[], ['--check']]) {
      const result = await runCli([
        'migrate',
        '--database-url',
        PG_URL,
        '--schema',
        t.schema,
        ...args,
      ]);
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
      expect(result.stdout).toBe('');
      expect(lines(result.stderr)).toEqual([
        `edupulse-outbox: schema "${t.schema}" is at version ${latest + 1}, newer than this version of edupulse-outbox knows (${latest}): upgrade edupulse-outbox`,
      ]);
    }
    // The library's migrate() refuses it too.
    await expect(migrate(t.db, t.schema)).rejects.toThrow(/newer than this version/);
  });
});
