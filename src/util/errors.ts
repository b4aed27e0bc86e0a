/**
 * The error catalog: every error a client of the native and compatible APIs can get, its one HTTP
 * status, and what it means (as Fastify's own lib/errors.js keeps its errors in one place). A part
 * throws `new AppError(code, message)` (or a subclass naming its code); the status comes from
 * here, so one code never answers two statuses. The message says what went wrong and what to do.
 * docs/errors.md lists the catalog, and test/unit/errors.test.ts holds the two to each other.
 * The registry's errors are the OCI distribution spec's own codes (RegistryError, src/registry).
 */
export const ERRORS = {
  // 400: the request itself is wrong
  bad_request: { status: 400, means: 'the request does not match what the route accepts (a parameter, a body field, a malformed HTTP request)' },
  bad_url: { status: 400, means: 'the URL path is not valid (malformed percent-encoding)' },
  invalid_spec: { status: 400, means: 'the build request breaks the grammar (module path, version, platform, plugins); `field` names the part' },
  invalid_recipe: { status: 400, means: 'a recipe body or name is not valid' },
  invalid_digest: { status: 400, means: 'a digest is not sha256:<64 lowercase hex>' },
  digest_mismatch: { status: 400, means: 'a blob does not hash to the digest it was given under' },
  invalid_record_name: { status: 400, means: 'a record name is not valid' },
  bad_key: { status: 400, means: 'a key file is not a usable ECDSA P-256 key' },
  // 401, 403: who is asking
  unauthorized: { status: 401, means: 'no token, or a token the server does not know' },
  forbidden: { status: 403, means: "the token's scopes do not allow this route" },
  admin_required: { status: 403, means: 'the request needs the admin scope (replacements, other clients’ builds)' },
  build_scope_required: { status: 403, means: 'starting a build or a resolution needs the build scope' },
  policy_denied: { status: 403, means: "the server's module or version policy refuses the request" },
  cross_site: { status: 403, means: 'a browser request from another site was refused' },
  not_your_build: { status: 403, means: 'only the client that started a build, or an admin, may cancel it' },
  // 404, 405, 408, 410: what is asked for
  not_found: { status: 404, means: 'the build, artifact, record or route does not exist' },
  no_provenance: { status: 404, means: 'the build was made before provenance was recorded' },
  no_signing_key: { status: 404, means: 'the server has no signing key' },
  no_index_signing_key: { status: 404, means: 'the server signs no image indexes' },
  method_not_allowed: { status: 405, means: 'the path exists with other methods (the Allow header lists them)' },
  request_timeout: { status: 408, means: 'the request took too long to arrive' },
  artifact_missing: { status: 410, means: 'the binary of a build is gone from the store; its record was quarantined; request the build again' },
  buildinfo_unreadable: { status: 410, means: "a build's build info is unreadable in the store; the artifact was quarantined" },
  provenance_unreadable: { status: 410, means: "a build's provenance is unreadable in the store; the artifact was quarantined" },
  sbom_unreadable: { status: 410, means: "a build's SBOM attestation is unreadable in the store; the artifact was quarantined" },
  // 409: the state of a build
  not_ready: { status: 409, means: 'the build is queued or running: it has no artifact, build info, provenance or SBOM yet' },
  build_failed: { status: 409, means: 'the build failed or was canceled: it has no artifact (the compatible API answers it as 400, as caddyserver.com does)' },
  not_active: { status: 409, means: 'the build is not queued or running, so it cannot be canceled' },
  is_rebuild: { status: 409, means: 'a verification rebuild cannot itself be rebuilt' },
  not_rebuildable: { status: 409, means: 'the build cannot be rebuilt here (older build flags, a local directory replacement)' },
  config_recipe: { status: 409, means: "the recipe comes from the server's configuration and cannot be changed over HTTP" },
  not_promoted: { status: 409, means: 'the recipe has no promoted set for that Caddy version yet (the watcher promotes what builds and passes its checks)' },
  watch_off: { status: 409, means: 'watching upstream is off on this server (watchInterval 0)' },
  // 413-431: limits of the HTTP layer
  body_too_large: { status: 413, means: 'the request body is larger than the server accepts' },
  uri_too_long: { status: 414, means: 'a path segment is too long' },
  unsupported_media_type: { status: 415, means: 'the request body is not JSON' },
  unknown_host: { status: 421, means: 'the Host header names none of the server’s names' },
  unknown_version: { status: 422, means: 'a module or version does not resolve through the module proxy' },
  rate_limited: { status: 429, means: 'too many requests, or too many builds started; Retry-After says when to try again' },
  too_many_builds: { status: 429, means: 'the client has as many builds queued or running as one client may' },
  header_too_large: { status: 431, means: 'the request line and headers are larger than the server accepts' },
  client_gone: { status: 499, means: 'the client went away while waiting (logged, never sent)' },
  // 5xx: the server or what it depends on
  internal: { status: 500, means: 'an unexpected error; the server log has the details' },
  artifact_corrupt: { status: 500, means: 'a stored binary does not match its record; it was quarantined and will be rebuilt' },
  upstream_error: { status: 502, means: 'the Go module proxy failed' },
  build_canceled: { status: 503, means: 'the build was canceled (server shutdown, an operator) before it finished; try again' },
  resolver_busy: { status: 503, means: 'the server is resolving as many module versions as it may at once; retry shortly' },
  shutting_down: { status: 503, means: 'the server is shutting down; the build is not lost' },
  store_unavailable: { status: 503, means: 'the artifact store cannot be reached' },
  upstream_timeout: { status: 504, means: 'the Go module proxy did not answer in time' },
  insufficient_storage: { status: 507, means: 'the server has too little free disk to start a build' },
} as const satisfies Record<string, { status: number; means: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** The one base class of every error meant for a client: a catalog code, its status, and a message saying what to do. */
export class AppError extends Error {
  readonly statusCode: number;
  readonly code: string;
  /** The offending input, when the error is about one (SpecError). */
  readonly field?: string;
  constructor(
    /** A catalog code; or, for an error of another catalog (the OCI spec's: RegistryError), its status and code. */
    code: ErrorCode | { status: number; code: string },
    message: string,
    /** Seconds after which a retry may succeed (sent as Retry-After). */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'AppError';
    if (typeof code === 'string') {
      this.code = code;
      this.statusCode = ERRORS[code].status;
    } else {
      this.code = code.code;
      this.statusCode = code.status;
    }
  }
}

/** Something the client named does not exist (a build, its artifact in a store, a record). */
export class NotFoundError extends AppError {
  constructor(what: string) {
    super('not_found', `${what} not found`);
    this.name = 'NotFoundError';
  }
}

/** The message of anything thrown: an Error's message, else the value as text (a thrown string, a rejected non-Error). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
