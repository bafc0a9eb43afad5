/** Asks for the console's token after the API answered 401; keeps it for this tab only. */
import { useState } from 'preact/hooks';
import { hasToken, saveToken } from './api.js';

export function TokenForm() {
  const [token, setToken] = useState('');
  return (
    <form
      class="token"
      data-testid="token-form"
      onSubmit={(event) => {
        event.preventDefault();
        if (token.trim()) saveToken(token.trim());
      }}
    >
      <h2>Token required</h2>
      {hasToken() && (
        <p class="problem" role="alert" data-testid="token-refused">
          The console refused the token this tab holds.
        </p>
      )}
      <p>
        This console answers only requests that carry its token, given where it was started (
        <code>--ui-token</code>, <code>--ui-token-file</code> or <code>OUTBOX_UI_TOKEN</code>). It
        is kept for this tab only.
      </p>
      <input
        type="password"
        autocomplete="off"
        placeholder="token"
        aria-label="token"
        data-testid="token-input"
        value={token}
        onInput={(event) => setToken(event.currentTarget.value)}
      />
      <button type="submit" data-testid="token-submit">
        Use token
      </button>
    </form>
  );
}
