/**
 * docs/grafana-dashboard.json and docs/prometheus-alerts.yml against the code: every metric
 * their PromQL names is one that a running dispatcher (`run --metrics-port`) or a
 * consumer's registry (`consumerMetrics`) serves, so renaming a metric fails here; and the
 * rules file is the table "Alerts worth setting" of docs/operations.md, rule for rule.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Consumer, consume } from '../src/consumer/index.js';
import { QuizSubmitted } from '../src/index.js';
import { consumerMetrics } from '../src/ops/index.js';
import { AMQP_URL, testExchange, withAmqpChannel } from './helpers/amqp.js';
import { killChildren, spawnCli } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';

const doc = (name: string) => readFileSync(new URL(`../docs/${name}`, import.meta.url), 'utf8');

/** Metrics the files may name that come from elsewhere than our /metrics. */
const EXTERNAL: Record<string, string> = {
  probe_success: "the blackbox exporter's probe of /readyz (OutboxNotReady)",
};

/** PromQL's aggregations and the functions the files use: a word followed by `(`. */
const FUNCTIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'count',
  'topk',
  'bottomk',
  'quantile',
  'rate',
  'irate',
  'increase',
  'delta',
  'deriv',
  'histogram_quantile',
  'absent',
  'vector',
  'scalar',
  'max_over_time',
  'min_over_time',
  'avg_over_time',
]);

/** PromQL's keywords: words that are not metrics when not followed by `(`. */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The metric names an expression selects. Strings, label matchers (`{…}`), ranges and
 * subqueries (`[…]`) and the label lists of `by`, `without`, `on`, `ignoring`,
 * `group_left` and `group_right` are removed first, so no label name or Grafana variable
 * is taken for a metric; of the words left, one followed by `(` is a function (and must
 * be a known one), a keyword is skipped, and the rest are metrics.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\[[^\]]*\]/g, '[]')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?/g)) {
    const [, word = '', call] = match;
    // A keyword before a parenthesis (`or (…)`) is no call.
    if (KEYWORDS.has(word)) continue;
    if (call) {
      if (!FUNCTIONS.has(word)) throw new Error(`unknown PromQL function ${word} in ${expr}`);
    } else {
      names.add(word);
    }
  }
  return [...names];
}

/** Every series name a Prometheus text page can hold, from its `# TYPE` lines. */
function seriesNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [, name = '', type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (type === 'histogram') {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    } else if (type === 'summary') {
      for (const suffix of ['', '_sum', '_count']) names.add(name + suffix);
    } else {
      names.add(name);
    }
  }
  return names;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}

interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; definition?: string }[] };
}

interface Rule {
  alert: string;
  expr: string;
  for: string;
  annotations: { summary: string; description: string };
}

const dashboard = JSON.parse(doc('grafana-dashboard.json')) as Dashboard;
const rules = (
  parse(doc('prometheus-alerts.yml')) as { groups: { rules: Rule[] }[] }
).groups.flatMap((group) => group.rules);
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
const graphs = panels.filter((panel) => panel.type !== 'row');

/** The expressions of the dashboard (panels and template variables) and of the rules. */
const expressions: { where: string; expr: string }[] = [
  ...graphs.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}"`, expr: target.expr })),
  ),
  ...dashboard.templating.list.flatMap((variable) => {
    const metric = /^label_values\(\s*([^,)\s]+)\s*,/.exec(variable.definition ?? '')?.[1];
    return metric ? [{ where: `variable ${variable.name}`, expr: metric }] : [];
  }),
  ...rules.map((rule) => ({ where: `alert ${rule.alert}`, expr: rule.expr })),
];

it('reads metric names out of PromQL, not labels, functions, keywords or variables', () => {
  expect(
    metricNames(
      'histogram_quantile(0.99, sum by (consumer, le) (rate(a_bucket{consumer=~"$consumer", le!="x"}[$__rate_interval])))',
    ),
  ).toEqual(['a_bucket']);
  expect(metricNames('max(a) > 1e3 and deriv(max(b offset 5m)[15m:1m]) > 0 or vector(0)')).toEqual([
    'a',
    'b',
  ]);
  expect(metricNames('absent(c) or sum(d) < 64')).toEqual(['c', 'd']);
  expect(metricNames('e{job="x"} == 0 unless on (instance) f')).toEqual(['e', 'f']);
  expect(() => metricNames('ratee(g[5m])')).toThrow(/ratee/);
});

