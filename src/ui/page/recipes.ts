/** The recipes panel (`GET /api/recipes`): each recipe's plugins and image lines; hidden when absent (404), refused or empty. */
import { get } from './api.js';
import { $, copyLine, h } from './dom.js';
import { imageRef, modVer } from './format.js';
import type { Recipe } from './types.js';

let recipesShown = '';

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
      );
    }),
  );
}
