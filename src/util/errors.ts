/**
 * The one base class of every error meant for a client (as Fastify's own lib/errors.js does): a
 * stable `code`, an HTTP `statusCode`, and a message saying what to do. src/api/errors.ts maps any
 * AppError to its status and `{error:{code,message,field?}}`; anything else is a 500.
 */
export class AppError extends Error {
  /** The offending input, when the error is about one (SpecError). */
  readonly field?: string;
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Seconds after which a retry may succeed (sent as Retry-After). */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

/** Something the client named does not exist (a build, its artifact in a store, a record). */
export class NotFoundError extends AppError {
  constructor(what: string) {
    super(404, 'not_found', `${what} not found`);
    this.name = 'NotFoundError';
  }
}
