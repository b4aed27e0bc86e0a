/**
 * Fairway's page: choose a target and plugins, build, follow the log live over the websocket,
 * download. Plain DOM, no framework; every string from the server goes in through textContent.
 *
 * With an API token (the "API token" control; kept in sessionStorage, or localStorage when
 * remembered) every request carries `Authorization: Bearer`: the log is then followed over SSE
 * with fetch (a browser WebSocket cannot send headers) and downloads are fetched, not linked.
 */

type Status = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';

interface Plugin {
  module: string;
  version?: string;
  replace?: unknown;
}

interface Build {
  id: string;
  status: Status;
  phase: string;
  position?: number;
  cached?: boolean;
  request?: { caddyVersion?: string; plugins?: Plugin[] };
  spec: { caddyVersion: string; os: string; arch: string; arm?: string; plugins: Plugin[]; toolchain?: { go?: string; xcaddy?: string } };
  filename: string;
  sha256?: string;
  size?: number;
  goVersion?: string;
  error?: string;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  agent?: string;
  provenance?: 'signed' | 'unsigned';
  links: { artifact: string; provenance?: string };
}

interface CatalogEntry {
  path: string;
  available: boolean;
  description: string;
  modules: string[];
}

type Msg =
  | { type: 'status'; build: Build }
  | { type: 'phase'; phase: string; position?: number }
  | { type: 'line'; seq: number; ts: string; stream: string; text: string }
  | { type: 'end'; status: Status; error?: string; build?: Build | null }
  | { type: 'error'; error?: { message?: string } };

interface View {
  id: string;
  build?: Build;
  ws?: WebSocket;
  /** The SSE request when the log is followed with a token. */
  sse?: AbortController;
  next: number;
  ended: boolean;
  cached: boolean;
  retry: number;
  phase: string;
  position?: number;
  reached: number;
  lines: number;
}

const PHASES = ['queued', 'resolving', 'building', 'storing', 'done'];
const ACTIVE = (s?: string) => s === 'queued' || s === 'running';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** A tiny element builder; children are text unless they are nodes. */
function h(tag: string, attrs: Record<string, string | boolean | undefined> = {}, ...kids: Array<Node | string | null | undefined | false>): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) if (k !== null && k !== undefined && k !== false) el.append(k);
  return el;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/* -------------------------------------------------------------- API token */

const TOKEN_KEY = 'fairway.token';

function storage(kind: 'local' | 'session'): Storage | null {
  try {
    return kind === 'local' ? window.localStorage : window.sessionStorage;
  } catch {
    return null; // storage disabled: the token lives for this page only
  }
}

let token = storage('local')?.getItem(TOKEN_KEY) ?? storage('session')?.getItem(TOKEN_KEY) ?? '';

function auth(): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** The server's message, plus what to do when it wants a token (or a better one). */
function withHint(message: string, status: number): string {
  const hint = authHint(status);
  return hint ? `${message.replace(/\.?$/, '.')}${hint}` : message;
}

function authHint(status: number): string {
  if (status === 401) return token ? ' The API token was refused: check it under “API token” at the top.' : ' This server needs an API token: enter one under “API token” at the top.';
  if (status === 403 && !token) return ' Enter an API token with the needed scope under “API token” at the top.';
  return '';
}

/** The message of a refused request (the JSON error body, else the status), with the token hint. */
async function refusal(res: Response): Promise<string> {
  const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
  return withHint(body?.error?.message ?? `HTTP ${res.status}`, res.status);
}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, {
    ...init,
    headers: { accept: 'application/json', ...(init.body ? { 'content-type': 'application/json' } : {}), ...auth() },
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const e = (body as { error?: { message?: string } } | null)?.error;
    throw new ApiError(res.status, withHint(e?.message ?? `HTTP ${res.status}`, res.status));
  }
  return body as T;
}

const fmtBytes = (n?: number) => {
  if (n === undefined) return '';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  let x = n;
  while (x >= 1000 && i < u.length - 1) {
    x /= 1000;
    i++;
  }
  return `${i ? x.toFixed(1) : x} ${u[i]}`;
};
const fmtDur = (ms: number) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
};
const ago = (iso?: string) => {
  if (!iso) return '';
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
};
const target = (s: Build['spec']) => `${s.os}/${s.arch}${s.arm ? `/v${s.arm}` : ''}`;
const modVer = (p: Plugin) => p.module + (p.version ? `@${p.version}` : '');

/* ------------------------------------------------------------------ form */

