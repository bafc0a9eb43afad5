import {
  type DeadLetterFilter,
  deadLettersWithIdTaken,
  discardDeadLetters,
  groupDeadLetters,
  listDeadLetters,
  retryDeadLetters,
  showDeadLetter,
} from '../admin/dead-letters.js';
import { searchEvents } from '../admin/search.js';
import { type OutboxStatus, outboxStatus } from '../admin/status.js';
import {
  assertTimeWindow,
  filterText,
  parseEventIds,
  parseTime,
  untouched,
} from '../common/admin-input.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import { wholeNumber } from '../common/numbers.js';
import { scrubSecrets } from '../common/secrets.js';
import { SCAN_DUTY, SharedCheck } from '../common/shared-check.js';
import { isDatabaseUnavailable, waitedForPool } from '../db/connection-errors.js';
import type { Database } from '../db/database.js';
import type { Executor } from '../db/executor.js';
import { type PrivilegedPart, privilegeErrorOf } from '../db/privileges.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import type { History } from './history.js';

/** What the admin API answers from. */
export interface ConsoleApiOptions {
  /** Its own pool, apart from a dispatcher's: a request never takes a claim's connection. */
  db: Database;
  schema: string;
  history: History;
  status: SharedStatus;
  /** The dispatcher serving the console (`run --ui-port`), and its broker's name. */
  dispatcher?: Dispatcher | undefined;
  brokerName?: string | undefined;
}

/** How long the pages share one status at least: each page asks every 2 s. */
const STATUS_SHARED_MS = 1000;

/**
 * The schema's status, shared by every open page: one is computed at a time, and its
 * answer serves each page for a second, or nine times as long as it took (its counts
 * scan the backlog; a long one would otherwise be scanned for each page every 2 s).
 * Forgotten after an action, so the page that acted sees its effect.
 */
export class SharedStatus {
  private readonly check = new SharedCheck<OutboxStatus>(SCAN_DUTY);

  constructor(
    private readonly db: Executor,
    private readonly schema: string,
  ) {}

  async get(now = Date.now()): Promise<OutboxStatus> {
    const outcome = await this.check.get(
      () => outboxStatus(this.db, this.schema),
      STATUS_SHARED_MS,
      now,
    );
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  forget(): void {
    this.check.forget();
  }
}

export interface ApiAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** A request the API does not serve: 404 or 405 (bad input is a ConfigError: 400). */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The methods the path takes, for a 405's `Allow`. */
    readonly allow?: string,
  ) {
    super(message);
  }
}

const IDS_MAX = 10_000;
const FILTER_FIELDS = [
  'eventType',
  'aggregateType',
  'aggregateId',
  'error',
  'errorContains',
  'since',
  'until',
] as const;
type FilterField = (typeof FILTER_FIELDS)[number];

/**
 * A filter from query parameters or a JSON object; the same fields, checked alike, named
 * in errors as given (`since`, or `filter.since` in a body).
 */
function parseFilter(read: (field: FilterField) => unknown, prefix = ''): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  for (const field of FILTER_FIELDS) {
    const value = read(field);
    if (value === undefined || value === null) continue;
    const named = `${prefix}${field}`;
    if (field === 'since' || field === 'until') {
      filter[field] = parseTime(named, filterText(named, value));
    } else {
      filter[field] = filterText(named, value);
    }
  }
  assertTimeWindow(filter.since, filter.until, {
    since: `${prefix}since`,
    until: `${prefix}until`,
  });
  return filter;
}

/**
 * Refuses a query parameter the endpoint does not read, or one given twice: a misspelt
 * filter (`eventtype`) would otherwise widen the answer to every dead letter.
 */
function checkQuery(query: URLSearchParams, allowed: readonly string[]): void {
  for (const name of new Set(query.keys())) {
    if (!allowed.includes(name)) {
      throw new ConfigError(
        name,
        `unknown query parameter (${allowed.length > 0 ? `expected ${allowed.join(', ')}` : 'this endpoint takes none'})`,
      );
    }
    if (query.getAll(name).length > 1) throw new ConfigError(name, 'given more than once');
  }
}

