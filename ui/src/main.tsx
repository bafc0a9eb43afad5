/** The console: a header, hash routes, and the token form whenever the API asks for it. */
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { useTokenNeeded } from './api.js';
import { DeadLetterPage } from './dead-letter.js';
import { DeadLettersPage } from './dead-letters.js';
import { OverviewPage } from './overview.js';
import { PartitionsPage } from './partitions.js';
import { SearchPage } from './search.js';
import { TokenForm } from './token.js';

interface Route {
  page: 'overview' | 'partitions' | 'dead-letters' | 'dead-letter' | 'search';
  id?: string;
  q?: string;
}

export function parseRoute(hash: string): Route {
  const [path = '', search = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'partitions') return { page: 'partitions' };
  if (parts[0] === 'dead-letters' && parts[1]) return { page: 'dead-letter', id: parts[1] };
  if (parts[0] === 'dead-letters') return { page: 'dead-letters' };
  if (parts[0] === 'search')
    return { page: 'search', q: new URLSearchParams(search).get('q') ?? '' };
  return { page: 'overview' };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onHash = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  return route;
}

const NAV = [
  ['overview', '#/', 'Overview'],
  ['partitions', '#/partitions', 'Partitions'],
  ['dead-letters', '#/dead-letters', 'Dead letters'],
  ['search', '#/search', 'Search'],
] as const;

function App() {
  const route = useRoute();
  const tokenNeeded = useTokenNeeded();
  const current = route.page === 'dead-letter' ? 'dead-letters' : route.page;
  return (
    <>
      <header>
        <h1>EduPulse Outbox</h1>
        <nav>
          {NAV.map(([page, href, label]) => (
            <a
              key={page}
              href={href}
              class={page === current ? 'current' : ''}
              data-testid={`nav-${page}`}
            >
              {label}
            </a>
          ))}
        </nav>
      </header>
      <main>
        {tokenNeeded ? (
          <TokenForm />
        ) : route.page === 'partitions' ? (
          <PartitionsPage />
        ) : route.page === 'dead-letters' ? (
          <DeadLettersPage />
        ) : route.page === 'dead-letter' ? (
          <DeadLetterPage id={route.id ?? ''} />
        ) : route.page === 'search' ? (
          <SearchPage q={route.q ?? ''} />
        ) : (
          <OverviewPage />
        )}
      </main>
    </>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
