/** What the page says about this server: the header's queue and agents line, the footer's signing key. */
import { get, withHint } from './api.js';
import { $, h } from './dom.js';
import { fingerprint, plural } from './format.js';
import type { QueueDepth } from './types.js';

let queueDepth: QueueDepth | null = null;
let agentCount: number | null = null;

/** Record the queue's depth (from the builds list or the agents); paintServer shows it. */
export function setQueue(q: QueueDepth): void {
  queueDepth = q;
}
/** Record how many agents build (null: the server's own embedded workers); paintServer shows it. */
export function setAgentCount(n: number | null): void {
  agentCount = n;
}

export function paintServer(): void {
  const parts: Node[] = [];
  if (queueDepth) parts.push(h('span', {}, 'Queue: ', h('b', {}, String(queueDepth.queued)), ' waiting, ', h('b', {}, String(queueDepth.running)), ' building'));
  parts.push(h('span', {}, agentCount === null ? 'Embedded workers' : h('b', {}, plural(agentCount, 'agent'))));
  $('server').replaceChildren(...parts);
}

/** The footer says what is true of this server: whether it has a key its builds are signed with (GET /api/signing-key). */
export async function loadSigning(): Promise<void> {
  const el = $('signing');
  try {
    const res = await get('/api/signing-key');
    if (res.status === 404) {
      el.replaceChildren(h('b', {}, 'Builds on this server are NOT signed'), ': it has no signing key (docs/provenance.md).');
      return;
    }
    if (!res.ok) {
      el.textContent = `Signing: not shown (${withHint(`HTTP ${res.status}`, res.status).trim()})`;
      return;
    }
    const fp = await fingerprint(await res.text());
    el.replaceChildren('Builds are signed with the key at ', h('a', { href: '/api/signing-key' }, '/api/signing-key'), fp ? ` (sha256 ${fp.slice(0, 16)}…).` : '.');
  } catch {
    el.textContent = 'Signing: unknown (the server did not answer).';
  }
}
