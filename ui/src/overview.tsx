/** "Is it keeping up?": the figures now, and the last minutes as charts. */
import { usePoll } from './api.js';
import { Chart, type Series } from './chart.js';
import { age, count } from './format.js';
import { Figure, Problem } from './parts.js';
import type { History, Overview } from './types.js';

const BACKLOG: Series[] = [{ label: 'pending', stroke: '#2563eb' }];
const RATE: Series[] = [{ label: 'published/s', stroke: '#059669' }];
const LATENCY: Series[] = [
  { label: 'p50', stroke: '#7c3aed' },
  { label: 'p99', stroke: '#dc2626' },
];

function Broker({ overview }: { overview: Overview }) {
  const d = overview.dispatcher;
  if (!d)
    return (
      <>
        not known: served by <code>edupulse-outbox ui</code>
      </>
    );
  const broker = d.brokerHealthy
    ? 'connected'
    : `unhealthy${d.brokerError ? ` (${d.brokerError})` : ''}`;
  return (
    <>
      {d.broker}: {broker}; this dispatcher {d.state}, {count(d.published)} published,{' '}
      {count(d.deadLettered)} dead-lettered
    </>
  );
}

function Charts({ history }: { history: History }) {
  const samples = history.samples;
  const t = samples.map((s) => s.t / 1000);
  const hasLatency = samples.some((s) => s.latencyP50Ms !== null || s.latencyP99Ms !== null);
  return (
    <div class="charts">
      <Chart
        testid="chart-backlog"
        title="Backlog"
        unit="events"
        series={BACKLOG}
        data={[t, samples.map((s) => s.pending)]}
      />
      <Chart
        testid="chart-rate"
        title="Publish rate"
        unit="events/s"
        series={RATE}
        data={[t, samples.map((s) => s.publishedPerSecond)]}
      />
      {hasLatency ? (
        <Chart
          testid="chart-latency"
          title="Occurred → ack latency"
          unit="ms"
          series={LATENCY}
          data={[t, samples.map((s) => s.latencyP50Ms), samples.map((s) => s.latencyP99Ms)]}
        />
      ) : (
        <section class="chart" data-testid="chart-latency-absent">
          <h3>Occurred → ack latency</h3>
          <p class="empty">
            Known only to a dispatcher: it shows when the console is served by{' '}
            <code>edupulse-outbox run --ui-port</code>.
          </p>
        </section>
      )}
    </div>
  );
}

export function OverviewPage() {
  const overview = usePoll<Overview>('overview');
  const history = usePoll<History>('history');
  const o = overview.data;
  const s = o?.status;
  return (
    <>
      <h2>Overview{s ? <span class="schema"> · schema {s.schema}</span> : null}</h2>
      <Problem error={overview.error ?? history.error} />
      {o && s && (
        <div class="figures">
          <Figure label="Pending events" testid="pending">
            {count(s.pending)}
          </Figure>
          <Figure label="Oldest pending" testid="oldest-age" warn={s.oldestAgeSeconds > 60}>
            {s.pending > 0 ? age(s.oldestAgeSeconds) : '—'}
          </Figure>
          <Figure label="Dead letters" testid="dead-letters" warn={s.deadLetters > 0}>
            <a href="#/dead-letters">{count(s.deadLetters)}</a>
          </Figure>
          <Figure label="Oldest dead letter" testid="oldest-dead-letter">
            {s.deadLetters > 0 ? `${age(s.oldestDeadLetterAgeSeconds)} ago` : '—'}
          </Figure>
          <Figure
            label="Consumer dead letters"
            testid="consumer-dead-letters"
            warn={s.consumerDeadLetters > 0}
          >
            {count(s.consumerDeadLetters)}
          </Figure>
          <Figure
            label="Dispatchers connected"
            testid="dispatchers"
            warn={s.dispatchers.length === 0}
          >
            <a href="#/partitions">{count(s.dispatchers.length)}</a>
            {s.dispatchers.length === 0 ? ' · none: nothing is published' : null}
          </Figure>
          <Figure label="Broker" testid="broker" text warn={o.dispatcher?.brokerHealthy === false}>
            <Broker overview={o} />
          </Figure>
        </div>
      )}
      {history.data && <Charts history={history.data} />}
    </>
  );
}