const form = $<HTMLFormElement>('form');
const versionSel = $<HTMLSelectElement>('version');
const osSel = $<HTMLSelectElement>('os');
const archSel = $<HTMLSelectElement>('arch');
const armSel = $<HTMLSelectElement>('arm');
const q = $<HTMLInputElement>('q');
const results = $('results');
const catalogMsg = $('catalog-msg');
const selectedList = $('selected');
const selected = new Map<string, string>(); // module -> version ('' = latest)

let platforms: Array<{ os: string; arch: string }> = [];
const OS_NAMES: Record<string, string> = {
  linux: 'Linux',
  darwin: 'macOS',
  windows: 'Windows',
  freebsd: 'FreeBSD',
  openbsd: 'OpenBSD',
  netbsd: 'NetBSD',
  android: 'Android',
  illumos: 'illumos',
  solaris: 'Solaris',
  dragonfly: 'DragonFly BSD',
  aix: 'AIX',
};
const OS_ORDER = ['linux', 'darwin', 'windows', 'freebsd'];

function option(value: string, label: string, sel = false): HTMLOptionElement {
  const o = new Option(label, value, sel, sel);
  return o;
}

async function loadVersions(): Promise<void> {
  try {
    const v = await api<{ versions: Array<{ version: string; prerelease: boolean }>; latest: string | null }>('/api/versions');
    versionSel.replaceChildren(
      option('latest', v.latest ? `latest (${v.latest})` : 'latest', true),
      ...v.versions.map((x) => option(x.version, x.prerelease ? `${x.version} (pre-release)` : x.version)),
    );
  } catch {
    versionSel.replaceChildren(option('latest', 'latest', true));
  }
}

async function loadPlatforms(): Promise<void> {
  try {
    const p = await api<{ platforms: Array<{ os: string; arch: string }>; arm?: string[] }>('/api/platforms');
    platforms = p.platforms;
    if (p.arm?.length) armSel.replaceChildren(...[...p.arm].reverse().map((a) => option(a, `v${a}`, a === '7')));
  } catch {
    platforms = [{ os: 'linux', arch: 'amd64' }];
  }
  const oses = [...new Set(platforms.map((x) => x.os))].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  osSel.replaceChildren(...oses.map((o) => option(o, OS_NAMES[o] ?? o, o === 'linux')));
  fillArch('amd64');
}

const rank = (os: string) => (OS_ORDER.includes(os) ? OS_ORDER.indexOf(os) : 99);

function fillArch(prefer?: string): void {
  const arches = platforms.filter((x) => x.os === osSel.value).map((x) => x.arch);
  const keep = prefer && arches.includes(prefer) ? prefer : arches.includes('amd64') ? 'amd64' : arches[0];
  archSel.replaceChildren(...arches.map((a) => option(a, a, a === keep)));
  $('arm-field').hidden = archSel.value !== 'arm';
}

osSel.addEventListener('change', () => fillArch(archSel.value));
archSel.addEventListener('change', () => ($('arm-field').hidden = archSel.value !== 'arm'));

/* --------------------------------------------------------------- catalog */

let catalogAbort: AbortController | undefined;
let catalogTimer = 0;

function normaliseCatalog(body: unknown): CatalogEntry[] | null {
  const b = body as Record<string, unknown> | unknown[] | null;
  const list = Array.isArray(b) ? b : b && (b.packages ?? b.result ?? b.plugins);
  if (!Array.isArray(list)) return null;
  const out: CatalogEntry[] = [];
  for (const raw of list) {
    const p = raw as Record<string, unknown>;
    const path = typeof p?.path === 'string' ? p.path : typeof p?.module === 'string' ? p.module : null;
    if (!path) continue;
    const mods = Array.isArray(p.modules) ? p.modules : [];
    const names = mods.map((m) => (typeof m === 'string' ? m : ((m as { name?: unknown; id?: unknown })?.name ?? (m as { id?: unknown })?.id))).filter((x): x is string => typeof x === 'string');
    const firstDoc = mods.map((m) => (m as { docs?: unknown })?.docs).find((d): d is string => typeof d === 'string' && d !== '');
    const description = typeof p.description === 'string' ? p.description : (firstDoc ?? '');
    out.push({ path, description, modules: names, available: p.available !== false });
  }
  return out;
}

