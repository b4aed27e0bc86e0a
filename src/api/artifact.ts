import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ByteRange } from '../store/index.js';
import type { BuildService } from '../service/index.js';
import { contentDisposition } from './security.js';

/** Parses a single `bytes=` range; null = serve everything, 'unsatisfiable' = 416. */
export function parseRange(header: string | undefined, size: number): ByteRange | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // multiple or malformed ranges: ignore (RFC 9110 allows)
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

/** Streams an artifact with checksum headers, ETag/If-None-Match and Range support. */
export async function sendArtifact(service: BuildService, id: string, req: FastifyRequest, reply: FastifyReply, redirect = false): Promise<FastifyReply> {
  const a = await service.artifact(id);
  const { meta } = a;
  const size = meta.size!;
  const etag = `"${meta.sha256}"`;
  reply.header('ETag', etag);
  reply.header('Accept-Ranges', 'bytes');
  reply.header('X-Checksum-Sha256', meta.sha256!);
  reply.header('Digest', `sha-256=${Buffer.from(meta.sha256!, 'hex').toString('base64')}`);
  reply.header('Content-Disposition', contentDisposition(meta.filename));
  reply.header('Cache-Control', 'public, max-age=31536000, immutable');
  reply.header('X-Fairway-Build', meta.key);
  if (redirect && a.url) {
    const url = await a.url();
    if (url) return reply.redirect(url, 302);
  }
  const inm = req.headers['if-none-match'];
  if (inm?.split(',').some((t) => t.trim() === etag || t.trim() === '*')) return reply.code(304).send();
  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') {
    reply.header('Content-Range', `bytes */${size}`);
    return reply
      .code(416)
      .type('application/json')
      .send({ error: { code: 'range_not_satisfiable', message: `the artifact has ${size} bytes` } });
  }
  reply.type('application/octet-stream');
  return sendBody(reply, size, range, (r) => a.open(r));
}

/**
 * Sends the body of `size` bytes, or its `range` as a 206 with Content-Range, with its
 * Content-Length; opened through openOrStrip, so a failed open answers an error without them.
 */
export async function sendBody<T>(reply: FastifyReply, size: number, range: ByteRange | null, open: (range?: ByteRange) => Promise<T>): Promise<FastifyReply> {
  if (range) {
    reply.code(206);
    reply.header('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    reply.header('Content-Length', String(range.end - range.start + 1));
    return reply.send(await openOrStrip(reply, () => open(range)));
  }
  reply.header('Content-Length', String(size));
  return reply.send(await openOrStrip(reply, () => open()));
}

/** Headers that describe the artifact's bytes; an error answer must not carry them. */
const ARTIFACT_HEADERS = ['etag', 'accept-ranges', 'x-checksum-sha256', 'digest', 'content-disposition', 'cache-control', 'content-length', 'content-range', 'content-type'];

/**
 * Opens the body; when that fails (e.g. the stored binary is corrupt: IntegrityError), the
 * artifact's headers are removed before the error answer is sent (no checksum, no `immutable`).
 */
export async function openOrStrip<T>(reply: FastifyReply, open: () => Promise<T>): Promise<T> {
  const strip = () => {
    for (const h of ARTIFACT_HEADERS) {
      reply.removeHeader(h);
      if (!reply.raw.headersSent) reply.raw.removeHeader(h);
    }
    reply.header('Cache-Control', 'no-store');
    if (!reply.raw.headersSent) reply.raw.setHeader('Cache-Control', 'no-store');
  };
  let body: T;
  try {
    body = await open();
  } catch (err) {
    strip();
    throw err;
  }
  // The body may fail before its first byte (a corrupt binary smaller than one chunk): the error
  // answer Fastify then sends must not carry the artifact's headers either. Registered before
  // Fastify's own listener, so it runs first.
  const stream = body as unknown as NodeJS.ReadableStream;
  if (stream && typeof stream.once === 'function') {
    stream.once('error', () => {
      if (!reply.raw.headersSent) strip();
    });
  }
  return body;
}
