import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AppError, type ErrorCode } from '../util/errors.js';
import { envelopeOf } from './schemas.js';

export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

/** What each part of a request is called in a validation message. */
const PARTS: Record<string, string> = { params: 'path parameter', querystring: 'query parameter', body: 'body field', headers: 'header' };

/**
 * A request that failed its route's zod schema (fastify-type-provider-zod), as `{code, message,
 * field}`: the message names the parameter and what is wrong with it.
 */
function validationError(err: FastifyError): ErrorBody['error'] | null {
  if (!hasZodFastifySchemaValidationErrors(err)) return null;
  const issue = err.validation[0]!;
  const field = issue.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const part = PARTS[err.validationContext ?? ''] ?? 'request';
  const what = field ? `${part} "${field}"` : part.replace(/ (parameter|field)$/, '');
  return { code: 'bad_request', message: `${what}: ${issue.message}`, ...(field ? { field } : {}) };
}

const FASTIFY_CODES: Record<string, ErrorCode> = { FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large', FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type' };

/**
 * Maps any thrown error to a status and the JSON error body `{error:{code,message,field?}}`: an
 * AppError (every error meant for a client: src/util/errors.ts) by its own status and code; a
 * Fastify 4xx (bad JSON, body too large, schema validation) by its status; anything else is a 500.
 */
export function toHttpError(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof AppError) {
    return { status: err.statusCode, body: { error: { code: err.code, message: err.message, ...(err.field !== undefined ? { field: err.field } : {}) } } };
  }
  const fe = err as FastifyError;
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const invalid = validationError(fe);
    if (invalid) return { status: 400, body: { error: invalid } };
    const code = FASTIFY_CODES[fe.code] ?? (fe.statusCode === 429 ? 'rate_limited' : 'bad_request');
    return { status: fe.statusCode, body: { error: { code, message: fe.message } } };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'internal server error; the server log has the details' } } };
}

/**
 * 405 for a path some route answers with other methods, with `Allow`; null when no route has the
 * path (then it is a 404). The error envelope is the caller's (native here, OCI in /v2).
 */
export function methodNotAllowed(req: FastifyRequest, reply: FastifyReply): { allow: string[]; message: string } | null {
  const allow = req.server.routeMethods?.allowed(req.url.split('?')[0]!) ?? [];
  if (allow.length === 0) return null;
  void reply.header('Allow', allow.join(', '));
  return { allow, message: `${req.method.slice(0, 20)} is not a method of ${req.url.split('?')[0]!.slice(0, 200)}; it answers ${allow.join(', ')}` };
}

/** Fastify's errors while reading a request body (content type, size, JSON): raised before a not-found handler runs. */
export function isBodyParseError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('FST_ERR_CTP_') || code === 'FST_ERR_ROUTE_MISSING_CONTENT_TYPE');
}

/** The error of a request no route matched: 405 (with `Allow`) when the path has other methods, else 404. */
export function routeMiss(req: FastifyRequest, reply: FastifyReply): AppError {
  const wrong = methodNotAllowed(req, reply);
  if (wrong) return new AppError('method_not_allowed', wrong.message);
  return new AppError('not_found', `no route ${req.method.slice(0, 20)} ${req.url.split('?')[0]!.slice(0, 200)}`);
}

/** An error as one API family writes it: its status and body, from the error and its native form. */
export type ErrorRenderer = (status: number, error: ErrorBody['error'], err: unknown) => { status: number; body: unknown; code?: string; log?: Record<string, unknown> };

/** The native envelope: `{error:{code,message,field?}}`. */
const nativeBody: ErrorRenderer = (status, error) => ({ status, body: { error } });

/**
 * The one way an error leaves the API, whatever its family's envelope (native here, the
 * Caddy-compatible one in compat.ts, OCI's in registry.ts): the error mapped once (toHttpError),
 * rendered by the family, logged (server errors as errors with the details, except a 503, which is
 * an expected unavailability; refusals as info), `Retry-After` when the error says when to retry,
 * and `Connection: close` while the server shuts down (a kept-alive socket would hold up its close).
 */
export function sendError(req: FastifyRequest, reply: FastifyReply, err: unknown, render: ErrorRenderer = nativeBody): void {
  const mapped = toHttpError(err);
  const { status, body, code = mapped.body.error.code, log } = render(mapped.status, mapped.body.error, err);
  if (status >= 500 && status !== 503) req.log.error({ err, ...log }, 'request failed');
  else req.log.info({ code, reason: mapped.body.error.message, ...log }, 'request refused');
  if (err instanceof AppError && err.retryAfterS) void reply.header('Retry-After', String(err.retryAfterS));
  if (mapped.body.error.code === 'shutting_down') void reply.header('Connection', 'close');
  void reply.code(status).type('application/json').send(body);
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((thrown, req, reply) => {
    // A request no route matched can fail before the not-found handler runs (a body method
    // without a content type, a body too large): it is still a 405 or a 404, not that error.
    sendError(req, reply, req.is404 && isBodyParseError(thrown) ? routeMiss(req, reply) : thrown);
  });
  app.setNotFoundHandler((req, reply) => sendError(req, reply, routeMiss(req, reply)));
}

/**
 * Fastify's own routing errors (a path with bad percent-encoding, an over-long path parameter) in
 * the same JSON shape; `status_code` also lets the Caddy CLI print them. Fastify option `frameworkErrors`.
 */
export function frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const long = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
  const status = long ? 414 : 400;
  const code: ErrorCode = long ? 'uri_too_long' : 'bad_url';
  const message = long ? 'a path segment is too long (ids and names are at most 200 characters)' : 'the URL path is not valid (malformed percent-encoding)';
  // In the envelope of the route family the path belongs to, as that family's routes document it.
  const envelope = envelopeOf(req.url);
  const body =
    envelope === 'oci'
      ? { errors: [{ code: 'NAME_INVALID', message, detail: { code } }] }
      : envelope === 'compat'
        ? { status_code: status, error: { message, id: randomUUID(), code } }
        : { error: { code, message } };
  void reply.code(status).type('application/json').send(body);
}

/** Requests Node's HTTP parser refuses (header overflow, malformed request line), as JSON. Fastify option `clientErrorHandler`. */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message]: [number, ErrorCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'header_too_large', 'the request line and headers are larger than the server accepts; shorten the URL']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'the request took too long to arrive']
        : [400, 'bad_request', 'malformed HTTP request'];
  const body = JSON.stringify({ status_code: status, error: { code, message } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(err);
}