async function search(text: string): Promise<void> {
  catalogAbort?.abort();
  const ac = new AbortController();
  catalogAbort = ac;
  try {
    const res = await fetch(`/api/catalog${text ? `?q=${encodeURIComponent(text)}` : ''}`, { headers: { accept: 'application/json', ...auth() }, signal: ac.signal });
    if (!res.ok) throw new Error(String(res.status));
    const list = normaliseCatalog(await res.json());
    if (!list) throw new Error('unexpected catalog shape');
    const words = text.toLowerCase().split(/\s+/).filter(Boolean);
    const hits = list.filter((p) => {
      const hay = `${p.path} ${p.description} ${p.modules.join(' ')}`.toLowerCase();
      return words.every((w) => hay.includes(w));
    });
    renderResults(hits.slice(0, 80));
    catalogMsg.textContent = hits.length
      ? `${hits.length} plugin${hits.length === 1 ? '' : 's'}${hits.length > 80 ? ', showing the first 80' : ''}${text ? ` matching “${text}”` : ''}.`
      : text
        ? `No catalog plugin matches “${text}”. You can add it as a custom module below.`
        : 'The catalog is empty. Add plugins as custom modules below.';
  } catch (err) {
    if (ac.signal.aborted) return;
    results.replaceChildren();
    catalogMsg.textContent = 'Plugin catalog unavailable. You can still add plugins by their Go module path below.';
    void err;
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

/* ------------------------------------------------------- selected plugins */

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

const MODULE_RE = /^[a-z0-9.-]+\.[a-z0-9.-]+(\/[A-Za-z0-9._~-]+)*$/;
function addCustom(): void {
  const cm = $<HTMLInputElement>('cm');
  const cv = $<HTMLInputElement>('cv');
  let module = cm.value.trim();
  let version = cv.value.trim();
  const at = module.indexOf('@');
  if (at > 0 && !version) {
    version = module.slice(at + 1);
    module = module.slice(0, at);
  }
  const err = $('custom-err');
  if (!MODULE_RE.test(module)) {
    err.textContent = module ? `“${module}” is not a Go module path (like github.com/owner/repo).` : 'Enter a Go module path, like github.com/owner/repo.';
    cm.setAttribute('aria-invalid', 'true');
    cm.focus();
    return;
  }
  if (version && !/^[\x21-\x7e]+$/.test(version)) {
    err.textContent = 'The version must be a tag (v1.2.3), a branch or a commit.';
    cv.focus();
    return;
  }
  err.textContent = '';
  cm.removeAttribute('aria-invalid');
  addPlugin(module, version);
  cm.value = '';
  cv.value = '';
  cm.focus();
}
$('add').addEventListener('click', addCustom);
for (const id of ['cm', 'cv'])
  $(id).addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault(); // Enter adds the module; Build is a separate, deliberate action
      addCustom();
    }
  });

form.addEventListener('submit', (e) => {
  e.preventDefault();
  void submit();
});

async function submit(): Promise<void> {
  const btn = $<HTMLButtonElement>('build');
  const err = $('form-err');
  err.textContent = '';
  btn.disabled = true;
  btn.textContent = 'Starting…';
  const body = {
    caddyVersion: versionSel.value,
    os: osSel.value,
    arch: archSel.value,
    ...(archSel.value === 'arm' ? { arm: armSel.value } : {}),
    plugins: [...selected].map(([module, version]) => ({ module, ...(version ? { version } : {}) })),
  };
  try {
    const b = await api<Build>('/api/builds', { method: 'POST', body: JSON.stringify(body) });
    openBuild(b.id, b);
    void loadRecent(); // the new build shows in the recent list at once, with its phase
    $('h-build').focus();
  } catch (e2) {
    err.textContent = e2 instanceof ApiError ? e2.message : `Cannot reach the server: ${(e2 as Error).message}`;
  } finally {
    btn.disabled = false;
    btn.textContent = 'Build';
  }
}

/* ------------------------------------------------------------ build view */

let view: View | null = null;
let tick = 0;
const logEl = $('log');
const follow = $<HTMLInputElement>('follow');
let pending: Node[] = [];
let frame = 0;

function openBuild(id: string, initial?: Build): void {
  if (view?.id === id && !view.ended && (view.ws || view.sse)) {
    if (initial) render(initial);
    return;
  }
  close();
  view = { id, next: 0, ended: false, cached: !!initial?.cached && initial.status === 'succeeded', retry: 0, phase: 'queued', reached: 0, lines: 0 };
  if (location.hash !== `#/builds/${id}`) history.pushState(null, '', `#/builds/${id}`);
  logEl.replaceChildren();
  pending = [];
  follow.checked = true;
  $('b-empty').hidden = true;
  $('b-body').hidden = false;
  $('b-id').textContent = id.slice(0, 12);
  $('b-id').title = id;
  $('b-error').textContent = '';
  $('lines').textContent = '';
  $('result').hidden = true;
  $('b-target').textContent = 'Loading…';
  if (initial) render(initial);
  else {
    paintPhases();
    phaseLine();
  }
  markRecent();
  connect(view);
  clearInterval(tick);
  tick = window.setInterval(() => view?.build && ACTIVE(view.build.status) && phaseLine(), 1000);
}

