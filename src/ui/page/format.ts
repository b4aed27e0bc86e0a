/**
 * The page's pure functions: formatting, parsing and the decisions the views paint. No DOM and no
 * browser-only global, so that both the page (tsconfig.json here) and the unit tests
 * (test/unit/ui-format.test.ts, under Node) compile and run them.
 */
import type { Build, CatalogEntry, Plugin, Spec, Status } from './types.js';

/** The steps of the build card's progress list (index.html's #phases), in order. */
export const PHASES = ['queued', 'resolving', 'building', 'storing', 'done'];

/** Whether a build is still in flight. */
export const isActive = (s?: string): boolean => s === 'queued' || s === 'running';

export const fmtBytes = (n?: number): string => {
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

export const fmtDur = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
};

export const ago = (iso?: string, now = Date.now()): string => {
  if (!iso) return '';
  const s = (now - Date.parse(iso)) / 1000;
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
};

export const target = (s: Spec): string => `${s.os}/${s.arch}${s.arm ? `/v${s.arm}` : ''}`;
export const modVer = (p: Plugin): string => p.module + (p.version ? `@${p.version}` : '');
export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
export const hex = (bytes: ArrayBuffer | Uint8Array): string => [...new Uint8Array(bytes)].map((x) => x.toString(16).padStart(2, '0')).join('');

/** The hint added to a refused request's message: what to do when the server wants a token (or a better one). */
export function authHint(status: number, hasToken: boolean): string {
  if (status === 401) return hasToken ? ' The API token was refused: check it under “API token” at the top.' : ' This server needs an API token: enter one under “API token” at the top.';
  if (status === 403 && !hasToken) return ' Enter an API token with the needed scope under “API token” at the top.';
  return '';
}

/** The server's message, plus the token hint. */
export function withHint(message: string, status: number, hasToken: boolean): string {
  const hint = authHint(status, hasToken);
  return hint ? `${message.replace(/\.?$/, '.')}${hint}` : message;
}

