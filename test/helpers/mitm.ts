/**
 * A TLS-intercepting HTTP CONNECT proxy for tests: it answers `CONNECT caddyserver.com:443` with
 * a certificate for caddyserver.com from a throwaway CA, and forwards the decrypted requests to a
 * local Fairway. An unmodified Caddy binary run with `HTTPS_PROXY=<proxy>` and
 * `SSL_CERT_FILE=<ca>` then performs its real `upgrade`/`add-package` against Fairway, and the
 * proxy records every request line it sent. This is workaround 3 of docs/compat.md §7, for
 * tests only: it is the one way to drive Caddy's hard-coded download URL without patching Caddy.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tempDir } from './fairway.js';

const execFileP = promisify(execFile);

export interface RecordedRequest {
  method: string;
  host: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  status?: number;
}

export interface MitmProxy {
  /** `http://127.0.0.1:<port>`, for HTTPS_PROXY. */
  url: string;
  /** PEM file of the CA that signed the intercepting certificate, for SSL_CERT_FILE. */
  caFile: string;
  requests: RecordedRequest[];
  connects: string[];
  close(): Promise<void>;
}

/** Makes a CA and a caddyserver.com certificate with the openssl command. */
async function makeCerts(dir: string, host: string): Promise<{ caFile: string; key: Buffer; cert: Buffer }> {
  const p = (f: string) => join(dir, f);
  const ossl = (args: string[]) => execFileP('openssl', args, { cwd: dir });
  await ossl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=Fairway test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('leaf.key'), '-out', p('leaf.csr'), '-subj', `/CN=${host}`]);
  const ext = p('leaf.ext');
  await writeFile(ext, `subjectAltName=DNS:${host}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
  await ossl(['x509', '-req', '-in', p('leaf.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('leaf.pem'), '-days', '2', '-extfile', ext]);
  return { caFile: p('ca.pem'), key: await readFile(p('leaf.key')), cert: await readFile(p('leaf.pem')) };
}

export async function startMitmProxy(target: string, host = 'caddyserver.com'): Promise<MitmProxy> {
  const dir = await tempDir('fairway-mitm-');
  const { caFile, key, cert } = await makeCerts(dir, host);
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  const connects: string[] = [];

  // The decrypted side: record, then forward to Fairway, streaming both ways.
  const inner = http.createServer((req, res) => {
    const rec: RecordedRequest = { method: req.method ?? '', host: req.headers.host ?? '', url: req.url ?? '', headers: req.headers };
    requests.push(rec);
    const fwd = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } }, (up) => {
      rec.status = up.statusCode;
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', (err) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`mitm proxy: ${err.message}`);
    });
    req.pipe(fwd);
  });
  inner.requestTimeout = 0;
  inner.headersTimeout = 0;

  const outer = http.createServer((_req, res) => {
    res.writeHead(405).end('CONNECT only');
  });
  const sockets = new Set<Socket>();
  outer.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  outer.on('connect', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    connects.push(req.url ?? '');
    if ((req.url ?? '').split(':')[0] !== host) {
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) socket.unshift(head);
    const secure = new tls.TLSSocket(socket, { isServer: true, key, cert, ALPNProtocols: ['http/1.1'] });
    secure.on('error', () => socket.destroy());
    inner.emit('connection', secure);
  });
  await new Promise<void>((r) => outer.listen(0, '127.0.0.1', r));
  const port = (outer.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    caFile,
    requests,
    connects,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => outer.close(() => r()));
      inner.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