function close(): void {
  if (view) view.ended = true;
  view?.ws?.close();
  view?.sse?.abort();
  view = null;
}

/** After a dropped connection: try again with a growing pause, from the next line. */
function reconnect(v: View): void {
  if (view !== v || v.ended) return;
  v.retry++;
  const wait = Math.min(10_000, 500 * 2 ** Math.min(v.retry, 5));
  $('b-phase').textContent = `Connection lost; reconnecting in ${Math.round(wait / 1000)}s…`;
  setTimeout(() => view === v && !v.ended && connect(v), wait);
}

function connect(v: View): void {
  if (token) {
    connectSse(v);
    return;
  }
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/builds/${encodeURIComponent(v.id)}/log?from=${v.next}`);
  v.ws = ws;
  ws.onmessage = (e) => {
    if (view !== v) return;
    let m: Msg;
    try {
      m = JSON.parse(String(e.data)) as Msg;
    } catch {
      return;
    }
    onMessage(v, m);
  };
  ws.onclose = () => reconnect(v);
}

/** The same messages over SSE, read with fetch so that the request carries the token. */
function connectSse(v: View): void {
  const ac = new AbortController();
  v.sse = ac;
  void (async () => {
    try {
      const res = await fetch(`/api/builds/${encodeURIComponent(v.id)}/log?from=${v.next}`, { headers: { accept: 'text/event-stream', ...auth() }, signal: ac.signal });
      if (!res.ok || !res.body) {
        if (res.status >= 400 && res.status < 500) {
          // Not found, or not allowed: retrying will not help.
          const message = await refusal(res);
          if (view === v) onMessage(v, { type: 'error', error: { message } });
          return;
        }
        throw new Error(`HTTP ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        for (let i = buf.indexOf('\n\n'); i !== -1; i = buf.indexOf('\n\n')) {
          const data = buf
            .slice(0, i)
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          buf = buf.slice(i + 2);
          if (!data || view !== v) continue;
          let m: Msg;
          try {
            m = JSON.parse(data) as Msg;
          } catch {
            continue;
          }
          onMessage(v, m);
        }
      }
    } catch {
      /* network error, or closed by us */
    }
    if (!ac.signal.aborted) reconnect(v);
  })();
}

function onMessage(v: View, m: Msg): void {
  switch (m.type) {
    case 'status':
      v.retry = 0;
      render(m.build);
      break;
    case 'phase':
      setPhase(v, m.phase, m.position);
      break;
    case 'line':
      if (m.seq < v.next) return;
      v.next = m.seq + 1;
      v.retry = 0;
      appendLine(m.stream, m.text);
      break;
    case 'end':
      v.ended = true;
      if (v.build) v.build.status = m.status;
      if (m.build) render(m.build);
      else {
        paintPhases();
        phaseLine();
        void api<Build>(`/api/builds/${v.id}`).then(render, () => undefined);
      }
      if (m.error) $('b-error').textContent = m.error;
      void loadRecent();
      break;
    case 'error':
      v.ended = true;
      $('b-error').textContent = m.error?.message ?? 'The server could not stream this log.';
      if (!v.build) $('b-target').textContent = '';
      break;
  }
}

function setPhase(v: View, phase: string, position?: number): void {
  v.phase = phase;
  v.position = position;
  const i = PHASES.indexOf(phase);
  if (i >= 0) v.reached = Math.max(v.reached, i);
  if (v.build && ACTIVE(v.build.status) && phase !== 'queued') v.build.status = 'running';
  paintPhases();
  phaseLine();
}

function paintBadge(): void {
  const b = view?.build;
  const badge = $('b-badge');
  badge.hidden = !b;
  if (!b) return;
  const cached = view!.cached && b.status === 'succeeded';
  badge.className = `badge ${cached ? 'cached' : b.status}`;
  badge.textContent = cached ? 'cached' : b.status;
  $('cancel').hidden = !ACTIVE(b.status);
}