/** The catalog as the picker lists it, from any of the shapes a catalog answers with; null when it is none of them. */
export function normaliseCatalog(body: unknown): CatalogEntry[] | null {
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

/** The entries whose path, description or module names hold every word of the search. */
export function matchCatalog(list: CatalogEntry[], text: string): CatalogEntry[] {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  return list.filter((p) => {
    const hay = `${p.path} ${p.description} ${p.modules.join(' ')}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

/** The line under the search box for `hits` matches of `text` (the first 80 are shown). */
export function catalogMessage(hits: number, text: string): string {
  if (hits) return `${plural(hits, 'plugin')}${hits > 80 ? ', showing the first 80' : ''}${text ? ` matching “${text}”` : ''}.`;
  return text ? `No catalog plugin matches “${text}”. You can add it as a custom module below.` : 'The catalog is empty. Add plugins as custom modules below.';
}

const MODULE_RE = /^[a-z0-9.-]+\.[a-z0-9.-]+(\/[A-Za-z0-9._~-]+)*$/;

/** The custom module fields (`module` may carry `@version` when the version field is empty), or what is wrong and where. */
export function parseCustom(moduleIn: string, versionIn: string): { module: string; version: string } | { field: 'module' | 'version'; error: string } {
  let module = moduleIn.trim();
  let version = versionIn.trim();
  const at = module.indexOf('@');
  if (at > 0 && !version) {
    version = module.slice(at + 1);
    module = module.slice(0, at);
  }
  if (!MODULE_RE.test(module)) {
    return { field: 'module', error: module ? `“${module}” is not a Go module path (like github.com/owner/repo).` : 'Enter a Go module path, like github.com/owner/repo.' };
  }
  if (version && !/^[\x21-\x7e]+$/.test(version)) return { field: 'version', error: 'The version must be a tag (v1.2.3), a branch or a commit.' };
  return { module, version };
}

/** What a build in the recent list is doing: its phase while it runs, its place while it waits, else its status. */
export function recentState(b: Build): string {
  if (b.status === 'running') return b.phase && b.phase !== 'queued' ? b.phase : 'running';
  if (b.status === 'queued') return b.position ? `queued #${b.position}` : 'queued';
  return b.status;
}

/** The class of a log line: `s` for Fairway's own lines, `e` for errors (xcaddy logs to stderr, so by content), else none. */
export const lineClass = (stream: string, text: string): string => (stream === 'system' ? 's' : /\b(error|fatal|panic)\b|^\S+\.go:\d+/i.test(text) ? 'e' : '');

/** The data of each complete server-sent event in `buf` (events without data are skipped), and the incomplete rest. */
export function sseEvents(buf: string): { data: string[]; rest: string } {
  const data: string[] = [];
  let rest = buf;
  for (let i = rest.indexOf('\n\n'); i !== -1; i = rest.indexOf('\n\n')) {
    const d = rest
      .slice(0, i)
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => l.slice(6))
      .join('\n');
    rest = rest.slice(i + 2);
    if (d) data.push(d);
  }
  return { data, rest };
}

/** The pause before the `retry`th reconnection of a dropped log stream. */
export const reconnectDelay = (retry: number): number => Math.min(10_000, 500 * 2 ** Math.min(retry, 5));

/**
 * Each progress step's class (`ok`, `cur`, `bad` or none) and which one is current, for a build
 * in `status` at `phase`, having reached step `reached` while watched.
 */
export function phaseSteps(status: Status | undefined, phase: string, reached: number): Array<{ cls: string; current: boolean }> {
  const failed = status === 'failed' || status === 'canceled';
  const at = failed ? reached : PHASES.indexOf(phase);
  return PHASES.map((_, i) => ({
    // A failure marks the step it happened in (when seen live) and the final step.
    cls: failed ? (i < at ? 'ok' : (i === at && at > 0) || i === 4 ? 'bad' : '') : status === 'succeeded' || i < at ? 'ok' : i === at ? 'cur' : '',
    current: i === at && !failed && status !== 'succeeded',
  }));
}

/** The status line under the progress steps. */
export function phaseText(b: Build | undefined, phase: string, position: number | undefined, cached: boolean, now = Date.now()): string {
  const since = b?.startedAt ?? b?.createdAt;
  const elapsed = since ? ` · ${fmtDur(now - Date.parse(since))}` : '';
  if (!b) return 'Connecting…';
  if (b.status === 'succeeded') return cached ? 'Served from the cache: no build needed. Download it now.' : `Done${b.durationMs !== undefined ? ` in ${fmtDur(b.durationMs)}` : ''}.`;
  if (b.status === 'failed') return 'The build failed. The log below shows why.';
  if (b.status === 'canceled') return 'The build was canceled.';
  if (phase === 'queued') return `Queued${position ? `: position ${position} in line` : ''}${elapsed}`;
  return `${phase[0]!.toUpperCase()}${phase.slice(1)}…${elapsed}`;
}

/** An image of the registry at `host`: `<host>/caddy/<name>:<tag>`, e.g. `build:<id>`. */
export const imageRef = (host: string, nameTag: string): string => `${host}/caddy/${nameTag}`;

/** The caddyserver.com-compatible URL for the same build, pinned to the resolved versions. */
export function downloadUrl(b: Build, origin: string): string {
  const s = b.spec;
  const enc = (x: string) => encodeURIComponent(x).replace(/%2F/g, '/').replace(/%40/g, '@');
  const qs = [`os=${enc(s.os)}`, `arch=${enc(s.arch)}`, ...(s.arm ? [`arm=${enc(s.arm)}`] : []), `version=${enc(s.caddyVersion)}`, ...s.plugins.map((p) => `p=${enc(modVer(p))}`)];
  return `${origin}/api/download?${qs.join('&')}`;
}

/** The copyable commands of a finished build, served from `origin` (host `host`); empty where they do not apply. */
export function buildCommands(b: Build, origin: string, host: string, hasToken: boolean): { url: string; curl: string; verify: string; pull: string; from: string; cli: string } {
  const s = b.spec;
  const url = downloadUrl(b, origin);
  // Every finished Linux build is also an image, tagged with its build id (images are Linux only).
  const img = s.os === 'linux';
  return {
    url,
    // Never the token itself: the command reads it from the environment.
    curl: `curl -fL ${hasToken ? '-H "Authorization: Bearer $FAIRWAY_TOKEN" ' : ''}-o ${b.filename} '${url}'`,
    verify:
      b.provenance === 'signed'
        ? `curl -fsSo fairway.pub ${origin}/api/signing-key && curl -fsSo ${b.filename}.provenance.json ${origin}${b.links.provenance} && cosign verify-blob-attestation --key fairway.pub --insecure-ignore-tlog --type slsaprovenance1 --signature ${b.filename}.provenance.json ${b.filename}`
        : '',
    pull: img ? `docker pull ${imageRef(host, `build:${b.id}`)}` : '',
    from: img ? `FROM ${imageRef(host, `build:${b.id}`)}` : '',
    cli: [
      `fairway build --server ${origin}`,
      `--caddy-version ${s.caddyVersion} --os ${s.os} --arch ${s.arch}${s.arm ? ` --arm ${s.arm}` : ''}`,
      ...s.plugins.map((p) => `--with ${modVer(p)}`),
      `-o ${b.filename}`,
    ].join(' '),
  };
}

/** One agent of `GET /api/agents` as its panel row shows it. */
export function readAgent(raw: unknown, now = Date.now()): { name: string; busy: boolean; detail: string; jobs: string[]; seen: string } {
  const a = raw as Record<string, unknown>;
  const jobs = Array.isArray(a.jobs) ? a.jobs.filter((j): j is string => typeof j === 'string') : [];
  const slots = typeof a.concurrency === 'number' ? ` · ${jobs.length}/${a.concurrency} busy` : '';
  const tools = [a.go, a.xcaddy && `xcaddy ${String(a.xcaddy)}`].filter((x) => typeof x === 'string').join(' · ');
  return {
    name: String(a.id ?? a.name ?? a.host ?? 'agent'),
    busy: jobs.length > 0 || a.status === 'busy',
    detail: `${tools}${slots}`,
    jobs,
    seen: typeof a.lastSeen === 'string' ? ago(a.lastSeen, now) : '',
  };
}

/** sha256 of a PEM key's DER (the fingerprint the server logs); null without SubtleCrypto (outside a secure context) or for a bad key. */
export async function fingerprint(pem: string): Promise<string | null> {
  try {
    const der = Uint8Array.from(atob(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '')), (c) => c.charCodeAt(0));
    return hex(await crypto.subtle.digest('SHA-256', der));
  } catch {
    return null;
  }
}
