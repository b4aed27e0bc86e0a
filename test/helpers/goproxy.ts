/**
 * A real Go module proxy (the GOPROXY protocol, `go help goproxy`) on 127.0.0.1 with a random
 * port, serving synthetic modules that a test makes up at run time:
 *
 *   GET /<escaped module>/@v/list               versions, one a line
 *   GET /<escaped module>/@v/<version>.info     {"Version","Time"}
 *   GET /<escaped module>/@v/<version>.mod      the module's go.mod
 *   GET /<escaped module>/@v/<version>.zip      the module zip (golang.org/x/mod/zip layout)
 *   GET /<escaped module>/@latest               .info of the highest version
 *   anything else                               404 (so `GOPROXY=<this>,https://proxy.golang.org`
 *                                               falls through to the next proxy, sumdb included)
 *
 * Paths and versions use Go's case escaping (`!x` for an upper-case `X`). Every request path is
 * recorded in `requests`, in order. The zip is written by a minimal store-only ZIP writer (no
 * compression, CRC-32, central directory): every entry is `<module>@<version>/<file>`, which is
 * what the go command checks before it accepts a module.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { escapeGo as escapeModulePath, unescapeGo as unescapeModulePath } from '../../src/fleet/goproxy.js';

/** Go's case escaping (`github.com/Azure` → `github.com/!azure`): the same functions as the hub's module proxy. */
export { escapeModulePath };

export interface SyntheticModule {
  /** Module path, e.g. `fairway.test/hostile/r0123abcd`. */
  path: string;
  /** Canonical semantic version, e.g. `v1.0.0`. */
  version: string;
  /** Relative path → content; `go.mod` must be among them. */
  files: Record<string, string | Buffer>;
  /** Commit time reported in .info; default 2024-01-01T00:00:00Z. */
  time?: string;
}

export interface GoProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Every request path (with query), in the order served. */
  requests: string[];
  /** Serves one more module version from now on. */
  add(module: SyntheticModule): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------- a store-only ZIP writer

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A ZIP archive of `entries` (name → bytes), stored without compression, files only. */
export function storeZip(entries: Array<[name: string, data: Buffer]>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  // 2024-01-01 00:00:00 in MS-DOS format.
  const dosTime = 0;
  const dosDate = ((2024 - 1980) << 9) | (1 << 5) | 1;
  for (const [name, data] of entries) {
    const nameBuf = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); // local file header signature
    local.writeUInt16LE(20, 4); // version needed to extract (2.0)
    local.writeUInt16LE(0x0800, 6); // flags: names are UTF-8
    local.writeUInt16LE(0, 8); // method: stored
    local.writeUInt16LE(dosTime, 10);
    local.writeUInt16LE(dosDate, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18); // compressed size
    local.writeUInt32LE(data.length, 22); // uncompressed size
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(0, 28); // extra field length
    locals.push(local, nameBuf, data);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); // central directory header signature
    central.writeUInt16LE((3 << 8) | 20, 4); // made by: Unix, 2.0
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(dosTime, 12);
    central.writeUInt16LE(dosDate, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt16LE(0, 30); // extra
    central.writeUInt16LE(0, 32); // comment
    central.writeUInt16LE(0, 34); // disk number start
    central.writeUInt16LE(0, 36); // internal attributes
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38); // external attributes: regular file, 0644
    central.writeUInt32LE(offset, 42); // offset of the local header
    centrals.push(central, nameBuf);
    offset += local.length + nameBuf.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); // end of central directory signature
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  end.writeUInt16LE(0, 20);
  return Buffer.concat([...locals, cd, end]);
}

/** The module zip the go command expects: `<module>@<version>/<file>` entries, sorted. */
export function moduleZip(m: SyntheticModule): Buffer {
  const prefix = `${m.path}@${m.version}/`;
  const names = Object.keys(m.files).sort();
  return storeZip(names.map((n) => [prefix + n, Buffer.from(m.files[n]!)]));
}

