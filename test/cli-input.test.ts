/**
 * Input the CLI refuses before PostgreSQL sees it (times outside the years PostgreSQL
 * reads, dates not in the calendar, schema names PostgreSQL reserves), and text from the
 * tables that reaches the terminal escaped: a dead letter whose fields carry control and
 * reordering characters, shown by `dead list | show | retry`, `status` and their `--json`.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseTime } from '../src/cli/settings.js';
import { bytesOverLimit, escapeControl, jsonForTerminal } from '../src/common/text.js';
import { brokerFromUrl, ConfigError, createOutbox } from '../src/index.js';
import { killChildren, lines, runCli, stackLines } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

// Every character a terminal obeys or reorders by, except the newline that ends a line.
const RAW_CONTROL =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

let t: TestSchema;

beforeAll(async () => {
  t = await createPgTestSchema('cli_input');
});

afterEach(killChildren);

afterAll(async () => {
  await killChildren();
  await t?.drop();
});

const cli = (...args: string[]) =>
  runCli([...args, '--schema', t.schema], { env: { DATABASE_URL: PG_URL } });

/** The setting `parseTime` names when it refuses `raw`, or undefined when it accepts it. */
function refusal(raw: string): string | undefined {
  try {
    parseTime('since', raw, Date.parse('2026-11-27T10:00:00Z'));
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).setting;
  }
}