describe('against the metrics served', () => {
  let t: TestSchema;
  let consumer: Consumer | undefined;
  const exchange = testExchange();
  const served = new Set<string>();

  beforeAll(async () => {
    t = await createPgTestSchema('dashboards');
    const run = spawnCli(['run', '--schema', t.schema, '--broker', 'log:', '--metrics-port', '0'], {
      env: { DATABASE_URL: PG_URL },
    });
    let port = 0;
    await run.waitFor('the endpoints', () => {
      const line = run.stderr.split('\n').find((l) => l.includes('serving /metrics'));
      if (line) port = (JSON.parse(line) as { port: number }).port;
      return port > 0;
    });
    const dispatcherPage = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    consumer = await consume({
      broker: `${AMQP_URL}?exchange=${exchange}`,
      consumer: 'dashboards',
      database: t.db,
      schema: t.schema,
      events: [QuizSubmitted],
      handler: () => {},
    });
    const consumerPage = await consumerMetrics({ consumer, name: 'dashboards' }).metrics();
    for (const name of [...seriesNames(dispatcherPage), ...seriesNames(consumerPage)]) {
      served.add(name);
    }
  }, 60_000);

  afterAll(async () => {
    await consumer?.stop();
    await withAmqpChannel(async (channel) => {
      await channel.deleteQueue(`${exchange}.dashboards`);
      await channel.deleteExchange(exchange);
    }).catch(() => {});
    await killChildren();
    await t?.drop();
  });

  it('serves what the files expect (a dispatcher and a consumer)', () => {
    for (const name of [
      'outbox_pending_events',
      'outbox_publish_latency_seconds_bucket',
      'outbox_dead_letters_purged_total',
      'consumer_events_processed_total',
      'consumer_event_age_seconds_bucket',
    ]) {
      expect(served, name).toContain(name);
    }
  });

  it('every metric the dashboard and the alert rules name is served', () => {
    const missing = expressions.flatMap(({ where, expr }) =>
      metricNames(expr)
        .filter((name) => !served.has(name) && !(name in EXTERNAL))
        .map((name) => `${where}: ${name}`),
    );
    expect(missing).toEqual([]);
    const named = new Set(expressions.flatMap(({ expr }) => metricNames(expr)));
    // The dashboard shows what the issue asks for: backlog, age, rate, latency, dead
    // letters, partitions, the consumers' processed events and the inbox's duplicates.
    for (const name of [
      'outbox_pending_events',
      'outbox_oldest_pending_age_seconds',
      'outbox_events_published_total',
      'outbox_publish_latency_seconds_bucket',
      'outbox_dead_letters',
      'outbox_owned_partitions',
      'consumer_events_processed_total',
      'inbox_duplicates_total',
      'consumer_backlog_messages',
    ]) {
      expect(named, name).toContain(name);
    }
  });
});

/** Grafana's reference to the data source picked in the dashboard's `datasource` variable. */
const CHOSEN_DATASOURCE = `$\{datasource}`;

describe('docs/grafana-dashboard.json', () => {
  it('has panels with unique ids, each querying the chosen Prometheus', () => {
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(graphs.length).toBeGreaterThan(10);
    for (const panel of graphs) {
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      expect(panel.datasource?.uid, panel.title).toBe(CHOSEN_DATASOURCE);
      for (const target of panel.targets ?? []) {
        expect(target.datasource?.uid, panel.title).toBe(CHOSEN_DATASOURCE);
      }
    }
  });
});

describe('docs/prometheus-alerts.yml', () => {
  /** The rows of the table under `## Alerts worth setting`: alert, expression, for. */
  function table(): { alert: string; expr: string; for: string }[] {
    const section = doc('operations.md').split('\n## Alerts worth setting\n')[1]?.split('\n## ')[0];
    return (section ?? '')
      .split('\n')
      .filter((line) => line.startsWith('|'))
      .slice(2)
      .map((line) => {
        const [alert = '', expr = '', duration = ''] = line
          .slice(1, -1)
          .split('|')
          .map((cell) => cell.trim());
        return { alert, expr: expr.replace(/^`|`$/g, ''), for: duration };
      });
  }

  it('is the table of docs/operations.md, rule for rule', () => {
    const rows = table();
    expect(rows.length).toBeGreaterThan(5);
    expect(rules.map((rule) => ({ alert: rule.alert, expr: rule.expr, for: rule.for }))).toEqual(
      rows,
    );
  });

  it('gives every rule a severity, a summary and a description', () => {
    for (const rule of rules as (Rule & { labels?: { severity?: string } })[]) {
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations.summary, rule.alert).toBeTruthy();
      expect(rule.annotations.description, rule.alert).toBeTruthy();
    }
  });
});