function queryFilter(query: URLSearchParams, more: readonly string[] = []): DeadLetterFilter {
  checkQuery(query, [...FILTER_FIELDS, ...more]);
  return parseFilter((field) => query.get(field) ?? undefined);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A retry or discard body: `{ ids?, filter?, all? }`, nothing else. */
function parseSelection(body: unknown): { filter: DeadLetterFilter; all: boolean } {
  if (!isObject(body)) throw new ConfigError('body', 'expected a JSON object');
  for (const key of Object.keys(body)) {
    if (!['ids', 'filter', 'all'].includes(key)) {
      throw new ConfigError(key, 'unknown field (expected ids, filter or all)');
    }
  }
  const { ids, filter, all } = body;
  if (all !== undefined && typeof all !== 'boolean') {
    throw new ConfigError('all', 'expected true or false');
  }
  if (filter !== undefined && !isObject(filter)) {
    throw new ConfigError('filter', 'expected an object');
  }
  for (const key of Object.keys(filter ?? {})) {
    if (!(FILTER_FIELDS as readonly string[]).includes(key)) {
      throw new ConfigError(
        `filter.${key}`,
        `unknown field (expected ${FILTER_FIELDS.join(', ')})`,
      );
    }
  }
  const selected = parseFilter(
    (field) => (filter as Record<string, unknown> | undefined)?.[field],
    'filter.',
  );
  if (ids !== undefined) {
    if (!Array.isArray(ids) || ids.length > IDS_MAX || ids.some((id) => typeof id !== 'string')) {
      throw new ConfigError('ids', `expected an array of at most ${IDS_MAX} event ids`);
    }
    if (ids.length === 0) throw new ConfigError('ids', 'is empty');
    selected.ids = parseEventIds('ids', ids as string[]);
  }
  return { filter: selected, all: all === true };
}

function limitOf(query: URLSearchParams): number {
  const raw = query.get('limit');
  return raw === null ? 100 : wholeNumber('limit', raw, 1, 1000);
}

/** The serving dispatcher's own view, null when the console runs apart (`ui`). */
function dispatcherView(options: ConsoleApiOptions) {
  const { dispatcher } = options;
  if (!dispatcher) return null;
  const health = dispatcher.health();
  const brokerProblem = health.problem?.target === 'broker' ? health.problem.message : undefined;
  return {
    broker: options.brokerName ?? 'unknown',
    brokerHealthy: health.brokerConnected && brokerProblem === undefined,
    ...(brokerProblem !== undefined ? { brokerError: scrubSecrets(brokerProblem) } : {}),
    state: health.state,
    published: dispatcher.stats.published,
    retried: dispatcher.stats.retried,
    deadLettered: dispatcher.stats.deadLettered,
  };
}

const DEAD_LETTER = /^\/api\/dead-letters\/([^/]+)$/;

/**
 * Answers one admin API request (docs/console-api.yaml). `body` is the parsed JSON of a
 * POST. Bad input is a 400 naming the field; the answers are the CLI's (`status --json`,
 * `dead list|show|retry|discard`), from the same functions.
 */
export async function answerApi(
  options: ConsoleApiOptions,
  method: string,
  path: string,
  query: URLSearchParams,
  body?: unknown,
): Promise<ApiAnswer> {
  const { db, schema } = options;
  const get = method === 'GET' || method === 'HEAD';
  try {
    if (path === '/api/dead-letters/retry' || path === '/api/dead-letters/discard') {
      if (method !== 'POST') throw new ApiError(405, 'use POST', 'POST');
      checkQuery(query, []);
      const { filter, all } = parseSelection(body);
      const retry = path.endsWith('/retry');
      const ids = retry
        ? await retryDeadLetters(db, schema, filter, { all })
        : await discardDeadLetters(db, schema, filter, { all });
      options.status.forget();
      // Left behind by a retry: another event (in the outbox, or an earlier dead letter) has the id.
      const idTaken = retry ? await deadLettersWithIdTaken(db, schema, filter) : [];
      const taken = idTaken.length > 0 ? { idTaken } : {};
      // Ids asked for that were not dead letters (any more): the CLI's exit 1.
      if (filter.ids === undefined) return { status: 200, body: { ids, ...taken } };
      return {
        status: 200,
        body: { ids, ...taken, notFound: untouched(filter.ids, [...ids, ...idTaken]) },
      };
    }
    if (!get) throw new ApiError(405, 'use GET', 'GET, HEAD');
    if (path !== '/api/dead-letters' && path !== '/api/dead-letters/groups') {
      checkQuery(query, path === '/api/search' ? ['q'] : []);
    }
    switch (path) {
      case '/api/overview':
        return {
          status: 200,
          body: { status: await options.status.get(), dispatcher: dispatcherView(options) },
        };
      case '/api/history':
        return {
          status: 200,
          body: { intervalMs: options.history.intervalMs, samples: options.history.list() },
        };
      case '/api/dead-letters': {
        const filter = queryFilter(query, ['limit']);
        const limit = limitOf(query);
        const found = await listDeadLetters(db, schema, filter, limit + 1);
        return {
          status: 200,
          body: { deadLetters: found.slice(0, limit), truncated: found.length > limit },
        };
      }
      case '/api/dead-letters/groups':
        return {
          status: 200,
          body: { groups: await groupDeadLetters(db, schema, queryFilter(query)) },
        };
      case '/api/search': {
        const q = filterText('q', query.get('q') ?? '').trim();
        if (q === '') throw new ConfigError('q', 'expected an event id or an aggregate id');
        return { status: 200, body: await searchEvents(db, schema, q) };
      }
    }
    const id = DEAD_LETTER.exec(path)?.[1];
    if (id !== undefined) {
      const [checked] = parseEventIds('id', [id]);
      const found = checked === undefined ? undefined : await showDeadLetter(db, schema, checked);
      if (!found) throw new ApiError(404, `no dead letter ${checked}`);
      return { status: 200, body: found };
    }
    throw new ApiError(404, `no such endpoint: ${path}`);
  } catch (error) {
    if (error instanceof ApiError) {
      return {
        status: error.status,
        body: { error: error.message },
        ...(error.allow ? { headers: { allow: error.allow } } : {}),
      };
    }
    if (error instanceof ConfigError) {
      return { status: 400, body: { error: error.message, field: error.setting } };
    }
    // Reasons quote servers' and libraries' words: swept for the settings' secrets.
    if (isDatabaseUnavailable(error)) {
      // Not the request's fault nor the console's: the page asks again, and answers once
      // the database does. An action cut off may have been applied or not.
      const action = get ? '' : '; whether the action took effect shows once it is back';
      const reason = scrubSecrets(errorMessage(error));
      // Every connection of the console's pool busy for the whole connect timeout: no
      // outage, but the console cannot reach the database all the same.
      const what = waitedForPool(error)
        ? "the console's database connections are all busy"
        : 'the database is unavailable';
      return {
        status: 503,
        body: { error: `${what} (${reason})${action}` },
        headers: { 'retry-after': '2' },
      };
    }
    // A role without the operator's grants: which role, and what to grant (to look, or to act).
    const parts: PrivilegedPart[] = get ? ['observe'] : ['operate', 'observe'];
    const refused = await privilegeErrorOf(error, db, schema, parts).catch(() => undefined);
    return { status: 500, body: { error: scrubSecrets(errorMessage(refused ?? error)) } };
  }
}
