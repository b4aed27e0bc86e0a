/**
 * The recipes panel (`GET /api/recipes`, then `GET /api/recipes/{name}` for each): each recipe's
 * plugins, image lines, what the watcher promoted and its compatibility table (compat.ts); hidden
 * when absent (404), refused or empty.
 */
import { get } from './api.js';
import { type Cell, compatTables } from './compat.js';
import { $, copyLine, h } from './dom.js';
import { imageRef, modVer } from './format.js';
import type { Recipe } from './types.js';

let recipesShown = '';

const CELL: Record<Cell, [string, string]> = { ok: ['✓', 'builds and passes its checks'], bad: ['✗', 'fails'], untried: ['·', 'not tried'] };

/** A recipe with what the watcher knows of it, or the recipe as listed when that cannot be read. */
async function detailed(r: Recipe): Promise<Recipe> {
  try {
    const res = await get(`/api/recipes/${encodeURIComponent(r.name)}`, 'application/json');
    if (!res.ok) return r;
    const body = (await res.json()) as Recipe;
    return body && typeof body === 'object' && body.upstream && Array.isArray(body.upstream.history) ? body : r;
  } catch {
    return r;
  }
}

/** What the watcher promoted and tried: the newest promoted set, then a table per plugin. */
function upstreamView(r: Recipe): Node | null {
  const u = r.upstream;
  if (!u || (!r.watching && !u.promoted.length)) return null;
  const top = u.promoted[0];
  const summary = top ? `promoted: Caddy ${top.caddyVersion}${top.plugins.length ? ` with ${top.plugins.map(modVer).join(', ')}` : ''}` : 'nothing promoted yet';
  const last = u.history[0];
  const tables = compatTables(u).map((t) =>
    h(
      'table',
      { class: 'compat', 'aria-label': `${r.name}: Caddy versions × ${t.module} versions` },
      h('caption', {}, t.module),
      h('tr', {}, h('th', { scope: 'col' }, 'Caddy'), ...t.versions.map((v) => h('th', { scope: 'col' }, v))),
      ...t.caddyVersions.map((c) =>
        h(
          'tr',
          {},
          h('th', { scope: 'row' }, c),
          ...t.versions.map((v) => {
            const cell = t.cells.get(`${c} ${v}`) ?? 'untried';
            const [mark, what] = CELL[cell];
            return h('td', { class: cell, title: `Caddy ${c} with ${t.module}@${v}: ${what}` }, mark);
          }),
        ),
      ),
    ),
  );
  return h(
    'details',
    { class: 'upstream', 'data-upstream': r.name },
    h('summary', {}, summary),
    last ? h('p', { class: 'muted small' }, `last candidate: ${last.result}${last.culprit ? `, culprit ${modVer(last.culprit)}` : ''}${last.reason ? ` (${last.reason.slice(0, 200)})` : ''}`) : null,
    ...tables,
  );
}

export async function loadRecipes(): Promise<void> {
  let list: Recipe[] = [];
  try {
    const res = await get('/api/recipes', 'application/json');
    if (res.ok) {
      const body = (await res.json()) as { recipes?: unknown };
      if (Array.isArray(body?.recipes)) list = (body.recipes as Recipe[]).filter((r) => typeof r?.name === 'string');
    }
  } catch {
    /* no server, or not JSON: no section */
  }
  list = await Promise.all(list.map(detailed));
  const shown = JSON.stringify(list);
  $('recipes-card').hidden = !list.length;
  if (shown === recipesShown) return; // unchanged: keep the rows (and any selection in them)
  recipesShown = shown;
  $('recipes').replaceChildren(
    ...list.map((r) => {
      const plugins = Array.isArray(r.plugins) ? r.plugins.filter((p) => typeof p?.module === 'string') : [];
      const ref = imageRef(location.host, `${r.name}:latest`);
      return h(
        'li',
        { 'data-recipe': r.name },
        h('b', {}, r.name),
        typeof r.caddyVersion === 'string' ? h('span', { class: 'muted small' }, ` Caddy ${r.caddyVersion}`) : null,
        h('div', { class: 'mods' }, ...(plugins.length ? plugins.map((p) => h('span', {}, modVer(p))) : [h('span', {}, 'no plugins')])),
        copyLine(`docker pull ${ref}`, `docker pull for recipe ${r.name}`),
        copyLine(`FROM ${ref}`, `Dockerfile FROM line for recipe ${r.name}`),
        upstreamView(r),
      );
    }),
  );
}
