/** The recent builds list: the last 25, refreshed every 3 s while any is queued or running. */
import { api } from './api.js';
import { $, h } from './dom.js';
import { ago, fmtBytes, isActive, modVer, recentState, target } from './format.js';
import { paintServer, setQueue } from './server.js';
import type { Build, QueueDepth } from './types.js';

/** While builds are in flight the list refreshes every few seconds (else with the 15 s page refresh). */
let recentTimer: number | undefined;
/** The id of the build the build card shows (the list marks it). */
let shownId: () => string | undefined = () => undefined;

export async function loadRecent(): Promise<void> {
  const msg = $('recent-msg');
  window.clearTimeout(recentTimer);
  try {
    const r = await api<{ builds: Build[]; queue?: QueueDepth }>('/api/builds?limit=25');
    if (r.builds.some((b) => isActive(b.status))) recentTimer = window.setTimeout(() => void loadRecent(), 3000);
    if (r.queue) setQueue(r.queue);
    paintServer();
    msg.textContent = r.builds.length ? '' : 'No builds yet.';
    $('recent').replaceChildren(
      ...r.builds.map((b) => {
        const pl = b.spec.plugins.map(modVer).join(', ') || 'no plugins';
        return h(
          'li',
          {},
          h(
            'a',
            { href: `#/builds/${b.id}`, 'aria-label': `${recentState(b)} build for ${target(b.spec)}, Caddy ${b.spec.caddyVersion}, ${pl}` },
            h('span', {}, h('span', { class: `badge ${b.status}` }, recentState(b))),
            h('span', {}, h('code', {}, target(b.spec))),
            h('span', { class: 'hide-s' }, b.spec.caddyVersion),
            h('span', { class: 'pl', title: pl }, pl),
            h('span', { class: 'num hide-s' }, fmtBytes(b.size)),
            h('span', { class: 'num' }, ago(b.finishedAt ?? b.createdAt)),
          ),
        );
      }),
    );
    markRecent();
  } catch (e) {
    msg.textContent = `Cannot load recent builds: ${(e as Error).message}`;
  }
}

/** Mark the build the card shows as the current row. */
export function markRecent(): void {
  const id = shownId();
  for (const a of $('recent').querySelectorAll('a')) {
    if (id !== undefined && a.getAttribute('href') === `#/builds/${id}`) a.setAttribute('aria-current', 'true');
    else a.removeAttribute('aria-current');
  }
}

/** The Refresh button; `shown` names the build the card shows. */
export function initRecent(shown: () => string | undefined): void {
  shownId = shown;
  $('refresh').addEventListener('click', () => void loadRecent());
}
