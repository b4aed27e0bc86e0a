/**
 * The build card: one build at a time (#/builds/<id>), its progress steps and status line, its log
 * followed live (logstream.ts), Cancel, and the result panel once it succeeded (result.ts).
 */
import { api } from './api.js';
import { $, h } from './dom.js';
import { PHASES, isActive, lineClass, modVer, phaseSteps, phaseText, plural, target } from './format.js';
import { connect, disconnect, type LogFollow, type LogHandlers } from './logstream.js';
import { renderResult } from './result.js';
import type { Build, Msg } from './types.js';

interface View extends LogFollow {
  build?: Build;
  cached: boolean;
  phase: string;
  position?: number;
  /** The furthest step seen live (a failure marks it). */
  reached: number;
  lines: number;
}

/** What the rest of the page hears from the build card. */
export interface BuildViewHooks {
  /** A build was opened: the recent list marks it. */
  opened(id: string): void;
  /** The shown build ended: the recent list shows its final state. */
  ended(): void;
}

let hooks: BuildViewHooks = { opened: () => undefined, ended: () => undefined };
let view: View | null = null;
let tick = 0;
const logEl = $('log');
const follow = $<HTMLInputElement>('follow');
let pending: Node[] = [];
let frame = 0;

/** The id of the build the card shows, if any. */
export const shownId = (): string | undefined => view?.id;
/** The build the card shows, once the server has described it. */
export const shownBuild = (): Build | undefined => view?.build;

export function openBuild(id: string, initial?: Build): void {
  if (view?.id === id && !view.ended && (view.ws || view.sse)) {
    if (initial) render(initial);
    return;
  }
  closeBuild();
  const v: View = { id, next: 0, ended: false, cached: !!initial?.cached && initial.status === 'succeeded', retry: 0, phase: 'queued', reached: 0, lines: 0 };
  view = v;
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
  hooks.opened(id);
  const on: LogHandlers = {
    current: () => view === v,
    message: (m) => onMessage(v, m),
    retrying: (wait) => ($('b-phase').textContent = `Connection lost; reconnecting in ${Math.round(wait / 1000)}s…`),
  };
  connect(v, on);
  clearInterval(tick);
  tick = window.setInterval(() => view?.build && isActive(view.build.status) && phaseLine(), 1000);
}

/** Stop following the shown build (the card keeps what it shows). */
export function closeBuild(): void {
  if (view) disconnect(view);
  view = null;
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
      hooks.ended();
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
  if (v.build && isActive(v.build.status) && phase !== 'queued') v.build.status = 'running';
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
  $('cancel').hidden = !isActive(b.status);
}

function render(b: Build): void {
  const v = view;
  if (!v || v.id !== b.id) return;
  v.build = b;
  setPhase(v, b.status === 'succeeded' ? 'done' : b.phase, b.position);
  const plugins = b.spec.plugins.length ? b.spec.plugins : (b.request?.plugins ?? []);
  $('b-target').replaceChildren(
    'Caddy ',
    h('code', {}, b.spec.caddyVersion),
    ' for ',
    h('code', {}, target(b.spec)),
    plugins.length ? ` with ${plugins.length} plugin${plugins.length > 1 ? 's' : ''}: ` : ', no plugins',
    ...plugins.flatMap((p, i) => [i ? ', ' : '', h('code', {}, modVer(p))]),
  );
  if (b.error && !isActive(b.status)) $('b-error').textContent = b.error;
  renderResult(b);
}

function paintPhases(): void {
  const v = view;
  if (!v) return;
  paintBadge();
  const st = v.build?.status;
  const items = $('phases').querySelectorAll('li');
  const steps = phaseSteps(st, v.phase, v.reached);
  items.forEach((li, i) => {
    li.className = steps[i]?.cls ?? '';
    if (steps[i]?.current) li.setAttribute('aria-current', 'step');
    else li.removeAttribute('aria-current');
  });
  items[4]!.textContent = st === 'failed' ? 'Failed' : st === 'canceled' ? 'Canceled' : 'Done';
}

function phaseLine(): void {
  const v = view;
  if (v) $('b-phase').textContent = phaseText(v.build, v.phase, v.position, v.cached);
}

function appendLine(stream: string, text: string): void {
  const cls = lineClass(stream, text);
  pending.push(cls ? h('span', { class: cls }, `${text}\n`) : document.createTextNode(`${text}\n`));
  if (view) view.lines++;
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush(): void {
  frame = 0;
  logEl.append(...pending);
  pending = [];
  if (view) $('lines').textContent = plural(view.lines, 'line');
  if (follow.checked) logEl.scrollTop = logEl.scrollHeight;
}

/** The card's controls (auto-scroll, Cancel); `on` tells the rest of the page what the card does. */
export function initBuildView(on: BuildViewHooks): void {
  hooks = on;
  // Scrolling up pauses auto-scroll; scrolling back to the bottom resumes it.
  logEl.addEventListener('scroll', () => {
    const atEnd = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 24;
    if (follow.checked !== atEnd && !frame) follow.checked = atEnd;
  });
  follow.addEventListener('change', () => {
    if (follow.checked) logEl.scrollTop = logEl.scrollHeight;
  });
  $('cancel').addEventListener('click', async () => {
    if (!view) return;
    try {
      await api(`/api/builds/${view.id}`, { method: 'DELETE' });
    } catch (e) {
      $('b-error').textContent = (e as Error).message;
    }
  });
}
