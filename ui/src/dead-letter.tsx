/** One dead letter: payload, headers, attempts, error; retry or discard it. */
import { useState } from 'preact/hooks';
import { usePoll } from './api.js';
import { count, prettyJson, time } from './format.js';
import { Actions, type Outcome, Problem, Touched } from './parts.js';
import type { DeadLetterDetail } from './types.js';

export function DeadLetterPage({ id }: { id: string }) {
  const [touched, setTouched] = useState<Outcome>();
  // Once retried or discarded it is gone (404); stop asking. Left where it was (its id
  // taken in the outbox), it is still here: go on showing it.
  const gone = touched !== undefined && touched.touched > 0;
  const letter = usePoll<DeadLetterDetail>(gone ? null : `dead-letters/${encodeURIComponent(id)}`);
  const d = letter.data;
  return (
    <>
      <h2>
        Dead letter <code data-testid="detail-id">{id}</code>
      </h2>
      <p>
        <a href="#/dead-letters">← all dead letters</a>
      </p>
      <Touched outcome={touched} />
      {!gone && <Problem error={letter.error} />}
      {d && !gone && (
        <>
          <Actions
            choices={[
              {
                testid: 'one',
                label: 'this event',
                what: 'this dead letter',
                selection: { ids: [d.id] },
              },
            ]}
            onDone={setTouched}
          />
          <dl class="detail" data-testid="detail">
            <dt>event type</dt>
            <dd data-testid="detail-type">{d.eventType}</dd>
            <dt>aggregate</dt>
            <dd>
              {d.aggregateType} {d.aggregateId}
            </dd>
            <dt>partition · seq</dt>
            <dd>
              {d.partition} · {d.seq}
            </dd>
            <dt>occurred (UTC)</dt>
            <dd>{time(d.occurredAt)}</dd>
            <dt>dead since (UTC)</dt>
            <dd>{time(d.deadAt)}</dd>
            <dt>attempts</dt>
            <dd data-testid="detail-attempts">{count(d.attempts)}</dd>
            <dt>last error</dt>
            <dd>
              <pre class="error" data-testid="detail-error">
                {d.lastError}
              </pre>
            </dd>
          </dl>
          <h3>Payload</h3>
          <pre class="payload" data-testid="detail-payload">
            {prettyJson(d.payload)}
          </pre>
          <h3>Headers</h3>
          {Object.keys(d.headers).length === 0 ? (
            <p class="empty">none</p>
          ) : (
            <dl class="detail" data-testid="detail-headers">
              {Object.entries(d.headers).map(([name, value]) => [
                <dt key={`n-${name}`}>{name}</dt>,
                <dd key={`v-${name}`}>{value}</dd>,
              ])}
            </dl>
          )}
        </>
      )}
    </>
  );
}