// ---------------------------------------------------------------- versions

/** Orders canonical semantic versions (vMAJOR.MINOR.PATCH[-pre][+build]). */
export function compareSemver(a: string, b: string): number {
  const parse = (v: string) => {
    const m = /^v(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/.exec(v);
    if (!m) return null;
    return { nums: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ? m[4].split('.') : [] };
  };
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return a < b ? -1 : a > b ? 1 : 0;
  for (let i = 0; i < 3; i++) if (x.nums[i] !== y.nums[i]) return x.nums[i]! - y.nums[i]!;
  if (!x.pre.length || !y.pre.length) return y.pre.length - x.pre.length; // a release is above its pre-releases
  for (let i = 0; i < Math.min(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i]!;
    const q = y.pre[i]!;
    if (p === q) continue;
    const pn = /^\d+$/.test(p);
    const qn = /^\d+$/.test(q);
    if (pn && qn) return Number(p) - Number(q);
    if (pn !== qn) return pn ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return x.pre.length - y.pre.length;
}

// ---------------------------------------------------------------- the server

interface Served {
  module: SyntheticModule;
  info: string;
  mod: Buffer;
  zip: Buffer;
}

export async function startGoProxy(modules: SyntheticModule[] = []): Promise<GoProxy> {
  /** module path → version → what is served. */
  const byPath = new Map<string, Map<string, Served>>();
  const add = (m: SyntheticModule) => {
    const goMod = m.files['go.mod'];
    if (goMod === undefined) throw new Error(`synthetic module ${m.path}@${m.version} has no go.mod`);
    const versions = byPath.get(m.path) ?? new Map<string, Served>();
    versions.set(m.version, {
      module: m,
      info: JSON.stringify({ Version: m.version, Time: m.time ?? '2024-01-01T00:00:00Z' }),
      mod: Buffer.from(goMod),
      zip: moduleZip(m),
    });
    byPath.set(m.path, versions);
  };
  for (const m of modules) add(m);

  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    requests.push(url);
    const send = (status: number, type: string, body: string | Buffer) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const notFound = (why = 'not found') => send(404, 'text/plain; charset=utf-8', `${why} (fairway test goproxy)\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain; charset=utf-8', 'method not allowed\n');
    let path: string;
    try {
      path = decodeURIComponent(url.split('?')[0]!);
    } catch {
      return notFound('bad escape');
    }
    let m = /^\/(.+)\/@latest$/.exec(path);
    const latest = !!m;
    if (!m) m = /^\/(.+)\/@v\/(list|.+\.(info|mod|zip))$/.exec(path);
    if (!m) return notFound();
    const modPath = unescapeModulePath(m[1]!);
    const versions = modPath === null ? undefined : byPath.get(modPath);
    if (!versions) return notFound();
    if (latest) {
      const top = [...versions.keys()].sort(compareSemver).pop()!;
      return send(200, 'application/json', versions.get(top)!.info);
    }
    if (m[2] === 'list')
      return send(
        200,
        'text/plain; charset=utf-8',
        [...versions.keys()]
          .sort(compareSemver)
          .map((v) => `${v}\n`)
          .join(''),
      );
    const ext = m[3]!;
    const version = unescapeModulePath(m[2]!.slice(0, -(ext.length + 1)));
    const served = version === null ? undefined : versions.get(version);
    if (!served) return notFound();
    if (ext === 'info') return send(200, 'application/json', served.info);
    if (ext === 'mod') return send(200, 'text/plain; charset=utf-8', served.mod);
    return send(200, 'application/zip', served.zip);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    add,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A GOPROXY that knows no module (404, so the go command asks the next proxy) and records every
 * path asked: the proof of whether a resolution ran.
 */
export async function recordingProxy(): Promise<{ url: string; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const srv = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found (fairway test proxy)\n');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, hits, close: () => new Promise((r) => srv.close(() => r())) };
}
