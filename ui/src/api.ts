/**
 * Calls to the admin API. The token (needed when the console is bound beyond loopback) is
 * kept for the tab in sessionStorage and sent as a header on every call, never in a URL.
 * A 401 from any call asks the page for the token.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Selection } from './types.js';

const TOKEN_KEY = 'edupulse-outbox-console-token';
const POLL_MS = 2000;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Listener = (needed: boolean) => void;
const listeners = new Set<Listener>();
let tokenNeeded = false;

function setTokenNeeded(needed: boolean): void {
  tokenNeeded = needed;
  for (const listener of listeners) listener(needed);
}

/** Whether this tab holds a token (so a 401 means the server refused it). */
export const hasToken = () => sessionStorage.getItem(TOKEN_KEY) !== null;

export function saveToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
  setTokenNeeded(false);
}

/** True while the server has refused the token (or its absence) and no new one was given. */
export function useTokenNeeded(): boolean {
  const [needed, setNeeded] = useState(tokenNeeded);
  useEffect(() => {
    listeners.add(setNeeded);
    return () => listeners.delete(setNeeded);
  }, []);
  return needed;
}

/** Query string of the non-empty fields, or ''. */
export function query(params: Record<string, string | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : '';
}

async function call<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set('authorization', `Bearer ${token}`);
  // Relative to the page, so the console also works behind a path prefix.
  const response = await fetch(`api/${path}`, { ...init, headers, cache: 'no-store' });
  if (response.status === 401) setTokenNeeded(true);
  if (!response.ok) {
    const body = (await response.json().catch(() => null)) as { error?: string } | null;
    throw new ApiError(response.status, body?.error ?? `${response.status} ${response.statusText}`);
  }
  return (await response.json()) as T;
}

export const get = <T>(path: string) => call<T>(path);

/** POST /api/dead-letters/{retry|discard}; the ids touched, and those a retry left (id taken). */
export async function act(
  action: 'retry' | 'discard',
  selection: Selection,
): Promise<{ ids: string[]; idTaken: string[] }> {
  const { ids, idTaken } = await call<{ ids: string[]; idTaken?: string[] }>(
    `dead-letters/${action}`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(selection),
    },
  );
  return { ids, idTaken: idTaken ?? [] };
}

export interface Polled<T> {
  data: T | undefined;
  error: string | undefined;
  /** Fetch again now (after an action). */
  refresh(): void;
}

/**
 * GETs `path` now and every 2 s while the page is visible and the token is not wanted;
 * `null` fetches nothing. Keeps the last good answer while a later call fails.
 */
export function usePoll<T>(path: string | null): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const [tick, setTick] = useState(0);
  const needed = useTokenNeeded();
  useEffect(() => {
    setData(undefined);
    setError(undefined);
  }, [path]);
  useEffect(() => {
    if (path === null || needed) return;
    let stopped = false;
    let busy = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      clearTimeout(timer);
      if (busy || document.visibilityState !== 'visible') return;
      busy = true;
      try {
        const answer = await get<T>(path);
        if (stopped) return;
        setData(answer);
        setError(undefined);
      } catch (caught) {
        if (!stopped) setError(caught instanceof Error ? caught.message : String(caught));
      }
      busy = false;
      if (!stopped) timer = setTimeout(poll, POLL_MS);
    };
    const onVisibility = () => void poll();
    document.addEventListener('visibilitychange', onVisibility);
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisibility);
    };
  }, [path, needed, tick]);
  return { data, error, refresh: () => setTick((n) => n + 1) };
}
