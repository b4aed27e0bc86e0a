/** The "API token" control at the top: use a token (for this tab, or remembered on this device), or forget it. */
import { hasToken, setToken, tokenRemembered } from './api.js';
import { $ } from './dom.js';

const authEl = $<HTMLDetailsElement>('auth');
const tokenIn = $<HTMLInputElement>('token');
const remember = $<HTMLInputElement>('token-remember');

function paintAuth(note?: string): void {
  authEl.classList.toggle('set', hasToken());
  $('auth-sum').textContent = hasToken() ? 'Token set' : 'API token';
  remember.checked = tokenRemembered();
  if (note) $('auth-msg').textContent = note;
}

/** The control's form and Forget button; `changed` runs after the token changed (everything shown may depend on it). */
export function initTokenControl(changed: () => void): void {
  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = tokenIn.value.trim();
    if (!t) return paintAuth('Paste a token first: `fairway token create` prints one.');
    if (!/^[\x21-\x7e]{1,512}$/.test(t)) return paintAuth('That is not a token: a token is printable ASCII without spaces.');
    setToken(t, remember.checked);
    tokenIn.value = '';
    paintAuth(remember.checked ? 'Token set and remembered on this device.' : 'Token set for this tab.');
    authEl.open = false;
    changed();
  });
  $('token-forget').addEventListener('click', () => {
    setToken('');
    tokenIn.value = '';
    paintAuth('Token forgotten.');
    changed();
  });
  paintAuth();
}