function render(b: Build): void {
  const v = view;
  if (!v || v.id !== b.id) return;
  v.build = b;
  setPhase(v, b.status === 'succeeded' ? 'done' : b.phase, b.position);
  const plugins = b.spec.plugins.length ? b.spec.plugins : (b.request?.plugins ?? []);
  const t = $('b-target');
  t.replaceChildren(
    'Caddy ',
    h('code', {}, b.spec.caddyVersion),
    ' for ',
    h('code', {}, target(b.spec)),
    plugins.length ? ` with ${plugins.length} plugin${plugins.length > 1 ? 's' : ''}: ` : ', no plugins',
    ...plugins.flatMap((p, i) => [i ? ', ' : '', h('code', {}, modVer(p))]),
  );
  if (b.error && !ACTIVE(b.status)) $('b-error').textContent = b.error;
  renderResult(b);
}

function paintPhases(): void {
  const v = view;
  if (!v) return;
  paintBadge();
  const st = v.build?.status;
  const failed = st === 'failed' || st === 'canceled';
  const items = $('phases').querySelectorAll('li');
  const at = failed ? v.reached : PHASES.indexOf(v.phase);
  items.forEach((li, i) => {
    // A failure marks the step it happened in (when seen live) and the final step.
    li.className = failed ? (i < at ? 'ok' : (i === at && at > 0) || i === 4 ? 'bad' : '') : st === 'succeeded' || i < at ? 'ok' : i === at ? 'cur' : '';
    if (i === at && !failed && st !== 'succeeded') li.setAttribute('aria-current', 'step');
    else li.removeAttribute('aria-current');
  });
  items[4]!.textContent = st === 'failed' ? 'Failed' : st === 'canceled' ? 'Canceled' : 'Done';
}

function phaseLine(): void {
  const v = view;
  if (!v) return;
  const b = v.build;
  const el = $('b-phase');
  const since = b?.startedAt ?? b?.createdAt;
  const elapsed = since ? ` · ${fmtDur(Date.now() - Date.parse(since))}` : '';
  if (!b) el.textContent = 'Connecting…';
  else if (b.status === 'succeeded') el.textContent = v.cached ? 'Served from the cache: no build needed. Download it now.' : `Done${b.durationMs !== undefined ? ` in ${fmtDur(b.durationMs)}` : ''}.`;
  else if (b.status === 'failed') el.textContent = 'The build failed. The log below shows why.';
  else if (b.status === 'canceled') el.textContent = 'The build was canceled.';
  else if (v.phase === 'queued') el.textContent = `Queued${v.position ? `: position ${v.position} in line` : ''}${elapsed}`;
  else el.textContent = `${v.phase[0]!.toUpperCase()}${v.phase.slice(1)}…${elapsed}`;
}

function renderResult(b: Build): void {
  const ok = b.status === 'succeeded';
  $('result').hidden = !ok;
  if (!ok) return;
  const dl = $<HTMLAnchorElement>('dl');
  dl.href = b.links.artifact;
  dl.download = b.filename;
  dl.textContent = `Download ${b.filename}`;
  $('dl-size').textContent = fmtBytes(b.size);
  $('sha').textContent = b.sha256 ?? '';
  $('size').textContent = b.size !== undefined ? `${fmtBytes(b.size)} (${b.size.toLocaleString('en')} bytes)` : '';
  $('go').textContent = [b.goVersion, b.spec.toolchain?.xcaddy && `xcaddy ${b.spec.toolchain.xcaddy}`, b.agent && `on ${b.agent}`].filter(Boolean).join(', ');
  // Signed SLSA provenance (docs/provenance.md): the link, and how to check it with cosign.
  const prov = $<HTMLAnchorElement>('prov');
  prov.href = b.links.provenance ?? '#';
  prov.textContent = b.provenance === 'signed' ? 'signed (SLSA v1)' : b.provenance === 'unsigned' ? 'UNSIGNED: this server has no signing key' : 'none (built before provenance)';
  $('prov-row').hidden = !b.provenance;
  $('prov-dd').hidden = !b.provenance;
  $<HTMLInputElement>('verify').value =
    b.provenance === 'signed'
      ? `curl -fsSo fairway.pub ${location.origin}/api/signing-key && curl -fsSo ${b.filename}.provenance.json ${location.origin}${b.links.provenance} && cosign verify-blob-attestation --key fairway.pub --insecure-ignore-tlog --type slsaprovenance1 --signature ${b.filename}.provenance.json ${b.filename}`
      : '';
  $('verify-row').hidden = b.provenance !== 'signed';
  const url = downloadUrl(b);
  $<HTMLInputElement>('url').value = url;
  // Never the token itself on screen: the command reads it from the environment.
  $<HTMLInputElement>('curl').value = `curl -fL ${token ? '-H "Authorization: Bearer $FAIRWAY_TOKEN" ' : ''}-o ${b.filename} '${url}'`;
  const s = b.spec;
  // Every finished Linux build is also an image, tagged with its build id (images are Linux only).
  const img = s.os === 'linux';
  $('img').hidden = !img;
  $<HTMLInputElement>('pull').value = img ? `docker pull ${imageRef(`build:${b.id}`)}` : '';
  $<HTMLInputElement>('from').value = img ? `FROM ${imageRef(`build:${b.id}`)}` : '';
  $<HTMLInputElement>('cli').value = [
    `fairway build --server ${location.origin}`,
    `--caddy-version ${s.caddyVersion} --os ${s.os} --arch ${s.arch}${s.arm ? ` --arm ${s.arm}` : ''}`,
    ...s.plugins.map((p) => `--with ${modVer(p)}`),
    `-o ${b.filename}`,
  ].join(' ');
}