describe('times', () => {
  it('a time is a real date and time in the years 0001 to 9999, or refused', () => {
    const now = Date.parse('2026-11-27T10:00:00Z');
    const at = (raw: string) => parseTime('since', raw, now).toISOString();
    expect(at('2028-02-29')).toBe('2028-02-29T00:00:00.000Z');
    expect(at('0001-01-01')).toBe('0001-01-01T00:00:00.000Z');
    expect(at('9999-12-31T23:59:59.999Z')).toBe('9999-12-31T23:59:59.999Z');
    expect(at('2026-11-27T10:00:00+01:00')).toBe('2026-11-27T09:00:00.000Z');
    expect(at('2026-11-27 10:00:00.123456-0230')).toBe('2026-11-27T12:30:00.123Z');
    expect(at('2026-11-27T10:00Z')).toBe('2026-11-27T10:00:00.000Z');
    // Without an offset a time is UTC, as every time shown, whatever the machine's zone.
    const zone = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      expect(new Date(2026, 10, 27, 10).getUTCHours()).toBe(15); // the zone took effect
      expect(at('2026-11-27T10:00:00')).toBe('2026-11-27T10:00:00.000Z');
      expect(at('2026-11-27 10:00')).toBe('2026-11-27T10:00:00.000Z');
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
    expect(at('2h')).toBe('2026-11-27T08:00:00.000Z');
    expect(at('739900d')).toMatch(/^0001-02-/);

    // Not in the calendar, outside 0001-9999, or a duration ago reaching past it.
    for (const raw of [
      '2026-02-29',
      '2026-02-30',
      '2026-04-31',
      '2026-13-01',
      '2026-00-10',
      '2026-11-27T24:00:00Z',
      '2026-11-27T10:60:00Z',
      '2026-11-27T10:00:60Z',
      '2026-11-27T10:00:00+24:00',
      '0000-12-31',
      '0001-01-01T00:30:00+01:00',
      '9999-12-31T23:59:59-01:00',
      '100000000d',
      '740000d',
    ]) {
      expect(refusal(raw), raw).toBe('since');
    }
  });

  it('shows a refused value with its control characters escaped', () => {
    expect(() => parseTime('since', '\u001b[2J\u009b2J')).toThrow(/\\u001b\[2J\\u009b2J/);
  });
});

describe('a setting out of range exits 2 naming it, before PostgreSQL sees it', () => {
  /**
   * Exit 2, one stderr line naming the setting, no stack, no PostgreSQL error text. On the
   * test schema unless `args` name another (a later --schema would win over theirs).
   */
  async function expectRefused(args: string[], setting: string): Promise<string> {
    const result = args.includes('--schema')
      ? await runCli(args, { env: { DATABASE_URL: PG_URL } })
      : await cli(...args);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toBe('');
    expect(stackLines(result.stderr)).toEqual([]);
    const errorLines = lines(result.stderr);
    expect(errorLines, result.stderr).toHaveLength(1);
    expect(errorLines[0]).toContain(`edupulse-outbox: ${setting}: `);
    expect(result.stderr).not.toMatch(/out of range|displacement|unacceptable|version 0/);
    return result.stderr;
  }

  it('a duration ago before the year 0001', async () => {
    const since = await expectRefused(['dead', 'list', '--since', '100000000d'], 'since');
    expect(since).toContain('0001 to 9999');
    await expectRefused(['dead', 'retry', '--until', '100000000d'], 'until');
    const purge = await expectRefused(['purge', '--older-than', '100000000d'], 'older-than');
    expect(purge).toContain('0001 to 9999');
  });

  it('a duration in a unit it does not take, naming the units it does', async () => {
    const week = await expectRefused(['inbox', 'purge', '--older-than', '1w'], 'older-than');
    expect(week).toContain('a whole number and ms, s, m, h or d');
  });

  it('an address, a token or a readiness setting for a port run does not serve', async () => {
    // Before: accepted and ignored, the operator left to wonder why nothing listened, or
    // believing the endpoints on and protected.
    const ui = await expectRefused(['run', '--ui-host', '0.0.0.0'], 'ui-host');
    expect(ui).toContain('give --ui-port too');
    await expectRefused(['run', '--metrics-host', '0.0.0.0'], 'metrics-host');
    const token = 'a-token-of-16-characters-or-more';
    const uiToken = await expectRefused(['run', '--ui-token', token], 'ui-token');
    expect(uiToken).toContain('protects what --ui-port serves: give --ui-port too');
    expect(uiToken).not.toContain(token);
    await expectRefused(['run', '--metrics-token', token], 'metrics-token');
    await expectRefused(['run', '--metrics-token-file', '/nonexistent'], 'metrics-token-file');
    const lag = await expectRefused(
      ['run', '--ready-max-lag-seconds', '5'],
      'ready-max-lag-seconds',
    );
    expect(lag).toContain('is for /readyz, which --metrics-port serves');
    await expectRefused(['run', '--metrics-event-types', 'a,b'], 'metrics-event-types');
  });

  it("a refused setting is the only line, the memory: broker's warning not said before it", async () => {
    const args = ['run', '--broker', 'memory:', '--metrics-port', '0', '--metrics-host', '0.0.0.0'];
    await expectRefused(args, 'metrics-token');
  });

  it('a date that is not in the calendar, or outside 0001-9999', async () => {
    await expectRefused(['dead', 'list', '--since', '2026-02-30'], 'since');
    await expectRefused(['dead', 'list', '--until', '2026-13-01'], 'until');
    await expectRefused(['purge', '--older-than', '2026-02-30T10:00:00Z'], 'older-than');
    await expectRefused(['dead', 'list', '--since', '0000-01-01'], 'since');
  });

  it('a time window the wrong way round, which nothing could match', async () => {
    const refused = await expectRefused(
      ['dead', 'list', '--since', '2027-01-01T00:00:00Z', '--until', '2h'],
      'until',
    );
    expect(refused).toContain('is not after since (2027-01-01T00:00:00.000Z)');
    await expectRefused(
      ['dead', 'retry', '--consumer', 'grades', '--since', '1h', '--until', '2h'],
      'until',
    );
  });

  it('a time copied from a listing keeps its microseconds; long names are cut in text', async () => {
    const own = await createPgTestSchema('cli_micros');
    try {
      await own.db.query(
        `INSERT INTO "${own.schema}".outbox_dead_letter
           (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
            occurred_at, attempts, last_error, dead_at)
         VALUES (1, $1, 'lesson', 'l-1', 'lesson-published', '{}', '{}', 0, now(), 1, 'no',
                 '2026-12-05T00:46:41.273309Z')`,
        [randomUUID()],
      );
      const count = async (...filter: string[]) => {
        const result = await runCli(['dead', 'list', '--json', '--schema', own.schema, ...filter], {
          env: { DATABASE_URL: PG_URL },
        });
        expect(result.code, result.stderr).toBe(0);
        return (JSON.parse(result.stdout) as unknown[]).length;
      };
      // Before: cut to .273, so --until .2735 matched nothing and --since .273309 too much.
      expect(await count('--until', '2026-12-05T00:46:41.2735Z')).toBe(1);
      expect(await count('--until', '2026-12-05T00:46:41.273309Z')).toBe(0);
      expect(await count('--since', '2026-12-05T00:46:41.273309Z')).toBe(1);
      expect(await count('--since', '2026-12-05T00:46:41.27331Z')).toBe(0);

      // Names a producer chose are cut to a line's worth in text; --json has them whole.
      await own.db.query(
        `INSERT INTO "${own.schema}".outbox_dead_letter
           (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
            occurred_at, attempts, last_error)
         VALUES (2, $1, 'lesson', $2, $3, '{}', '{}', 0, now(), 1, 'no')`,
        [randomUUID(), 'a'.repeat(2500), `t${'y'.repeat(3999)}`],
      );
      const env = { env: { DATABASE_URL: PG_URL } };
      const list = await runCli(['dead', 'list', '--schema', own.schema, '--since', '1h'], env);
      expect(list.stdout).toContain(`${'y'.repeat(199)}… (4000 characters)`);
      expect(list.stdout).toContain('… (2507 characters)');
      expect(list.stdout.length).toBeLessThan(1000);
      const groups = await runCli(['dead', 'groups', '--schema', own.schema], env);
      expect(groups.stdout).toContain('… (4000 characters)');
      expect(groups.stderr).toContain(
        '(a type or error shown escaped or cut is not its text: take it from --json)',
      );
      const json = await runCli(['dead', 'list', '--json', '--schema', own.schema], env);
      expect(json.stdout).toContain('a'.repeat(2500));
    } finally {
      await own.drop();
    }
  });

  it('a schema name PostgreSQL reserves', async () => {
    const migrate = await expectRefused(['migrate', '--schema', 'pg_temp'], 'schema');
    expect(migrate).toContain('reserved');
    await expectRefused(['migrate', '--print', '--schema', 'information_schema'], 'schema');
    await expectRefused(['status', '--schema', 'pg_catalog'], 'schema');
  });

  it('a CloudEvents source that is not a URI-reference', async () => {
    for (const command of ['run', 'demo']) {
      for (const source of ['', 'not a uri', '/lessons%zz']) {
        const refused = await expectRefused([command, '--source', source], 'source');
        expect(refused).toContain('not a CloudEvents source');
      }
    }
    // A good one, escapes and all: the demo on the embedded database publishes with it.
    const accepted = await runCli([
      'demo',
      '--events',
      '1',
      '--source',
      'https://edupulse.example/a%20b',
    ]);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain('"source":"https://edupulse.example/a%20b"');
  });

  it('the library refuses a missing or bad source too', () => {
    for (const options of [undefined, {}]) {
      const create = () => brokerFromUrl('log:', options as unknown as { source: string });
      expect(create, JSON.stringify(options)).toThrow(ConfigError);
      expect(create).toThrow('brokerFromUrl(url, { source }) needs the CloudEvents source');
    }
    // The characters of a URI, but not one: an IPv6 host left open.
    for (const options of [{ source: '' }, { source: 'two words' }, { source: 'http://[bad' }]) {
      const create = () => brokerFromUrl('log:', options);
      expect(create, JSON.stringify(options)).toThrow(ConfigError);
      expect(create).toThrow('not a CloudEvents source');
    }
    expect(() => brokerFromUrl('log:', { source: '/edupulse' })).not.toThrow();
    // Too long says so, not that it is no URI.
    expect(() => brokerFromUrl('log:', { source: `/${'x'.repeat(2047)}` })).not.toThrow();
    expect(() => brokerFromUrl('log:', { source: `/${'x'.repeat(2048)}` })).toThrow(
      'is 2049 characters long, over the 2048 a CloudEvents source may have here',
    );
  });

  it('the library refuses a reserved schema too', () => {
    for (const schema of ['pg_temp', 'pg_catalog', 'pg_outbox', 'information_schema']) {
      expect(() => createOutbox({ schema }), schema).toThrow(ConfigError);
      try {
        createOutbox({ schema });
      } catch (error) {
        expect((error as ConfigError).setting).toBe('schema');
      }
    }
    expect(() => createOutbox({ schema: 'pgsql_outbox' })).not.toThrow();
  });
});

describe('text a producer chose reaches the terminal escaped', () => {
  const AGGREGATE_ID = 'student-\u001b[31m7\u001b[0m\r\n\u202eeulav';
  const EVENT_TYPE = 'quiz-\u009b2J-submitted\u2028\u007f';
  const LAST_ERROR = 'refused\u001b]0;title\u0007\n\u2066x\u2069 \u0085\t';
  // JSON leaves C1 controls and bidi overrides raw inside strings; the payload is kept as
  // written, a number beyond a double's precision included.
  const PAYLOAD = `{"title": ${JSON.stringify('\u001b[2J\u009b2J\u202eevil')}, "views": 12345678901234567890123}`;
  const HEADERS = { 'x-note': '\u009b\u2028\u202d' };
  const id = randomUUID();

  /** Runs the command; exit 0 and no raw control character on stdout or stderr. */
  async function clean(...args: string[]) {
    const result = await cli(...args);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toMatch(RAW_CONTROL);
    expect(result.stderr).not.toMatch(RAW_CONTROL);
    return result;
  }

  beforeAll(async () => {
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       VALUES (1, $1, 'student', $2, $3, $4::json, $5::jsonb, 0, now(), 10, $6)`,
      [id, AGGREGATE_ID, EVENT_TYPE, PAYLOAD, JSON.stringify(HEADERS), LAST_ERROR],
    );
  });

  it('dead list, as text and as JSON', async () => {
    const text = await clean('dead', 'list');
    expect(lines(text.stdout)).toHaveLength(1);
    for (const field of [EVENT_TYPE, `student/${AGGREGATE_ID}`, LAST_ERROR]) {
      expect(text.stdout).toContain(escapeControl(field));
    }

    const json = await clean('dead', 'list', '--json');
    expect(JSON.parse(json.stdout)).toMatchObject([
      { id, aggregateId: AGGREGATE_ID, eventType: EVENT_TYPE, lastError: LAST_ERROR },
    ]);
  });

  it('dead show parses back to the original values, the payload as its JSON', async () => {
    const show = await clean('dead', 'show', id);
    expect(JSON.parse(show.stdout)).toMatchObject({
      id,
      aggregateId: AGGREGATE_ID,
      eventType: EVENT_TYPE,
      lastError: LAST_ERROR,
      payload: { title: '\u001b[2J\u009b2J\u202eevil' },
      headers: HEADERS,
    });
    expect(show.stdout).toContain('"views": 12345678901234567890123}');
  });

  it('status, as text and as JSON, before and after a retry', async () => {
    const groups = await clean('dead', 'groups');
    expect(groups.stdout).toContain(escapeControl(EVENT_TYPE));
    expect(groups.stderr).toContain('shown escaped or cut is not its text: take it from --json');
    const text = await clean('status');
    expect(text.stdout).toContain(`  ${escapeControl(EVENT_TYPE)}  1`);
    const json = await clean('status', '--json');
    expect(JSON.parse(json.stdout).deadLettersByEventType).toEqual({ [EVENT_TYPE]: 1 });

    const retry = await clean('dead', 'retry', '--json', '--event-type', EVENT_TYPE);
    expect(JSON.parse(retry.stdout)).toEqual([id]);
    const pending = await clean('status');
    expect(pending.stdout).toContain(`  ${escapeControl(EVENT_TYPE)}  1 pending`);
    const pendingJson = await clean('status', '--json');
    expect(Object.keys(JSON.parse(pendingJson.stdout).pendingByEventType)).toEqual([EVENT_TYPE]);
  });

  it('jsonForTerminal escapes what JSON.stringify leaves raw, and parses back the same', () => {
    const value = { [EVENT_TYPE]: [AGGREGATE_ID, LAST_ERROR, PAYLOAD, '\ud800 lone'] };
    const json = jsonForTerminal(value, 2);
    expect(json).not.toMatch(RAW_CONTROL);
    expect(JSON.parse(json)).toEqual(value);
  });

  it('a size over a limit never reads as equal to it', () => {
    expect(bytesOverLimit(2 * 1024 * 1024, 1024 * 1024, 'maxPayloadBytes')).toBe(
      '2.0 MiB exceeds maxPayloadBytes (1.0 MiB)',
    );
    // Rounded alike, they are given in bytes.
    expect(bytesOverLimit(4100, 4096, 'max_payload')).toBe(
      '4100 bytes exceeds max_payload (4096 bytes)',
    );
  });

  it('escapeControl shows an unpaired surrogate as its code and keeps pairs', () => {
    expect(escapeControl('a\ud800b\udc00c')).toBe('a\\ud800b\\udc00c');
    expect(escapeControl('quiz \u{1f600}')).toBe('quiz \u{1f600}');
    expect(escapeControl('\u{1f600}\ud83d')).toBe('\u{1f600}\\ud83d');
  });
});
