/**
 * The plugin catalog: which Caddy plugin packages exist, where their code lives, and which Caddy
 * module IDs each one registers. Three sources, merged by Go module path:
 *  - curated: `packages.json` shipped with Fairway (compiled into dist/ by tsc);
 *  - upstream: an optional catalog URL in caddyserver.com's `/api/packages` shape (caddyserver.com
 *    itself, or another Fairway), mirrored on a schedule into `<dir>/upstream.json` so the catalog
 *    keeps working while the upstream is down;
 *  - learned: module IDs read from `list-modules` of binaries Fairway built, in `<dir>/learned.json`.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import type { Logger } from 'pino';
import { z } from 'zod';
import curatedJson from './packages.json' with { type: 'json' };
import { errorMessage } from '../util/errors.js';

export { parseListModulesText, pluginPackages, type PluginPackage } from './listmodules.js';
export { ModuleLearner } from './learn.js';

export type CatalogSource = 'curated' | 'upstream' | 'learned';

export interface CatalogModule {
  name: string;
  docs?: string;
}

export interface LearnedModules {
  modules: string[];
  /** Version of the package in the binary the IDs were read from. */
  version?: string;
  /** Cache key of that build. */
  build?: string;
  at: string;
}

export interface CatalogPackage {
  /** Stable opaque ID: the upstream's when mirrored, else derived from the path. */
  id: string;
  /** Go module path: what `p=` and `plugins[].module` take. */
  path: string;
  repo: string;
  description: string;
  modules: CatalogModule[];
  sources: CatalogSource[];
  downloads: number;
  published?: string;
  updated?: string;
  listed: boolean;
  available: boolean;
  note?: string;
  learned?: LearnedModules;
}

export interface UpstreamStatus {
  url: string | null;
  /** When the copy in use was fetched (possibly by an earlier run). */
  fetchedAt?: string;
  /** Last attempt, successful or not. */
  checkedAt?: string;
  ok: boolean;
  error?: string;
  packages: number;
  refreshMs: number;
}

export interface Catalog {
  /** Every package, most downloaded first, then by path. */
  list(): Promise<CatalogPackage[]>;
  get(modulePath: string): Promise<CatalogPackage | null>;
  /** Case-insensitive; every word must match the path, description or a module ID. */
  search(q: string): Promise<CatalogPackage[]>;
  /** Records the module IDs a package registers (learned from a built binary); persisted. */
  setModules(modulePath: string, ids: string[], info?: { version?: string; build?: string }): Promise<void>;
  /** Fetches the upstream catalog now; on failure the last good copy stays in use. */
  refreshUpstream(): Promise<UpstreamStatus>;
  upstreamStatus(): UpstreamStatus;
  /** Whether the curated list or the upstream mirror lists the package (not only learned); case-insensitive, like the build policy. */
  lists(modulePath: string): boolean;
}

// ---- file formats ---------------------------------------------------------------------------

const modulePathStr = z
  .string()
  .min(1)
  .max(300)
  .regex(/^[A-Za-z0-9._~\-/+]+$/, 'not a Go module path');
const moduleId = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9_.-]+$/, 'not a Caddy module ID');

export const curatedSchema = z.object({
  updated: z.string().optional(),
  packages: z.array(
    z.object({
      path: modulePathStr,
      repo: z.string().url(),
      description: z.string(),
      modules: z.array(moduleId),
      note: z.string().optional(),
      modulesVerified: z.string().optional(),
    }),
  ),
});
export type CuratedFile = z.infer<typeof curatedSchema>;

/** One entry of caddyserver.com's `/api/packages` `result` (lenient: unknown fields are dropped). */
const upstreamPackageSchema = z.object({
  id: z.union([z.string(), z.number()]).transform(String).optional(),
  path: modulePathStr,
  repo: z.string().max(500).optional(),
  description: z.string().max(4000).optional(),
  downloads: z.number().nonnegative().optional(),
  published: z.string().max(64).optional(),
  updated: z.string().max(64).optional(),
  listed: z.boolean().optional(),
  available: z.boolean().optional(),
  modules: z
    .array(z.object({ name: moduleId, docs: z.string().max(4000).optional().catch(undefined) }))
    .nullish()
    .catch(null),
});
export type UpstreamPackage = z.infer<typeof upstreamPackageSchema>;

const upstreamEnvelopeSchema = z.object({ status_code: z.number().optional(), result: z.array(z.unknown()) });

const upstreamFileSchema = z.object({
  url: z.string(),
  fetchedAt: z.string(),
  etag: z.string().optional(),
  packages: z.array(upstreamPackageSchema),
});
type UpstreamFile = z.infer<typeof upstreamFileSchema>;

