/**
 * API tokens (issue 7, docs/SECURITY.md). A token is a random secret the server never stores:
 * only a hash of it (`sha256:<hex>`, or `scrypt:...` for human-chosen secrets) is configured, in
 * an auth file (JSON) or in FAIRWAY_TOKENS. A presented bearer token is hashed and compared with
 * every configured hash in constant time (crypto.timingSafeEqual), so neither the answer nor its
 * timing tells which bytes matched.
 *
 * Scopes: `read` (status, logs, artifacts, lists), `build` (start and cancel builds; implies
 * read), `admin` (replacements, pruning, operator routes; implies build and read). Anonymous
 * clients get the configured anonymous scopes, never `admin`.
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export const SCOPES = ['read', 'build', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];
/** What a route requires; `public` routes (health, UI assets) need no credential at all. */
export type RouteScope = Scope | 'public';

/** Scopes each scope grants: admin ⊃ build ⊃ read. */
const IMPLIES: Record<Scope, readonly Scope[]> = {
  read: ['read'],
  build: ['build', 'read'],
  admin: ['admin', 'build', 'read'],
};

export function expandScopes(scopes: Iterable<Scope>): Set<Scope> {
  const out = new Set<Scope>();
  for (const s of scopes) for (const x of IMPLIES[s]) out.add(x);
  return out;
}

export function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}

export interface Principal {
  /** Token name, or null for an anonymous client. */
  name: string | null;
  scopes: ReadonlySet<Scope>;
}

export interface TokenEntry {
  name: string;
  /** `sha256:<64 hex>` or `scrypt:<N>:<r>:<p>:<salt b64url>:<hash b64url>`. */
  hash: string;
  scopes: Scope[];
}

export class AuthConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthConfigError';
  }
}

export const TOKEN_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
/** Shape of a bearer credential we even try to verify: RFC 6750 b64token, 16..512 chars. */
const BEARER_RE = /^[A-Za-z0-9\-._~+/]{16,512}=*$/;
const SHA256_RE = /^sha256:([0-9a-f]{64})$/;
const SCRYPT_RE = /^scrypt:([0-9]{1,8}):([0-9]{1,3}):([0-9]{1,3}):([A-Za-z0-9_-]{16,128}):([A-Za-z0-9_-]{32,256})$/;

// ---- creating tokens ---------------------------------------------------------------------------

/** A new token: `fw_` + 32 random bytes, base64url (256 bits of entropy). */
export function generateToken(): string {
  return `fw_${randomBytes(32).toString('base64url')}`;
}

export function sha256Hash(token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

const SCRYPT_DEFAULT = { N: 16384, r: 8, p: 1 };

function scrypt(password: string, salt: Buffer, keylen: number, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, o, (err, key) => (err ? reject(err) : resolve(key))));
}

/** A salted scrypt hash, for secrets chosen by people; generated tokens need only sha256. */
export async function scryptHash(token: string, o = SCRYPT_DEFAULT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(token, salt, 32, { N: o.N, r: o.r, p: o.p, maxmem: 256 * o.N * o.r + 1024 * 1024 });
  return `scrypt:${o.N}:${o.r}:${o.p}:${salt.toString('base64url')}:${key.toString('base64url')}`;
}

// ---- loading configured tokens -----------------------------------------------------------------

const entrySchema = z
  .object({
    name: z.string().regex(TOKEN_NAME_RE, 'letters, digits, ".", "_" and "-" only (1-64)'),
    hash: z.string().refine((h) => SHA256_RE.test(h) || scryptParams(h) !== null, 'must be "sha256:<64 lowercase hex>" or "scrypt:N:r:p:salt:hash" (see `fairway token create`)'),
    scopes: z.array(z.enum(SCOPES)).min(1, 'give at least one scope'),
  })
  .strict();
const fileSchema = z.union([z.array(entrySchema), z.object({ tokens: z.array(entrySchema) }).strict().transform((o) => o.tokens)]);

function scryptParams(h: string): { N: number; r: number; p: number; salt: Buffer; key: Buffer } | null {
  const m = SCRYPT_RE.exec(h);
  if (!m) return null;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // N a power of two, bounded so a configured hash cannot make each check arbitrarily slow.
  if (N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16) return null;
  return { N, r, p, salt: Buffer.from(m[4]!, 'base64url'), key: Buffer.from(m[5]!, 'base64url') };
}

/** The auth file: `[{name, hash, scopes}]` or `{tokens: [...]}`. */
export function parseTokenFile(text: string, source = 'auth file'): TokenEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AuthConfigError(`${source}: not valid JSON (${(err as Error).message})`);
  }
  const r = fileSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new AuthConfigError(`${source}: ${i.path.join('.') || 'file'}: ${i.message}`);
  }
  return r.data;
}

export function loadTokenFile(path: string): TokenEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AuthConfigError(`cannot read auth file ${path}: ${(err as Error).message}`);
  }
  return parseTokenFile(text, `auth file ${path}`);
}

/**
 * FAIRWAY_TOKENS: `name:scope1+scope2:<sha256 hex>` entries separated by commas; the hash may
 * also be written `sha256:<hex>` or `scrypt:...`.
 */
export function parseTokensEnv(s: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  for (const [i, raw] of s.split(',').entries()) {
    const item = raw.trim();
    if (item === '') continue;
    const parts = item.split(':');
    const where = `FAIRWAY_TOKENS entry ${i + 1}`;
    if (parts.length < 3) throw new AuthConfigError(`${where}: expected name:scope1+scope2:sha256hex`);
    const [name, scopeText] = parts as [string, string];
    const rest = parts.slice(2).join(':');
    const hash = /^[0-9a-f]{64}$/.test(rest) ? `sha256:${rest}` : rest;
    const r = entrySchema.safeParse({ name, hash, scopes: scopeText.split('+').filter(Boolean) });
    if (!r.success) {
      const iss = r.error.issues[0]!;
      throw new AuthConfigError(`${where} (${JSON.stringify(name.slice(0, 64))}): ${iss.path.join('.')}: ${iss.message}`);
    }
    out.push(r.data);
  }
  return out;
}

