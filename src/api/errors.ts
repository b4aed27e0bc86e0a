import type { FastifyError, FastifyInstance } from 'fastify';
import { ResolveError } from '../resolve/index.js';
import { SpecError } from '../spec/index.js';
import { NotFoundError } from '../store/index.js';
import { AppError } from '../util/errors.js';

export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

/** Maps any thrown error to a status and the JSON error body `{error:{code,message}}`. */
export function toHttpError(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof SpecError) return { status: 400, body: { error: { code: err.code, message: err.message, field: err.field } } };
  if (err instanceof ResolveError) return { status: err.statusCode, body: { error: { code: err.code, message: err.message } } };
  if (err instanceof AppError) return { status: err.statusCode, body: { error: { code: err.code, message: err.message } } };
  if (err instanceof NotFoundError) return { status: 404, body: { error: { code: 'not_found', message: err.message } } };
  const fe = err as FastifyError;
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code = fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'body_too_large' : fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'unsupported_media_type' : fe.statusCode === 429 ? 'rate_limited' : 'bad_request';
    return { status: fe.statusCode, body: { error: { code, message: fe.message } } };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'internal server error; the server log has the details' } } };
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toHttpError(err);
    if (status >= 500) req.log.error({ err }, 'request failed');
    else req.log.info({ code: body.error.code, msg: body.error.message }, 'request refused');
    void reply.code(status).type('application/json').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}` } });
  });
}
