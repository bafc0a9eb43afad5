/** An event by id, or an aggregate's events: pending, dead, and parked by consumers. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { query, usePoll } from './api.js';
import { count, time } from './format.js';
import { type Column, eventColumns, long, Problem, Table } from './parts.js';
import type { ConsumerDeadLetter, DeadLetter, PendingEvent, SearchResult } from './types.js';

/** An event table with the last error at the end (a pending event has one after a failure). */
const withError = <T extends PendingEvent>(linkDead: boolean): Column<T>[] => [
  ...eventColumns<T>(linkDead),
  { title: 'last error', cell: (e) => <span class="error">{e.lastError ?? ''}</span> },
];

export function SearchPage({ q }: { q: string }) {
  const [text, setText] = useState(q);
  // A new search in the address (a link, back, forward) replaces the field's text. Not on
  // mount: the effect runs after the first paint, and would wipe what was typed since.
  const shown = useRef(q);
  useEffect(() => {
    if (shown.current === q) return;
    shown.current = q;
    setText(q);
  }, [q]);
  const result = usePoll<SearchResult>(q ? `search${query({ q })}` : null);
  const r = result.data;
  return (
    <>
      <h2>Search</h2>
      <form
        class="search"
        onSubmit={(event) => {
          event.preventDefault();
          location.hash = `#/search${query({ q: text.trim() })}`;
        }}
      >
        <input
          type="search"
          placeholder="event id or aggregate id"
          aria-label="event id or aggregate id"
          data-testid="search-input"
          value={text}
          onInput={(event) => setText(event.currentTarget.value)}
        />
        <button type="submit" data-testid="search-submit">
          Search
        </button>
      </form>
      <Problem error={result.error} />
      {r && r.pending.length + r.deadLetters.length + r.consumerDeadLetters.length === 0 && (
        <p class="empty" data-testid="search-nothing">
          Found nowhere here. An event leaves the outbox once the broker has acknowledged it, so an
          event that was published, and that no consumer parked, is not kept: look for it on the
          broker, or in a consumer's inbox table. Search takes a whole event id or aggregate id.
        </p>
      )}
      {r && (
        <>
          <h3>Pending in the outbox ({count(r.pending.length)})</h3>
          <Table
            testid="search-pending"
            rowKey={(e) => e.id}
            empty="None pending."
            rows={r.pending}
            columns={withError<PendingEvent>(false)}
          />
          <h3>Dead letters ({count(r.deadLetters.length)})</h3>
          <Table
            testid="search-dead"
            rowKey={(e) => e.id}
            empty="No dead letters."
            rows={r.deadLetters}
            columns={withError<DeadLetter>(true)}
          />
          <h3>Parked by consumers ({count(r.consumerDeadLetters.length)})</h3>
          <Table<ConsumerDeadLetter>
            testid="search-consumer"
            rowKey={(e) => e.id}
            empty="No consumer dead letters."
            rows={r.consumerDeadLetters}
            columns={[
              { title: 'consumer', cell: (e) => long(e.consumer) },
              { title: 'event id', cell: (e) => long(e.eventId ?? '') },
              { title: 'type', cell: (e) => long(e.eventType ?? '') },
              { title: 'aggregate', cell: (e) => long(e.aggregateId ?? '') },
              { title: 'sequence', cell: (e) => e.sequence ?? '' },
              { title: 'attempts', cell: (e) => count(e.attempts) },
              { title: 'dead since (UTC)', cell: (e) => time(e.deadAt) },
              { title: 'last error', cell: (e) => <span class="error">{e.lastError}</span> },
            ]}
          />
        </>
      )}
    </>
  );
}
