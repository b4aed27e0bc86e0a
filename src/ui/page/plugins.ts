/** The plugin picker: search the catalog, tick plugins, add custom modules, the selected list. */
import { get } from './api.js';
import { $, h } from './dom.js';
import { catalogMessage, matchCatalog, normaliseCatalog, parseCustom } from './format.js';
import type { CatalogEntry, Plugin } from './types.js';

const q = $<HTMLInputElement>('q');
const results = $('results');
const catalogMsg = $('catalog-msg');
const selectedList = $('selected');
const selected = new Map<string, string>(); // module -> version ('' = latest)

let catalogAbort: AbortController | undefined;
let catalogTimer = 0;

/** The selected plugins as a build request names them (no version: the latest). */
export const selectedPlugins = (): Plugin[] => [...selected].map(([module, version]) => ({ module, ...(version ? { version } : {}) }));

/** Search the catalog for `text` (by default what the search box holds, e.g. again with a new token). */
export async function search(text = q.value.trim()): Promise<void> {
  catalogAbort?.abort();
  const ac = new AbortController();
  catalogAbort = ac;
  try {
    const res = await get(`/api/catalog${text ? `?q=${encodeURIComponent(text)}` : ''}`, 'application/json', ac.signal);
    if (!res.ok) throw new Error(String(res.status));
    const list = normaliseCatalog(await res.json());
    if (!list) throw new Error('unexpected catalog shape');
    const hits = matchCatalog(list, text);
    renderResults(hits.slice(0, 80));
    catalogMsg.textContent = catalogMessage(hits.length, text);
  } catch {
    if (ac.signal.aborted) return;
    results.replaceChildren();
    catalogMsg.textContent = 'Plugin catalog unavailable. You can still add plugins by their Go module path below.';
  }
}

function renderResults(list: CatalogEntry[]): void {
  results.replaceChildren(
    ...list.map((p) => {
      const box = h('input', { type: 'checkbox', value: p.path }) as HTMLInputElement;
      box.checked = selected.has(p.path);
      box.disabled = !p.available && !box.checked;
      box.addEventListener('change', () => (box.checked ? addPlugin(p.path, '') : removePlugin(p.path)));
      return h(
        'li',
        {},
        h(
          'label',
          { class: 'pkg' },
          box,
          h(
            'span',
            {},
            h('span', { class: 'path' }, p.path, p.available ? '' : ' (not available for builds)'),
            p.description ? h('span', { class: 'desc' }, p.description.length > 160 ? `${p.description.slice(0, 157)}…` : p.description) : null,
            p.modules.length ? h('span', { class: 'mods' }, ...p.modules.slice(0, 6).map((m) => h('span', {}, m))) : null,
          ),
        ),
      );
    }),
  );
}

function addPlugin(module: string, version: string): void {
  selected.set(module, version);
  renderSelected();
}

function removePlugin(module: string): void {
  selected.delete(module);
  renderSelected();
  for (const box of results.querySelectorAll<HTMLInputElement>('input[type=checkbox]')) if (box.value === module) box.checked = false;
}

function renderSelected(): void {
  $('count').textContent = String(selected.size);
  $('none').hidden = selected.size > 0;
  selectedList.replaceChildren(
    ...[...selected].map(([module, version]) => {
      const ver = h('input', { value: version, placeholder: 'latest', 'aria-label': `Version of ${module}`, spellcheck: 'false', autocomplete: 'off' }) as HTMLInputElement;
      ver.addEventListener('input', () => selected.set(module, ver.value.trim()));
      const rm = h('button', { type: 'button', class: 'btn small', 'aria-label': `Remove ${module}` }, 'Remove');
      rm.addEventListener('click', () => {
        removePlugin(module);
        q.focus();
      });
      return h('li', {}, h('span', { class: 'm' }, module), ver, rm);
    }),
  );
}

function addCustom(): void {
  const cm = $<HTMLInputElement>('cm');
  const cv = $<HTMLInputElement>('cv');
  const err = $('custom-err');
  const r = parseCustom(cm.value, cv.value);
  if ('error' in r) {
    err.textContent = r.error;
    if (r.field === 'module') cm.setAttribute('aria-invalid', 'true');
    (r.field === 'module' ? cm : cv).focus();
    return;
  }
  err.textContent = '';
  cm.removeAttribute('aria-invalid');
  addPlugin(r.module, r.version);
  cm.value = '';
  cv.value = '';
  cm.focus();
}

/** The picker's controls: search as you type (Enter searches at once), Add and Enter in the custom fields. */
export function initPlugins(): void {
  q.addEventListener('input', () => {
    clearTimeout(catalogTimer);
    catalogTimer = window.setTimeout(() => void search(q.value.trim()), 200);
  });
  q.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault(); // Enter in the search box searches, it does not build
      clearTimeout(catalogTimer);
      void search(q.value.trim());
    }
  });
  $('add').addEventListener('click', addCustom);
  for (const id of ['cm', 'cv'])
    $(id).addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault(); // Enter adds the module; Build is a separate, deliberate action
        addCustom();
      }
    });
  renderSelected();
}
