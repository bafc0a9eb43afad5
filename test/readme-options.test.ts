/**
 * The README's "Options reference" table against the code: every option of each entry
 * point has its row, and the defaults shown for the dispatcher and `consume()` are the
 * ones their option resolution applies. The option names are the lists each entry point
 * checks its options against (`optionNames`), which the compiler keeps exact.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../src/brokers/memory.js';
import type { AnyEventDefinition } from '../src/consumer/event.js';
import { inboxOptions } from '../src/consumer/inbox.js';
import {
  type ConsumeOptions,
  type ConsumerSettings,
  consumeOptions,
  resolveConsumeOptions,
} from '../src/consumer/options.js';
import { pgDatabase, pgDatabaseOptions } from '../src/db/pg.js';
import { dispatcherOptions, resolveDispatcherOptions } from '../src/dispatcher/options.js';
import { defaultDeadLetterPolicy, dispatcherSettings } from '../src/dispatcher/settings.js';
import { LessonPublished } from '../src/index.js';
import { moduleOptions } from '../src/nestjs/lifecycle.js';
import { outboxOptions } from '../src/outbox/outbox.js';
import { PG_URL } from './helpers/db.js';

interface Row {
  option: string;
  where: string;
  default: string;
}

/** The one table under `## Options reference`: its header's cells and its rows. */
function optionsTable(): { header: string[]; rows: Row[] } {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const section = readme.split('\n## Options reference\n')[1]?.split('\n## ')[0] ?? '';
  const cells = (line: string) =>
    line
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim());
  const [header = [], , ...body] = section
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) => cells(line.trim()));
  const rows = body.map(([option = '', where = '', fallback = '']) => ({
    option: option.replaceAll('`', ''),
    where: where.replaceAll('`', ''),
    default: fallback,
  }));
  return { header, rows };
}

const { header, rows } = optionsTable();

function rowsOf(where: string): Map<string, Row> {
  return new Map(rows.filter((row) => row.where === where).map((row) => [row.option, row]));
}

/** A value as the table shows a default: in code font, numbers without separators. */
function shown(value: string | number | boolean): string {
  return `\`${value}\``;
}

const database = pgDatabase({ connectionString: PG_URL });
afterAll(() => database.close());

it('has one table of options, one row per option and entry point', () => {
  expect(header).toEqual(['option', 'where', 'default', 'what it does']);
  const places = ['createOutbox', 'createDispatcher', 'consume', 'createInbox', 'pgDatabase'];
  for (const row of rows) expect([...places, 'OutboxModule'], row.option).toContain(row.where);
  const pairs = rows.map((row) => `${row.where} ${row.option}`);
  expect(pairs.filter((pair, i) => pairs.indexOf(pair) !== i)).toEqual([]);
});

describe('createDispatcher', () => {
  const dispatcherRows = rowsOf('createDispatcher');

  it("lists every setting of the settings table with the table's default", () => {
    for (const [name, spec] of Object.entries(dispatcherSettings)) {
      expect(dispatcherRows.get(name)?.default, name).toBe(shown(spec.default));
    }
    expect(dispatcherRows.get('onDeadLetter')?.default).toBe(shown(defaultDeadLetterPolicy));
  });

  it('lists every option, and no other, with the defaults resolveDispatcherOptions applies', () => {
    const given = { db: database, broker: new MemoryBroker() };
    const resolved = resolveDispatcherOptions(given);
    expect([...dispatcherRows.keys()].sort()).toEqual(Object.keys(resolved).sort());
    for (const name of Object.keys(given)) {
      expect(dispatcherRows.get(name)?.default, name).toBe('required');
    }
    const defaulted = Object.entries(resolved).filter(
      (entry): entry is [string, string | number | boolean] =>
        !(entry[0] in given) && ['string', 'number', 'boolean'].includes(typeof entry[1]),
    );
    expect(defaulted.length).toBeGreaterThan(Object.keys(dispatcherSettings).length);
    for (const [name, value] of defaulted) {
      expect(dispatcherRows.get(name)?.default, name).toBe(shown(value));
    }
  });
});

// What resolveConsumeOptions returns besides the options, and the options it does not
// return: the compiler keeps both exact, so the settings' keys name every option.
type ConsumeOptionName = keyof ConsumeOptions<readonly AnyEventDefinition[]>;
const derivedSettings: Record<Exclude<keyof ConsumerSettings, ConsumeOptionName>, true> = {
  binding: true,
};
const notInSettings: Record<Exclude<ConsumeOptionName, keyof ConsumerSettings>, true> = {
  handler: true,
};

describe('consume', () => {
  const consumeRows = rowsOf('consume');
  const given = {
    broker: 'nats://127.0.0.1:4222',
    consumer: 'readme',
    database,
    events: [LessonPublished],
    handler: () => {},
  };

  it('lists every option of ConsumeOptions, and no other', () => {
    const settings = resolveConsumeOptions(given);
    const optionNames = [
      ...Object.keys(settings).filter((name) => !(name in derivedSettings)),
      ...Object.keys(notInSettings),
    ];
    expect([...consumeRows.keys()].sort()).toEqual(optionNames.sort());
  });

  it('shows the defaults resolveConsumeOptions applies', () => {
    const settings = resolveConsumeOptions(given);
    for (const name of Object.keys(given)) {
      expect(consumeRows.get(name)?.default, name).toBe('required');
    }
    const defaulted = Object.entries(settings).filter(
      ([name, value]) =>
        !(name in given) &&
        !(name in derivedSettings) &&
        (typeof value === 'number' || typeof value === 'string'),
    );
    expect(defaulted.length).toBeGreaterThan(10);
    for (const [name, value] of defaulted) {
      expect(consumeRows.get(name)?.default, name).toBe(shown(value));
    }
    expect(settings.inboxRetentionMs).toBeUndefined();
    expect(consumeRows.get('inboxRetentionMs')?.default).toMatch(/^none\b/);
  });
});

it('lists every option of each entry point, and no other', () => {
  const listed = (where: string) => [...rowsOf(where).keys()].sort();
  expect(listed('createOutbox')).toEqual([...outboxOptions].sort());
  expect(listed('createDispatcher')).toEqual([...dispatcherOptions].sort());
  expect(listed('consume')).toEqual([...consumeOptions].sort());
  expect(listed('createInbox')).toEqual([...inboxOptions].sort());
  expect(listed('pgDatabase')).toEqual([...pgDatabaseOptions].sort());
  // `isGlobal` is forRoot's own, which Nest takes off before the module sees the rest.
  expect(listed('OutboxModule')).toEqual([...moduleOptions, 'isGlobal'].sort());
});
