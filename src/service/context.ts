/** Who asks the service: the caller's context (trust, scopes, client, the build rate limit) and the rule of the `build` scope. */
import { expandScopes, type Scope } from '../auth/index.js';
import { AppError } from '../util/errors.js';

export interface RequestContext {
  /** Trusted callers (local CLI) may use local path replacements. */
  trusted?: boolean;
  /**
   * The caller's token scopes (HTTP callers always give them, src/api/security.ts requestContext):
   * starting a build or a resolution needs `build`; replacements need `admin`. Absent = an
   * in-process caller (prebuilds, the CLI), which may build but has no admin rights.
   */
  scopes?: readonly Scope[];
  /** Who is asking (`token:<name>` or `ip:<addr>`), for per-client build limits. */
  client?: string;
  /**
   * HTTP: counts this request against the build rate limit (`buildRateLimit`), at most once per
   * request; throws 429 past it. Called before anything is resolved or queued.
   */
  chargeBuild?: () => Promise<void>;
}

/** Whether a caller may start builds and resolutions: in-process callers and the `build` scope. */
export function mayBuild(ctx: RequestContext): boolean {
  return !!ctx.trusted || ctx.scopes === undefined || expandScopes(ctx.scopes).has('build');
}

const BUILD_SCOPE_NEEDED = 'starting a build or resolving module versions needs a token with the build scope (fairway token create --scopes build)';

/** Refuses a caller without the `build` scope (before anything is resolved or queued). */
export function requireBuildScope(ctx: RequestContext): void {
  if (mayBuild(ctx)) return;
  throw new AppError('build_scope_required', `${BUILD_SCOPE_NEEDED}; finished builds can be read without it`);
}

/** Whether a caller may cancel builds others started: trusted callers and the `admin` scope. */
export function mayCancelAny(ctx: RequestContext): boolean {
  return !!ctx.trusted || expandScopes(ctx.scopes ?? []).has('admin');
}