/** An image of this server's registry: `<host>/caddy/<name>:<tag>`, e.g. `build:<id>`. */
const imageRef = (nameTag: string) => `${location.host}/caddy/${nameTag}`;

/** The caddyserver.com-compatible URL for the same build, pinned to the resolved versions. */
function downloadUrl(b: Build): string {
  const s = b.spec;
  const enc = (x: string) => encodeURIComponent(x).replace(/%2F/g, '/').replace(/%40/g, '@');
  const qs = [`os=${enc(s.os)}`, `arch=${enc(s.arch)}`, ...(s.arm ? [`arm=${enc(s.arm)}`] : []), `version=${enc(s.caddyVersion)}`, ...s.plugins.map((p) => `p=${enc(modVer(p))}`)];
  return `${location.origin}/api/download?${qs.join('&')}`;
}

function appendLine(stream: string, text: string): void {
  // xcaddy logs to stderr, so colour by content: Fairway's own lines, and errors.
  const cls = stream === 'system' ? 's' : /\b(error|fatal|panic)\b|^\S+\.go:\d+/i.test(text) ? 'e' : '';
  pending.push(cls ? h('span', { class: cls }, `${text}\n`) : document.createTextNode(`${text}\n`));
  if (view) view.lines++;
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush(): void {
  frame = 0;
  logEl.append(...pending);
  pending = [];
  if (view) $('lines').textContent = `${view.lines} line${view.lines === 1 ? '' : 's'}`;
  if (follow.checked) logEl.scrollTop = logEl.scrollHeight;
}

// Scrolling up pauses auto-scroll; scrolling back to the bottom resumes it.
logEl.addEventListener('scroll', () => {
  const atEnd = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 24;
  if (follow.checked !== atEnd && !frame) follow.checked = atEnd;
});
follow.addEventListener('change', () => {
  if (follow.checked) logEl.scrollTop = logEl.scrollHeight;
});

/** With a token a link cannot authenticate: fetch the binary, check its sha256, then save it. */
$('dl').addEventListener('click', (e) => {
  const b = view?.build;
  if (!token || !b || b.status !== 'succeeded') return;
  e.preventDefault();
  void downloadWithToken(b);
});

async function downloadWithToken(b: Build): Promise<void> {
  const dl = $<HTMLAnchorElement>('dl');
  if (dl.getAttribute('aria-disabled') === 'true') return;
  const label = dl.textContent;
  dl.setAttribute('aria-disabled', 'true');
  dl.textContent = 'Downloading…';
  $('b-error').textContent = '';
  try {
    const res = await fetch(b.links.artifact, { headers: auth() });
    if (!res.ok) throw new Error(await refusal(res));
    const bytes = await res.arrayBuffer();
    // crypto.subtle exists in secure contexts (https, localhost) only.
    if (b.sha256 && window.crypto?.subtle) {
      const sum = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((x) => x.toString(16).padStart(2, '0')).join('');
      if (sum !== b.sha256) throw new Error(`the download does not match its SHA-256 (got ${sum}); try again`);
    }
    const href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    const a = h('a', { href, download: b.filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
  } catch (err) {
    $('b-error').textContent = `Download failed: ${(err as Error).message}`;
  } finally {
    dl.textContent = label;
    dl.removeAttribute('aria-disabled');
  }
}

$('cancel').addEventListener('click', async () => {
  if (!view) return;
  try {
    await api(`/api/builds/${view.id}`, { method: 'DELETE' });
  } catch (e) {
    $('b-error').textContent = (e as Error).message;
  }
});

/** A Copy button for the text of `src` (an input's value, else its text). */
function copyButton(btn: HTMLElement, src: HTMLElement): void {
  btn.addEventListener('click', () => {
    const text = src instanceof HTMLInputElement ? src.value : (src.textContent ?? '');
    const done = () => {
      btn.textContent = 'Copied';
      setTimeout(() => (btn.textContent = 'Copy'), 1500);
    };
    // The Clipboard API needs a secure context (https or localhost); otherwise select the text.
    const fallback = () => {
      if (!(src instanceof HTMLInputElement)) return;
      src.focus();
      src.select();
      if (document.execCommand('copy')) done();
    };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  });
}
for (const btn of document.querySelectorAll<HTMLButtonElement>('[data-copy]')) copyButton(btn, $(btn.dataset.copy!));

/* ------------------------------------------------------ recent and agents */

/** What a build in the recent list is doing: its phase while it runs, its place while it waits, else its status. */
function recentState(b: Build): string {
  if (b.status === 'running') return b.phase && b.phase !== 'queued' ? b.phase : 'running';
  if (b.status === 'queued') return b.position ? `queued #${b.position}` : 'queued';
  return b.status;
}

/** While builds are in flight the list refreshes every few seconds (else with the 15 s page refresh). */
let recentTimer: number | undefined;

async function loadRecent(): Promise<void> {
  const msg = $('recent-msg');
  window.clearTimeout(recentTimer);
  try {
    const r = await api<{ builds: Build[]; queue?: { queued: number; running: number } }>('/api/builds?limit=25');
    if (r.builds.some((b) => ACTIVE(b.status))) recentTimer = window.setTimeout(() => void loadRecent(), 3000);
    if (r.queue) queueDepth = r.queue;
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

function markRecent(): void {
  for (const a of $('recent').querySelectorAll('a')) {
    if (view && a.getAttribute('href') === `#/builds/${view.id}`) a.setAttribute('aria-current', 'true');
    else a.removeAttribute('aria-current');
  }
}

let queueDepth: { queued: number; running: number } | null = null;
let agentCount: number | null = null;

function paintServer(): void {
  const s = $('server');
  const parts: Node[] = [];
  if (queueDepth) parts.push(h('span', {}, 'Queue: ', h('b', {}, String(queueDepth.queued)), ' waiting, ', h('b', {}, String(queueDepth.running)), ' building'));
  parts.push(h('span', {}, agentCount === null ? 'Embedded workers' : h('b', {}, `${agentCount} agent${agentCount === 1 ? '' : 's'}`)));
  s.replaceChildren(...parts);
}

/** sha256 of the key's DER (the fingerprint the server logs), when the browser has SubtleCrypto (a secure context). */
async function fingerprint(pem: string): Promise<string | null> {
  try {
    const der = Uint8Array.from(atob(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '')), (c) => c.charCodeAt(0));
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', der));
    return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
  } catch {
    return null;
  }
}

/** The footer says what is true of this server: whether it has a key its builds are signed with (GET /api/signing-key). */
async function loadSigning(): Promise<void> {
  const el = $('signing');
  try {
    const res = await fetch('/api/signing-key', { headers: auth() });
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

async function loadAgents(): Promise<void> {
  try {
    const res = await fetch('/api/agents', { headers: { accept: 'application/json', ...auth() } });
    if (!res.ok) throw new Error(String(res.status));
    const body = (await res.json()) as { agents?: unknown[]; queue?: { queued: number; running: number } } | unknown[];
    const list = (Array.isArray(body) ? body : body.agents) ?? [];
    if (!Array.isArray(body) && body.queue) queueDepth = body.queue;
    agentCount = list.length;
    $('agents-card').hidden = false;
    $('agents').replaceChildren(
      ...list.map((raw) => {
        const a = raw as Record<string, unknown>;
        const name = String(a.id ?? a.name ?? a.host ?? 'agent');
        const jobs = Array.isArray(a.jobs) ? a.jobs.filter((j): j is string => typeof j === 'string') : [];
        const busy = jobs.length > 0 || a.status === 'busy';
        const slots = typeof a.concurrency === 'number' ? ` · ${jobs.length}/${a.concurrency} busy` : '';
        const seen = typeof a.lastSeen === 'string' ? a.lastSeen : undefined;
        const tools = [a.go, a.xcaddy && `xcaddy ${String(a.xcaddy)}`].filter((x) => typeof x === 'string').join(' · ');
        return h(
          'li',
          {},
          h('b', {}, name),
          ' ',
          h('span', { class: `badge ${busy ? 'running' : ''}` }, busy ? 'building' : 'idle'),
          h('div', { class: 'muted small' }, `${tools}${slots}`),
          ...jobs.slice(0, 3).map((j) => h('div', { class: 'small' }, h('a', { href: `#/builds/${j}` }, `build ${j.slice(0, 12)}`))),
          seen ? h('div', { class: 'muted small' }, `seen ${ago(seen)}`) : null,
        );
      }),
    );
  } catch {
    agentCount = null;
    $('agents-card').hidden = true;
  }
  paintServer();
}

$('refresh').addEventListener('click', () => void loadRecent());

/* ---------------------------------------------------------------- recipes */

interface Recipe {
  name: string;
  plugins?: Plugin[];
  caddyVersion?: string;
}

let recipesShown = '';

/** `GET /api/recipes`: each recipe's plugins and image lines; hidden when absent (404), refused or empty. */
async function loadRecipes(): Promise<void> {
  let list: Recipe[] = [];
  try {
    const res = await fetch('/api/recipes', { headers: { accept: 'application/json', ...auth() } });
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
      const ref = imageRef(`${r.name}:latest`);
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

function copyLine(text: string, label: string): HTMLElement {
  const input = h('input', { readonly: true, spellcheck: 'false', 'aria-label': label }) as HTMLInputElement;
  input.value = text;
  const btn = h('button', { type: 'button', class: 'btn small', 'aria-label': `Copy ${label}` }, 'Copy');
  copyButton(btn, input);
  return h('div', { class: 'cp' }, input, btn);
}

/* ------------------------------------------------------ API token control */

const authEl = $<HTMLDetailsElement>('auth');
const tokenIn = $<HTMLInputElement>('token');
const remember = $<HTMLInputElement>('token-remember');

function forgetStoredToken(): void {
  for (const k of ['local', 'session'] as const) storage(k)?.removeItem(TOKEN_KEY);
}

function paintAuth(note?: string): void {
  authEl.classList.toggle('set', !!token);
  $('auth-sum').textContent = token ? 'Token set' : 'API token';
  remember.checked = !!storage('local')?.getItem(TOKEN_KEY);
  if (note) $('auth-msg').textContent = note;
}

/** Everything the page shows may depend on the token: load it again. */
function reloadAll(): void {
  const keep = { version: versionSel.value, os: osSel.value, arch: archSel.value };
  const pick = (sel: HTMLSelectElement, value: string) => {
    if ([...sel.options].some((o) => o.value === value)) sel.value = value;
  };
  void Promise.all([loadVersions(), loadPlatforms()]).then(() => {
    pick(versionSel, keep.version);
    pick(osSel, keep.os);
    fillArch(keep.arch);
    $('arm-field').hidden = archSel.value !== 'arm';
  });
  void loadRecent();
  void loadAgents();
  void loadRecipes();
  void loadSigning();
  void search(q.value.trim());
  const v = view;
  if (v) {
    close();
    openBuild(v.id);
  }
}

$('auth-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = tokenIn.value.trim();
  if (!t) return paintAuth('Paste a token first: `fairway token create` prints one.');
  if (!/^[\x21-\x7e]{1,512}$/.test(t)) return paintAuth('That is not a token: a token is printable ASCII without spaces.');
  token = t;
  forgetStoredToken();
  storage(remember.checked ? 'local' : 'session')?.setItem(TOKEN_KEY, t);
  tokenIn.value = '';
  paintAuth(remember.checked ? 'Token set and remembered on this device.' : 'Token set for this tab.');
  authEl.open = false;
  reloadAll();
});

$('token-forget').addEventListener('click', () => {
  token = '';
  forgetStoredToken();
  tokenIn.value = '';
  paintAuth('Token forgotten.');
  reloadAll();
});
paintAuth();

/* ---------------------------------------------------------------- routing */

function route(): void {
  const m = /^#\/builds\/([0-9a-zA-Z_-]{1,128})$/.exec(location.hash);
  if (m && view?.id !== m[1]) openBuild(m[1]!);
}
window.addEventListener('hashchange', route);
window.addEventListener('popstate', route);

renderSelected();
void Promise.all([loadVersions(), loadPlatforms()]);
void search('');
void loadRecent();
void loadAgents();
void loadRecipes();
void loadSigning();
route();
setInterval(() => {
  if (document.visibilityState === 'visible') {
    void loadRecent();
    void loadAgents();
    void loadRecipes();
  }
}, 15_000);
