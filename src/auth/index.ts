/**
 * API tokens (docs/SECURITY.md). A token is a random secret the server never stores:
 * only its sha256 (`sha256:<hex>`) is configured, in an auth file (JSON) or in FAIRWAY_TOKENS.
 * Tokens are 256-bit random (`generateToken`), so a fast hash is enough, and checking a token
 * costs one sha256 however many tokens are configured or presented: a presented bearer token is
 * hashed, looked up by its digest, and the match confirmed with crypto.timingSafeEqual. The lookup
 * is keyed by a hash of the secret, so its timing says nothing usable about the secret itself.
 * Slow password hashes (`scrypt:`) are refused at start: one per request let a flood of wrong
 * tokens slow every request down.
 *
 * Scopes: `read` (status, logs, artifacts, lists), `build` (start and cancel builds; implies
 * read), `admin` (replacements, pruning, operator routes; implies build, read and agent), `agent`
 * (the fleet module proxy an agent fetches modules from, docs/distributed.md; implies nothing).
 * Anonymous clients get the configured anonymous scopes, never `admin` or `agent`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { errorMessage } from '../util/errors.js';

export const SCOPES = ['read', 'build', 'admin', 'agent'] as const;
export type Scope = (typeof SCOPES)[number];
/** What a route requires; `public` routes (health, UI assets) need no credential at all. */
export type RouteScope = Scope | 'public';

/** Scopes each scope grants: admin ⊃ build ⊃ read. */
const IMPLIES: Record<Scope, readonly Scope[]> = {
  read: ['read'],
  build: ['build', 'read'],
  admin: ['admin', 'build', 'read', 'agent'],
  // Fleet agents: the module proxy only (docs/distributed.md "Fleet caches").
  agent: ['agent'],
};
/** Scopes an anonymous client can never have. */
export const NEVER_ANONYMOUS: readonly Scope[] = ['admin', 'agent'];

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
  /** `sha256:<64 hex>`. */
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

/** Null when `s` can be sent as a bearer token (16-512 characters of the RFC 6750 b64token alphabet), else why not. */
export function bearerTokenError(s: string): string | null {
  return BEARER_RE.test(s) ? null : 'a token must be 16 to 512 characters of letters, digits and "-._~+/" (optionally ending in "=")';
}

// ---- creating tokens ---------------------------------------------------------------------------

/** A new token: `fw_` + 32 random bytes, base64url (256 bits of entropy). */
export function generateToken(): string {
  return `fw_${randomBytes(32).toString('base64url')}`;
}

export function sha256Hash(token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

// ---- loading configured tokens -----------------------------------------------------------------

/**
 * Why a configured `scrypt:` hash is refused, and how to replace it. Verifying one cost a scrypt
 * computation per request that presented an unknown token.
 */
export function scryptRefused(name: string, scopes: readonly string[] = []): string {
  const s = scopes.length ? scopes.join(',') : 'read';
  return (
    `token "${name}": scrypt hashes are no longer accepted (each check cost a slow scrypt computation, so a flood of wrong tokens slowed every request down). ` +
    `Replace it with a sha256 hash: make a new random token with \`fairway token create --name ${name} --scopes ${s}\` and give it to the client, ` +
    `or keep the client's secret and hash it with \`fairway token hash --name ${name} --scopes ${s}\` (reads the secret on stdin; sha256 is only safe for long random secrets)`
  );
}

const entrySchema = z
  .object({
    name: z.string().regex(TOKEN_NAME_RE, 'letters, digits, ".", "_" and "-" only (1-64)'),
    hash: z.string(),
    scopes: z.array(z.enum(SCOPES)).min(1, 'give at least one scope'),
  })
  .strict()
  .superRefine((e, ctx) => {
    if (SHA256_RE.test(e.hash)) return;
    const message = e.hash.startsWith('scrypt:') ? scryptRefused(e.name, e.scopes) : 'must be "sha256:<64 lowercase hex>" (see `fairway token create` and `fairway token hash`)';
    ctx.addIssue({ code: 'custom', path: ['hash'], message });
  });
const fileSchema = z.union([
  z.array(entrySchema),
  z
    .object({ tokens: z.array(entrySchema) })
    .strict()
    .transform((o) => o.tokens),
]);

/** The auth file: `[{name, hash, scopes}]` or `{tokens: [...]}`. */
export function parseTokenFile(text: string, source = 'auth file'): TokenEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AuthConfigError(`${source}: not valid JSON (${errorMessage(err)})`);
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
    throw new AuthConfigError(`cannot read auth file ${path}: ${errorMessage(err)}`);
  }
  return parseTokenFile(text, `auth file ${path}`);
}

/** FAIRWAY_TOKENS: `name:scope1+scope2:<sha256 hex>` entries separated by commas; the hash may also be written `sha256:<hex>`. */
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

export interface AuthenticatorOptions {
  tokens: TokenEntry[];
  anonymousScopes: readonly Scope[];
}

export class TokenAuthenticator {
  /** Configured tokens by the hex sha256 of their secret. */
  private readonly byDigest = new Map<string, Sha256Entry>();
  readonly anonymous: Principal;

  constructor(o: AuthenticatorOptions) {
    for (const s of NEVER_ANONYMOUS) if (o.anonymousScopes.includes(s)) throw new AuthConfigError(`anonymous clients can never have the ${s} scope`);
    this.anonymous = { name: null, scopes: expandScopes(o.anonymousScopes) };
    const names = new Set<string>();
    const hashes = new Set<string>();
    for (const t of o.tokens) {
      if (names.has(t.name)) throw new AuthConfigError(`token name "${t.name}" is configured twice`);
      if (hashes.has(t.hash)) throw new AuthConfigError(`token "${t.name}" has the same hash as another token`);
      names.add(t.name);
      hashes.add(t.hash);
      const m = SHA256_RE.exec(t.hash);
      if (!m) {
        throw new AuthConfigError(t.hash.startsWith('scrypt:') ? scryptRefused(t.name, t.scopes) : `token "${t.name}": the hash must be "sha256:<64 lowercase hex>"`);
      }
      this.byDigest.set(m[1]!, { name: t.name, scopes: expandScopes(t.scopes), digest: Buffer.from(m[1]!, 'hex') });
    }
  }

  get size(): number {
    return this.byDigest.size;
  }

  /** Verifies an `Authorization` header value; no header = the anonymous principal. */
  async authenticate(header: string | undefined): Promise<AuthResult> {
    if (header === undefined || header === '') return { ok: true, principal: this.anonymous };
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (!m || !BEARER_RE.test(m[1]!)) return { ok: false, reason: 'malformed', anonymous: this.anonymous };
    // One sha256 per request, whatever is configured or presented. The map is keyed by the digest
    // (a hash of the secret), so lookup timing reveals nothing usable; the match is confirmed in constant time.
    const digest = createHash('sha256').update(m[1]!, 'utf8').digest();
    const e = this.byDigest.get(digest.toString('hex'));
    if (e && timingSafeEqual(digest, e.digest)) return { ok: true, principal: { name: e.name, scopes: e.scopes } };
    return { ok: false, reason: 'invalid', anonymous: this.anonymous };
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
