/**
 * "What failed, and can I replay it?": dead letters grouped by event type and last error,
 * a filter, one group's dead letters, and retry or discard for a selection or a group.
 */
import { useState } from 'preact/hooks';
import { query, usePoll } from './api.js';
import { count, time } from './format.js';
import { Actions, eventColumns, type Outcome, Problem, Table, Touched } from './parts.js';
import type { DeadLetter, DeadLetterFilter, DeadLetterGroup, DeadLetterPage } from './types.js';

const FIELDS = [
  ['eventType', 'event type', 'text'],
  ['aggregateType', 'aggregate type', 'text'],
  ['aggregateId', 'aggregate id', 'text'],
  ['errorContains', 'error contains', 'text'],
  ['since', 'dead since (UTC)', 'datetime-local'],
  ['until', 'dead until (UTC)', 'datetime-local'],
] as const;

type Draft = Record<(typeof FIELDS)[number][0], string>;
const EMPTY: Draft = {
  eventType: '',
  aggregateType: '',
  aggregateId: '',
  errorContains: '',
  since: '',
  until: '',
};

/**
 * The form's values as the API's filter: times are read as UTC, as every time the page
 * shows (a time copied from a group's "first seen" finds it in any time zone).
 */
function toFilter(draft: Draft): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  for (const [name] of FIELDS) {
    const value = draft[name].trim();
    if (!value) continue;
    filter[name] =
      name === 'since' || name === 'until' ? new Date(`${value}Z`).toISOString() : value;
  }
  return filter;
}

function FilterForm(props: { onApply: (filter: DeadLetterFilter) => void }) {
  const [draft, setDraft] = useState<Draft>(EMPTY);
  return (
    <form
      class="filter"
      data-testid="filter"
      onSubmit={(event) => {
        event.preventDefault();
        props.onApply(toFilter(draft));
      }}
    >
      {FIELDS.map(([name, label, type]) => {
        const field = {
          id: `filter-${name}`,
          value: draft[name],
          'data-testid': `filter-${name}`,
          onInput: (event: { currentTarget: HTMLInputElement }) =>
            setDraft({ ...draft, [name]: event.currentTarget.value }),
        };
        return (
          <label key={name} for={`filter-${name}`}>
            {label}
            {type === 'text' ? (
              <input type="text" {...field} />
            ) : (
              <input type="datetime-local" {...field} />
            )}
          </label>
        );
      })}
      <button type="submit" data-testid="filter-apply">
        Filter
      </button>
      <button
        type="button"
        onClick={() => {
          setDraft(EMPTY);
          props.onApply({});
        }}
      >
        Clear
      </button>
    </form>
  );
}

type GroupKey = Pick<DeadLetterGroup, 'eventType' | 'error'>;

function GroupLetters(props: {
  filter: DeadLetterFilter;
  group: DeadLetterGroup;
  onDone: (outcome: Outcome) => void;
}) {
  const groupFilter = {
    ...props.filter,
    eventType: props.group.eventType,
    error: props.group.error,
  };
  const letters = usePoll<DeadLetterPage>(`dead-letters${query(groupFilter)}`);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const rows = letters.data?.deadLetters ?? [];
  const toggle = (id: string) => {
    const next = new Set(selected);
    if (!next.delete(id)) next.add(id);
    setSelected(next);
  };
  const chosen = rows.filter((d) => selected.has(d.id)).map((d) => d.id);
  return (
    <section class="group" data-testid="group-letters">
      <h3>
        {props.group.eventType}: {count(props.group.count)} dead letter
        {props.group.count === 1 ? '' : 's'}
      </h3>
      <pre class="error">{props.group.error}</pre>
      <Actions
        choices={[
          {
            testid: 'selected',
            label: `selected (${chosen.length})`,
            what: `${count(chosen.length)} selected dead letter${chosen.length === 1 ? '' : 's'}`,
            selection: chosen.length > 0 ? { ids: chosen } : null,
          },
          {
            testid: 'group',
            label: 'group',
            what: `every dead letter of this group (${count(props.group.count)})`,
            selection: { filter: groupFilter },
          },
        ]}
        onDone={(outcome) => {
          setSelected(new Set());
          letters.refresh();
          props.onDone(outcome);
        }}
      />
      <Problem error={letters.error} />
      <Table
        testid="letters"
        rowKey={(d) => d.id}
        empty="No dead letters left in this group."
        rows={rows}
        columns={[
          {
            title: '',
            cell: (d) => (
              <input
                type="checkbox"
                aria-label={`select ${d.id}`}
                data-testid="select"
                checked={selected.has(d.id)}
                onChange={() => toggle(d.id)}
              />
            ),
          },
          ...eventColumns<DeadLetter>(true),
          { title: 'dead since (UTC)', cell: (d) => time(d.deadAt) },
        ]}
      />
      {letters.data?.truncated && (
        <p class="empty">Showing the oldest {count(rows.length)}; the group action covers all.</p>
      )}
    </section>
  );
}

const sameGroup = (a: GroupKey | undefined, b: GroupKey) =>
  a?.eventType === b.eventType && a.error === b.error;

export function DeadLettersPage() {
  const [filter, setFilter] = useState<DeadLetterFilter>({});
  const [open, setOpen] = useState<GroupKey>();
  const [touched, setTouched] = useState<Outcome>();
  const groups = usePoll<{ groups: DeadLetterGroup[] }>(
    `dead-letters/groups${query({ ...filter })}`,
  );
  const list = groups.data?.groups ?? [];
  const openGroup = list.find((g) => sameGroup(open, g));
  return (
    <>
      <h2>Dead letters</h2>
      <FilterForm
        onApply={(next) => {
          setFilter(next);
          setOpen(undefined);
        }}
      />
      <Problem error={groups.error} />
      <Touched outcome={touched} />
      {groups.data && (
        <Table
          testid="groups"
          rowKey={(g) => `${g.eventType}\n${g.error}`}
          empty="No dead letters match."
          rows={list}
          columns={[
            {
              title: 'event type',
              cell: (g) => (
                <button
                  type="button"
                  class={sameGroup(open, g) ? 'link current' : 'link'}
                  data-testid="group-open"
                  onClick={() => {
                    setOpen({ eventType: g.eventType, error: g.error });
                    setTouched(undefined);
                  }}
                >
                  {g.eventType}
                </button>
              ),
            },
            { title: 'last error', cell: (g) => <span class="error">{g.error}</span> },
            { title: 'count', cell: (g) => count(g.count) },
            { title: 'first seen (UTC)', cell: (g) => time(g.firstDeadAt) },
            { title: 'last seen (UTC)', cell: (g) => time(g.lastDeadAt) },
          ]}
        />
      )}
      {openGroup && (
        <GroupLetters
          key={`${openGroup.eventType}\n${openGroup.error}`}
          filter={filter}
          group={openGroup}
          onDone={(outcome) => {
            setTouched(outcome);
            groups.refresh();
          }}
        />
      )}
    </>
  );
}