const learnedFileSchema = z.object({
  version: z.literal(1),
  packages: z.record(z.string(), z.object({ modules: z.array(moduleId), version: z.string().optional(), build: z.string().optional(), at: z.string() })),
});
type LearnedFile = z.infer<typeof learnedFileSchema>;

/** Validates an upstream `/api/packages` body; entries that do not fit are dropped, not fatal. */
export function parseUpstream(body: unknown): { packages: UpstreamPackage[]; dropped: number } {
  const env = upstreamEnvelopeSchema.safeParse(body);
  if (!env.success) throw new Error(`not a package list: expected {"result": [...]} (${env.error.issues[0]?.message ?? 'invalid'})`);
  const packages: UpstreamPackage[] = [];
  let dropped = 0;
  for (const raw of env.data.result) {
    const p = upstreamPackageSchema.safeParse(raw);
    if (p.success) packages.push(p.data);
    else dropped++;
  }
  if (packages.length === 0 && env.data.result.length > 0) throw new Error(`none of the ${env.data.result.length} entries is a valid package`);
  return { packages, dropped };
}

/** The curated list shipped with Fairway. */
export function shippedCatalog(): CuratedFile {
  return curatedSchema.parse(curatedJson);
}

// ---- helpers --------------------------------------------------------------------------------

/** A UUID-shaped ID derived from the module path, so it is the same on every server. */
export function packageId(path: string): string {
  const h = createHash('sha256').update(`fairway-package:${path}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function repoOf(path: string): string {
  const parts = path.split('/');
  if (parts[0] === 'github.com' || parts[0] === 'gitlab.com' || parts[0] === 'codeberg.org' || parts[0] === 'bitbucket.org') {
    return `https://${parts.slice(0, 3).join('/')}`;
  }
  return `https://pkg.go.dev/${path}`;
}

async function readJson(file: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text);
}

