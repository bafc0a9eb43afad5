/** Pieces the pages share: figures, tables of events, the confirm step, error lines. */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { act } from './api.js';
import { count, time } from './format.js';
import type { PendingEvent, Selection } from './types.js';

export function Figure(props: {
  label: string;
  testid: string;
  children: ComponentChildren;
  warn?: boolean;
  /** Words rather than a number: a smaller type. */
  text?: boolean;
}) {
  return (
    <div class={props.warn ? 'figure warn' : 'figure'}>
      <div class="label">{props.label}</div>
      <div class={props.text ? 'value text' : 'value'} data-testid={props.testid}>
        {props.children}
      </div>
    </div>
  );
}

export function Problem(props: { error: string | undefined }) {
  return props.error ? (
    <p class="problem" role="alert" data-testid="problem">
      {props.error}
    </p>
  ) : null;
}

export interface Column<T> {
  title: string;
  cell: (row: T) => ComponentChildren;
}

/** A table of rows keyed by `key`; `empty` when there are none. */
export function Table<T>(props: {
  testid: string;
  columns: Column<T>[];
  rows: T[];
  rowKey: (row: T) => string;
  empty: string;
}) {
  if (props.rows.length === 0)
    return (
      <p class="empty" data-testid={`${props.testid}-empty`}>
        {props.empty}
      </p>
    );
  return (
    <table data-testid={props.testid}>
      <thead>
        <tr>
          {props.columns.map((column) => (
            <th key={column.title}>{column.title}</th>
          ))}
        </tr>
      </thead>
      <tbody>
        {props.rows.map((row) => (
          <tr key={props.rowKey(row)} data-testid={`${props.testid}-row`}>
            {props.columns.map((column) => (
              <td key={column.title}>{column.cell(row)}</td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Text that may be long and unbroken (an id, a type): wrapped anywhere, not widening its table. */
export const long = (text: string) => <span class="long">{text}</span>;

/** The columns every event table starts with; the id links to the dead letter when it is one. */
export function eventColumns<T extends PendingEvent>(linkDead: boolean): Column<T>[] {
  return [
    {
      title: 'event id',
      cell: (e) =>
        linkDead ? <a href={`#/dead-letters/${encodeURIComponent(e.id)}`}>{e.id}</a> : e.id,
    },
    { title: 'type', cell: (e) => long(e.eventType) },
    { title: 'aggregate', cell: (e) => long(`${e.aggregateType} ${e.aggregateId}`) },
    { title: 'seq', cell: (e) => e.seq },
    { title: 'occurred (UTC)', cell: (e) => time(e.occurredAt) },
    { title: 'attempts', cell: (e) => count(e.attempts) },
  ];
}

interface Pending {
  action: 'retry' | 'discard';
  selection: Selection;
  what: string;
}

/** What a retry or discard did: its sentence, and how many it touched and left. */
export interface Outcome {
  text: string;
  touched: number;
  /** Left where they were: another event, in the outbox or an earlier dead letter, has the same id. */
  left: number;
}

/**
 * What the last retry or discard did; the page keeps it, since the group may be gone. One
 * that left dead letters where they were reads as a warning, not as done.
 */
export function Touched(props: { outcome: Outcome | undefined }) {
  const outcome = props.outcome;
  return outcome ? (
    <p class={outcome.left > 0 ? 'result partial' : 'result'} role="status" data-testid="touched">
      {outcome.text}
    </p>
  ) : null;
}

/**
 * Retry and discard buttons with an in-page confirm step; `onDone` gets what the server
 * did. `choices` are the selections offered.
 */
export function Actions(props: {
  choices: { testid: string; label: string; what: string; selection: Selection | null }[];
  onDone: (outcome: Outcome) => void;
}) {
  const [pending, setPending] = useState<Pending>();
  const [error, setError] = useState<string>();
  const run = async ({ action, selection }: Pending) => {
    setPending(undefined);
    setError(undefined);
    try {
      const { ids, idTaken } = await act(action, selection);
      const plural = ids.length === 1 ? '' : 's';
      const left =
        idTaken.length === 0
          ? ''
          : ` ${count(idTaken.length)} left: another event has the same id, in the outbox or as an earlier dead letter (retry once that one is published, or discard).`;
      props.onDone({
        text: `${action === 'retry' ? 'Retried' : 'Discarded'} ${count(ids.length)} dead letter${plural}.${left}`,
        touched: ids.length,
        left: idTaken.length,
      });
    } catch (caught) {
      setError(caught instanceof Error ? caught.message : String(caught));
    }
  };
  return (
    <div class="actions">
      {props.choices.flatMap((choice) =>
        (['retry', 'discard'] as const).map((action) => (
          <button
            type="button"
            key={`${action}-${choice.testid}`}
            class={action}
            disabled={choice.selection === null}
            data-testid={`${action}-${choice.testid}`}
            onClick={() => {
              if (choice.selection)
                setPending({ action, selection: choice.selection, what: choice.what });
            }}
          >
            {action === 'retry' ? 'Retry' : 'Discard'} {choice.label}
          </button>
        )),
      )}
      {pending && (
        <div class="confirm" role="dialog" data-testid="confirm">
          <span>
            {pending.action === 'retry'
              ? `Move ${pending.what} back into the outbox, to be published again in their original order?`
              : `Delete ${pending.what} for good?`}
          </span>
          <button
            type="button"
            class={pending.action}
            data-testid="confirm-yes"
            onClick={() => void run(pending)}
          >
            {pending.action === 'retry' ? 'Retry' : 'Discard'}
          </button>
          <button type="button" data-testid="confirm-no" onClick={() => setPending(undefined)}>
            Cancel
          </button>
        </div>
      )}
      <Problem error={error} />
    </div>
  );
}
