/** The agents panel (`GET /api/agents`): each agent, idle or building which jobs; hidden when the server has none to show. */
import { get } from './api.js';
import { $, h } from './dom.js';
import { readAgent } from './format.js';
import { paintServer, setAgentCount, setQueue } from './server.js';
import type { QueueDepth } from './types.js';

export async function loadAgents(): Promise<void> {
  try {
    const res = await get('/api/agents', 'application/json');
    if (!res.ok) throw new Error(String(res.status));
    const body = (await res.json()) as { agents?: unknown[]; queue?: QueueDepth } | unknown[];
    const list = (Array.isArray(body) ? body : body.agents) ?? [];
    if (!Array.isArray(body) && body.queue) setQueue(body.queue);
    setAgentCount(list.length);
    $('agents-card').hidden = false;
    $('agents').replaceChildren(
      ...list.map((raw) => {
        const a = readAgent(raw);
        return h(
          'li',
          {},
          h('b', {}, a.name),
          ' ',
          h('span', { class: `badge ${a.busy ? 'running' : ''}` }, a.busy ? 'building' : 'idle'),
          h('div', { class: 'muted small' }, a.detail),
          ...a.jobs.slice(0, 3).map((j) => h('div', { class: 'small' }, h('a', { href: `#/builds/${j}` }, `build ${j.slice(0, 12)}`))),
          a.seen ? h('div', { class: 'muted small' }, `seen ${a.seen}`) : null,
        );
      }),
    );
  } catch {
    setAgentCount(null);
    $('agents-card').hidden = true;
  }
  paintServer();
}