async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const len = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(len) && len > maxBytes) throw new Error(`the upstream catalog is ${len} bytes, over the limit of ${maxBytes}`);
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > maxBytes) throw new Error(`the upstream catalog is over the limit of ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// ---- the implementation ---------------------------------------------------------------------

export interface FileCatalogOptions {
  /** Folder for upstream.json and learned.json, e.g. `<dataDir>/catalog`. */
  dir: string;
  /** caddyserver.com-shaped package list to mirror, e.g. https://caddyserver.com/api/packages. */
  upstreamUrl?: string;
  /** How often to refresh the mirror; 0 disables the schedule (refreshUpstream() still works). */
  refreshMs?: number;
  /** Per-fetch timeout. Default 60 s. */
  timeoutMs?: number;
  /** Largest upstream body accepted. Default 64 MiB. */
  maxBytes?: number;
  /** Replaces the shipped curated list (tests, or an operator's own list). */
  curated?: CuratedFile;
  logger?: Logger;
  fetch?: typeof fetch;
  now?: () => Date;
}

export class FileCatalog implements Catalog {
  private upstream: UpstreamFile | null = null;
  private learned: LearnedFile = { version: 1, packages: {} };
  private merged: CatalogPackage[] | null = null;
  private status: UpstreamStatus;
  private refreshing: Promise<UpstreamStatus> | null = null;
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly curated: CuratedFile;
  private readonly fetchFn: typeof fetch;
  private readonly now: () => Date;

  private constructor(private readonly o: FileCatalogOptions) {
    this.curated = o.curated ?? shippedCatalog();
    this.fetchFn = o.fetch ?? globalThis.fetch;
    this.now = o.now ?? (() => new Date());
    this.status = { url: o.upstreamUrl ?? null, ok: true, packages: 0, refreshMs: o.refreshMs ?? 0 };
  }

  /** Loads the curated list and what earlier runs left on disk (mirror copy, learned IDs). */
  static async open(o: FileCatalogOptions): Promise<FileCatalog> {
    const c = new FileCatalog(o);
    await mkdir(o.dir, { recursive: true });
    await c.loadDisk();
    return c;
  }

  private get upstreamFile(): string {
    return join(this.o.dir, 'upstream.json');
  }

  private get learnedFile(): string {
    return join(this.o.dir, 'learned.json');
  }

  private async loadDisk(): Promise<void> {
    try {
      const raw = await readJson(this.learnedFile);
      if (raw !== undefined) this.learned = learnedFileSchema.parse(raw);
    } catch (err) {
      this.o.logger?.warn({ err, file: this.learnedFile }, 'catalog: ignoring unreadable learned module IDs');
    }
    if (!this.o.upstreamUrl) return;
    try {
      const raw = await readJson(this.upstreamFile);
      if (raw === undefined) return;
      const file = upstreamFileSchema.parse(raw);
      if (file.url !== this.o.upstreamUrl) {
        this.o.logger?.info({ had: file.url, now: this.o.upstreamUrl }, 'catalog: upstream URL changed; not using the old mirror copy');
        return;
      }
      this.upstream = file;
      this.status = { ...this.status, fetchedAt: file.fetchedAt, packages: file.packages.length };
      this.o.logger?.info({ url: file.url, fetchedAt: file.fetchedAt, packages: file.packages.length }, 'catalog: loaded upstream mirror copy from disk');
    } catch (err) {
      this.o.logger?.warn({ err, file: this.upstreamFile }, 'catalog: ignoring unreadable upstream mirror copy');
    }
  }

  /** Starts the mirror schedule: one refresh now (not awaited), then every refreshMs. */
  start(): void {
    if (!this.o.upstreamUrl || this.timer || this.closed) return;
    const tick = () => {
      void this.refreshUpstream().finally(() => {
        if (this.closed || !this.o.refreshMs) return;
        this.timer = setTimeout(tick, this.o.refreshMs);
        this.timer.unref();
      });
    };
    this.timer = setTimeout(tick, 0);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.refreshing?.catch(() => undefined);
    await this.writing;
  }

  upstreamStatus(): UpstreamStatus {
    return { ...this.status };
  }

  refreshUpstream(): Promise<UpstreamStatus> {
    if (!this.o.upstreamUrl) return Promise.resolve(this.upstreamStatus());
    this.refreshing ??= this.doRefresh(this.o.upstreamUrl).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(url: string): Promise<UpstreamStatus> {
    const checkedAt = this.now().toISOString();
    const log = this.o.logger;
    try {
      const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'fairway-catalog-mirror' };
      if (this.upstream?.etag) headers['if-none-match'] = this.upstream.etag;
      const res = await this.fetchFn(url, { headers, signal: AbortSignal.timeout(this.o.timeoutMs ?? 60_000), redirect: 'follow' });
      if (res.status === 304 && this.upstream) {
        await res.body?.cancel();
        this.status = { ...this.status, ok: true, checkedAt, packages: this.upstream.packages.length };
        delete this.status.error;
        log?.debug({ url }, 'catalog: upstream unchanged');
        return this.upstreamStatus();
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const text = await readCapped(res, this.o.maxBytes ?? 64 * 1024 * 1024);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new Error('the response is not JSON');
      }
      const { packages, dropped } = parseUpstream(body);
      const etag = res.headers.get('etag') ?? undefined;
      const file: UpstreamFile = { url, fetchedAt: checkedAt, ...(etag ? { etag } : {}), packages };
      await writeFileAtomic(this.upstreamFile, JSON.stringify(file));
      this.upstream = file;
      this.merged = null;
      this.status = { url, ok: true, fetchedAt: checkedAt, checkedAt, packages: packages.length, refreshMs: this.status.refreshMs };
      log?.info({ url, packages: packages.length, dropped }, 'catalog: upstream mirrored');
    } catch (err) {
      const message = (err as Error).name === 'TimeoutError' ? 'timed out' : errorMessage(err);
      this.status = { ...this.status, ok: false, checkedAt, error: message, packages: this.upstream?.packages.length ?? 0 };
      log?.warn({ url, error: message, usingCopyFrom: this.upstream?.fetchedAt ?? null }, 'catalog: upstream refresh failed; keeping the last good copy');
    }
    return this.upstreamStatus();
  }

  async setModules(modulePath: string, ids: string[], info: { version?: string; build?: string } = {}): Promise<void> {
    modulePathStr.parse(modulePath);
    const modules = [...new Set(ids.filter((id) => moduleId.safeParse(id).success))].sort();
    const entry: LearnedModules = { modules, ...(info.version ? { version: info.version } : {}), ...(info.build ? { build: info.build } : {}), at: this.now().toISOString() };
    this.learned = { version: 1, packages: { ...this.learned.packages, [modulePath]: entry } };
    this.merged = null;
    const snapshot = JSON.stringify(this.learned, null, 1);
    const write = this.writing.then(() => writeFileAtomic(this.learnedFile, snapshot));
    this.writing = write.catch((err: unknown) => this.o.logger?.error({ err }, 'catalog: could not save learned module IDs'));
    await write;
  }

  lists(modulePath: string): boolean {
    // Case-insensitive, like the build policy's patterns: an upper-case spelling of a listed path is the same repository on GitHub.
    const want = modulePath.toLowerCase();
    const same = (p: { path: string }) => p.path.toLowerCase() === want;
    return this.curated.packages.some(same) || !!this.upstream?.packages.some(same);
  }

  async list(): Promise<CatalogPackage[]> {
    this.merged ??= this.merge();
    return this.merged;
  }

  async get(modulePath: string): Promise<CatalogPackage | null> {
    return (await this.list()).find((p) => p.path === modulePath) ?? null;
  }

  async search(q: string): Promise<CatalogPackage[]> {
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    const all = await this.list();
    if (words.length === 0) return all;
    const scored: Array<{ p: CatalogPackage; score: number }> = [];
    for (const p of all) {
      const path = p.path.toLowerCase();
      const desc = p.description.toLowerCase();
      const mods = p.modules.map((m) => m.name.toLowerCase());
      let score = 0;
      let every = true;
      for (const w of words) {
        const s = (path.includes(w) ? 4 : 0) + (mods.some((m) => m.includes(w)) ? 2 : 0) + (desc.includes(w) ? 1 : 0);
        if (s === 0) {
          every = false;
          break;
        }
        score += s + (path === w || path.endsWith(`/${w}`) ? 4 : 0);
      }
      if (every) scored.push({ p, score });
    }
    return scored.sort((a, b) => b.score - a.score || b.p.downloads - a.p.downloads || a.p.path.localeCompare(b.p.path)).map((s) => s.p);
  }

  private merge(): CatalogPackage[] {
    const byPath = new Map<string, CatalogPackage>();
    const docs = new Map<string, Map<string, string>>();
    const addDocs = (path: string, mods: CatalogModule[]) => {
      const m = docs.get(path) ?? new Map<string, string>();
      for (const mod of mods) if (mod.docs && !m.has(mod.name)) m.set(mod.name, mod.docs);
      docs.set(path, m);
    };
    for (const u of this.upstream?.packages ?? []) {
      const modules = (u.modules ?? []).map((m) => ({ name: m.name, ...(m.docs ? { docs: m.docs } : {}) }));
      addDocs(u.path, modules);
      byPath.set(u.path, {
        id: u.id ?? packageId(u.path),
        path: u.path,
        repo: u.repo && /^https?:\/\//.test(u.repo) ? u.repo : repoOf(u.path),
        description: u.description ?? modules.find((m) => m.docs)?.docs ?? '',
        modules,
        sources: ['upstream'],
        downloads: u.downloads ?? 0,
        ...(u.published ? { published: u.published } : {}),
        ...(u.updated ? { updated: u.updated } : {}),
        listed: u.listed ?? true,
        available: u.available ?? true,
      });
    }
    for (const c of this.curated.packages) {
      const prev = byPath.get(c.path);
      const curatedModules = c.modules.map((name) => ({ name }));
      byPath.set(c.path, {
        id: prev?.id ?? packageId(c.path),
        path: c.path,
        repo: c.repo,
        description: c.description,
        modules: curatedModules.length > 0 ? curatedModules : (prev?.modules ?? []),
        sources: [...(prev?.sources ?? []), 'curated'],
        downloads: prev?.downloads ?? 0,
        ...(prev?.published ? { published: prev.published } : this.curated.updated ? { published: this.curated.updated } : {}),
        ...(prev?.updated ? { updated: prev.updated } : this.curated.updated ? { updated: this.curated.updated } : {}),
        listed: prev?.listed ?? true,
        available: prev?.available ?? true,
        ...(c.note ? { note: c.note } : {}),
      });
    }
    for (const [path, l] of Object.entries(this.learned.packages)) {
      const prev = byPath.get(path);
      const base: CatalogPackage = prev ?? {
        id: packageId(path),
        path,
        repo: repoOf(path),
        description: '',
        modules: [],
        sources: [],
        downloads: 0,
        published: l.at,
        updated: l.at,
        listed: true,
        available: true,
      };
      byPath.set(path, {
        ...base,
        modules: l.modules.length > 0 ? l.modules.map((name) => ({ name })) : base.modules,
        sources: [...base.sources, 'learned'],
        learned: l,
      });
    }
    const out = [...byPath.values()];
    for (const p of out) {
      const d = docs.get(p.path);
      if (d) p.modules = p.modules.map((m) => (m.docs || !d.has(m.name) ? m : { ...m, docs: d.get(m.name)! }));
    }
    return out.sort((a, b) => b.downloads - a.downloads || a.path.localeCompare(b.path));
  }
}