/** The FAIRWAY_TOKENS form of an entry. */
export function tokensEnvEntry(e: TokenEntry): string {
  const m = SHA256_RE.exec(e.hash);
  return `${e.name}:${e.scopes.join('+')}:${m ? m[1] : e.hash}`;
}

// ---- verifying ---------------------------------------------------------------------------------

export type AuthResult =
  | { ok: true; principal: Principal }
  /** `malformed`: not a Bearer token; `invalid`: no configured token matches. */
  | { ok: false; reason: 'malformed' | 'invalid'; anonymous: Principal };

interface Sha256Entry {
  name: string;
  scopes: ReadonlySet<Scope>;
  digest: Buffer;
}
interface ScryptEntry {
  name: string;
  scopes: ReadonlySet<Scope>;
  params: NonNullable<ReturnType<typeof scryptParams>>;
}

export interface AuthenticatorOptions {
  tokens: TokenEntry[];
  anonymousScopes: readonly Scope[];
}

export class TokenAuthenticator {
  private readonly sha: Sha256Entry[] = [];
  private readonly scr: ScryptEntry[] = [];
  readonly anonymous: Principal;
  /** scrypt answers by sha256(token), so a client's repeated requests cost one scrypt. */
  private readonly scryptMemo = new Map<string, string | null>();

  constructor(o: AuthenticatorOptions) {
    if (o.anonymousScopes.includes('admin')) throw new AuthConfigError('anonymous clients can never have the admin scope');
    this.anonymous = { name: null, scopes: expandScopes(o.anonymousScopes) };
    const names = new Set<string>();
    const hashes = new Set<string>();
    for (const t of o.tokens) {
      if (names.has(t.name)) throw new AuthConfigError(`token name "${t.name}" is configured twice`);
      if (hashes.has(t.hash)) throw new AuthConfigError(`token "${t.name}" has the same hash as another token`);
      names.add(t.name);
      hashes.add(t.hash);
      const scopes = expandScopes(t.scopes);
      const m = SHA256_RE.exec(t.hash);
      if (m) {
        this.sha.push({ name: t.name, scopes, digest: Buffer.from(m[1]!, 'hex') });
        continue;
      }
      const params = scryptParams(t.hash);
      if (!params) throw new AuthConfigError(`token "${t.name}": unsupported hash`);
      this.scr.push({ name: t.name, scopes, params });
    }
  }

  get size(): number {
    return this.sha.length + this.scr.length;
  }

  /** Verifies an `Authorization` header value; no header = the anonymous principal. */
  async authenticate(header: string | undefined): Promise<AuthResult> {
    if (header === undefined || header === '') return { ok: true, principal: this.anonymous };
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (!m || !BEARER_RE.test(m[1]!)) return { ok: false, reason: 'malformed', anonymous: this.anonymous };
    const token = m[1]!;
    const digest = createHash('sha256').update(token, 'utf8').digest();
    // Every configured hash is compared, whether or not an earlier one matched.
    let found: Sha256Entry | null = null;
    for (const e of this.sha) {
      if (timingSafeEqual(digest, e.digest) && !found) found = e;
    }
    if (found) return { ok: true, principal: { name: found.name, scopes: found.scopes } };
    if (this.scr.length) {
      const hit = await this.verifyScrypt(token, digest.toString('hex'));
      if (hit) return { ok: true, principal: { name: hit.name, scopes: hit.scopes } };
    }
    return { ok: false, reason: 'invalid', anonymous: this.anonymous };
  }

  private async verifyScrypt(token: string, memoKey: string): Promise<ScryptEntry | null> {
    const memo = this.scryptMemo.get(memoKey);
    if (memo !== undefined) return memo === null ? null : (this.scr.find((e) => e.name === memo) ?? null);
    let found: ScryptEntry | null = null;
    for (const e of this.scr) {
      const { N, r, p, salt, key } = e.params;
      const got = await scrypt(token, salt, key.length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 });
      if (timingSafeEqual(got, key) && !found) found = e;
    }
    if (this.scryptMemo.size >= 1000) this.scryptMemo.delete(this.scryptMemo.keys().next().value!);
    this.scryptMemo.set(memoKey, found ? found.name : null);
    return found;
  }
}

/** Whether a principal may call a route that requires `required`. */
export function allows(p: Principal, required: RouteScope): boolean {
  return required === 'public' || p.scopes.has(required);
}

/** Hosts that only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The anonymous scopes when none are configured: read+build for a server only this machine can
 * reach and that has no tokens (the embedded dev default); otherwise read only.
 */
export function defaultAnonymousScopes(o: { host: string; tokens: number }): Scope[] {
  return o.tokens === 0 && isLoopbackHost(o.host) ? ['read', 'build'] : ['read'];
}

/** The authenticator for a server's settings: tokens from the auth file and FAIRWAY_TOKENS. */
export function authenticatorFromConfig(c: { host: string; authFile?: string; tokens?: string; anonymousScopes?: Scope[] }): TokenAuthenticator {
  const tokens = [...(c.authFile ? loadTokenFile(c.authFile) : []), ...(c.tokens ? parseTokensEnv(c.tokens) : [])];
  const anonymousScopes = c.anonymousScopes ?? defaultAnonymousScopes({ host: c.host, tokens: tokens.length });
  return new TokenAuthenticator({ tokens, anonymousScopes });
}
