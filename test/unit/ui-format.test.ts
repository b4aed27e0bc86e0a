/**
 * The page's pure functions (src/ui/page/format.ts), run under Node without a browser: the sizes,
 * durations and ages it shows, the catalog shapes it reads, the custom module check, the recent
 * list's state, log line classes and SSE framing, the progress steps and status line, the copyable
 * commands, the agents' rows, and the signing key's fingerprint (the same as the server's).
 * The page's behaviour in a real browser is test/integration/ui.test.ts.
 *   node --import tsx --test test/unit/ui-format.test.ts
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { fingerprintOf, publicKeyFromPem } from '../../src/provenance/index.js';
import {
  ago,
  buildCommands,
  catalogMessage,
  downloadUrl,
  fingerprint,
  fmtBytes,
  fmtDur,
  lineClass,
  matchCatalog,
  normaliseCatalog,
  parseCustom,
  phaseSteps,
  phaseText,
  readAgent,
  reconnectDelay,
  recentState,
  sseEvents,
  withHint,
} from '../../src/ui/page/format.js';
import type { Build } from '../../src/ui/page/types.js';

const TOOLCHAIN = { go: 'go1.26.8', xcaddy: 'v0.4.7', flags: 'xcaddy-default+sorted-plugins' };
const build = (over: Partial<Build> = {}): Build => ({
  id: 'b1234567890abcdef',
  key: 'b1234567890abcdef',
  status: 'succeeded',
  phase: 'done',
  cached: false,
  request: { caddyVersion: 'v2.10.0', os: 'linux', arch: 'arm', arm: '7', plugins: [{ module: 'github.com/mholt/caddy-l4' }] },
  spec: { caddyVersion: 'v2.10.0', os: 'linux', arch: 'arm', arm: '7', plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.0.0-2025' }], toolchain: TOOLCHAIN },
  filename: 'caddy_v2.10.0_linux_armv7',
  createdAt: '2026-12-01T00:00:00.000Z',
  links: { self: '/api/builds/b1', log: '/api/builds/b1/log', artifact: '/api/builds/b1/artifact', buildinfo: '/api/builds/b1/buildinfo', provenance: '/api/builds/b1/provenance' },
  ...over,
});

describe('formatting', () => {
  test('sizes in powers of 1000, durations in s and m ss, ages', () => {
    assert.equal(fmtBytes(undefined), '');
    assert.equal(fmtBytes(999), '999 B');
    assert.equal(fmtBytes(1000), '1.0 KB');
    assert.equal(fmtBytes(43_210_000), '43.2 MB');
    assert.equal(fmtBytes(5e12), '5000.0 GB');
    assert.equal(fmtDur(-5), '0s');
    assert.equal(fmtDur(59_400), '59s');
    assert.equal(fmtDur(65_000), '1m 05s');
    const now = Date.parse('2026-12-07T12:00:00Z');
    assert.equal(ago(undefined, now), '');
    assert.equal(ago('2026-12-07T11:59:30Z', now), 'just now');
    assert.equal(ago('2026-12-07T11:58:00Z', now), '2 min ago');
    assert.equal(ago('2026-12-07T09:00:00Z', now), '3 h ago');
    assert.equal(ago('2026-12-01T09:00:00Z', now), new Date('2026-12-01T09:00:00Z').toLocaleDateString());
  });

  test('the token hint: 401 with and without a token, 403 without one, nothing else', () => {
    assert.equal(withHint('token required', 401, false), 'token required. This server needs an API token: enter one under “API token” at the top.');
    assert.equal(withHint('Bad token.', 401, true), 'Bad token. The API token was refused: check it under “API token” at the top.');
    assert.equal(withHint('needs build', 403, false), 'needs build. Enter an API token with the needed scope under “API token” at the top.');
    assert.equal(withHint('needs build', 403, true), 'needs build');
    assert.equal(withHint('HTTP 500', 500, false), 'HTTP 500');
  });
});

describe('plugin picker', () => {
  test('the catalog in its shapes; entries without a path are dropped; search needs every word', () => {
    assert.equal(normaliseCatalog({ nothing: [] }), null);
    assert.equal(normaliseCatalog(null), null);
    const list = normaliseCatalog({
      packages: [
        { path: 'github.com/caddy-dns/cloudflare', description: 'DNS for Cloudflare', modules: ['dns.providers.cloudflare'] },
        { module: 'github.com/mholt/caddy-l4', modules: [{ name: 'layer4', docs: 'Layer 4 app' }], available: false },
        { description: 'no path' },
      ],
    })!;
    assert.deepEqual(list, [
      { path: 'github.com/caddy-dns/cloudflare', description: 'DNS for Cloudflare', modules: ['dns.providers.cloudflare'], available: true },
      { path: 'github.com/mholt/caddy-l4', description: 'Layer 4 app', modules: ['layer4'], available: false },
    ]);
    assert.deepEqual(normaliseCatalog([{ path: 'x.y/z' }]), [{ path: 'x.y/z', description: '', modules: [], available: true }]);
    assert.deepEqual(
      matchCatalog(list, 'CLOUDFLARE dns').map((p) => p.path),
      ['github.com/caddy-dns/cloudflare'],
    );
    assert.equal(matchCatalog(list, 'layer4 cloudflare').length, 0);
    assert.equal(matchCatalog(list, '  ').length, 2);
    assert.equal(catalogMessage(1, ''), '1 plugin.');
    assert.equal(catalogMessage(81, 'dns'), '81 plugins, showing the first 80 matching “dns”.');
    assert.equal(catalogMessage(0, 'zz'), 'No catalog plugin matches “zz”. You can add it as a custom module below.');
    assert.equal(catalogMessage(0, ''), 'The catalog is empty. Add plugins as custom modules below.');
  });

  test('a custom module: path, path@version, and what is wrong', () => {
    assert.deepEqual(parseCustom(' github.com/a/b ', ''), { module: 'github.com/a/b', version: '' });
    assert.deepEqual(parseCustom('github.com/a/b@v1.2.3', ''), { module: 'github.com/a/b', version: 'v1.2.3' });
    assert.deepEqual(parseCustom('github.com/a/b@v1', 'main'), { field: 'module', error: '“github.com/a/b@v1” is not a Go module path (like github.com/owner/repo).' });
    assert.deepEqual(parseCustom('', ''), { field: 'module', error: 'Enter a Go module path, like github.com/owner/repo.' });
    assert.deepEqual(parseCustom('caddy', ''), { field: 'module', error: '“caddy” is not a Go module path (like github.com/owner/repo).' });
    assert.deepEqual(parseCustom('github.com/a/b', 'v1 2'), { field: 'version', error: 'The version must be a tag (v1.2.3), a branch or a commit.' });
  });
});

describe('build card and recent list', () => {
  test('recent state: phase while running, place while queued, else the status', () => {
    assert.equal(recentState(build({ status: 'running', phase: 'building' })), 'building');
    assert.equal(recentState(build({ status: 'running', phase: 'queued' })), 'running');
    assert.equal(recentState(build({ status: 'queued', phase: 'queued', position: 3 })), 'queued #3');
    assert.equal(recentState(build({ status: 'queued', phase: 'queued' })), 'queued');
    assert.equal(recentState(build({ status: 'failed' })), 'failed');
  });

  test('log lines: system, errors by content, else plain; SSE events split on blank lines', () => {
    assert.equal(lineClass('system', 'fairway: building'), 's');
    assert.equal(lineClass('stderr', 'go: downloading x'), '');
    assert.equal(lineClass('stderr', 'main.go:12: undefined: foo'), 'e');
    assert.equal(lineClass('stdout', 'FATAL something'), 'e');
    assert.equal(lineClass('stdout', 'errors.go is fine'), '');
    assert.equal(lineClass('stdout', 'compiling main.go:12 later'), '', 'a Go position marks an error only at the start of a line');
    assert.deepEqual(sseEvents('data: {"a":1}\n\nevent: x\ndata: 2\ndata: 3\n\n: ping\n\ndata: par'), { data: ['{"a":1}', '2\n3'], rest: 'data: par' });
    assert.deepEqual(sseEvents(''), { data: [], rest: '' });
    assert.deepEqual([1, 2, 5, 9].map(reconnectDelay), [1000, 2000, 10_000, 10_000]);
  });

  test('progress steps: current step, success, a failure where it happened and at the end', () => {
    const cls = (s: Parameters<typeof phaseSteps>) => phaseSteps(...s).map((x) => x.cls || '-');
    assert.deepEqual(cls(['running', 'building', 2]), ['ok', 'ok', 'cur', '-', '-']);
    assert.deepEqual(
      phaseSteps('running', 'building', 2).map((x) => x.current),
      [false, false, true, false, false],
    );
    assert.deepEqual(cls(['succeeded', 'done', 4]), ['ok', 'ok', 'ok', 'ok', 'ok']);
    assert.ok(phaseSteps('succeeded', 'done', 4).every((x) => !x.current));
    assert.deepEqual(cls(['failed', 'done', 2]), ['ok', 'ok', 'bad', '-', 'bad']);
    assert.deepEqual(cls(['canceled', 'queued', 0]), ['-', '-', '-', '-', 'bad']);
  });

  test('the status line', () => {
    const now = Date.parse('2026-12-07T12:01:05Z');
    const t0 = '2026-12-07T12:00:00Z';
    assert.equal(phaseText(undefined, 'queued', undefined, false, now), 'Connecting…');
    assert.equal(phaseText(build({ status: 'queued', createdAt: t0 }), 'queued', 2, false, now), 'Queued: position 2 in line · 1m 05s');
    assert.equal(phaseText(build({ status: 'running', startedAt: t0 }), 'building', undefined, false, now), 'Building… · 1m 05s');
    assert.equal(phaseText(build({ durationMs: 42_000 }), 'done', undefined, false, now), 'Done in 42s.');
    assert.equal(phaseText(build(), 'done', undefined, true, now), 'Served from the cache: no build needed. Download it now.');
    assert.equal(phaseText(build({ status: 'failed' }), 'done', undefined, false, now), 'The build failed. The log below shows why.');
    assert.equal(phaseText(build({ status: 'canceled' }), 'done', undefined, false, now), 'The build was canceled.');
  });

  test('the copyable commands: pinned download URL, curl (a token only by name), cosign, image, CLI', () => {
    const b = build({ provenance: 'signed' });
    const url = 'https://f.example/api/download?os=linux&arch=arm&arm=7&version=v2.10.0&p=github.com/mholt/caddy-l4@v0.0.0-2025';
    assert.equal(downloadUrl(b, 'https://f.example'), url);
    const c = buildCommands(b, 'https://f.example', 'f.example', true);
    assert.equal(c.url, url);
    assert.equal(c.curl, `curl -fL -H "Authorization: Bearer $FAIRWAY_TOKEN" -o caddy_v2.10.0_linux_armv7 '${url}'`);
    assert.match(
      c.verify,
      /^curl -fsSo fairway\.pub https:\/\/f\.example\/api\/signing-key && curl -fsSo \S+\.provenance\.json https:\/\/f\.example\/api\/builds\/b1\/provenance && cosign verify-blob-attestation /,
    );
    assert.equal(c.pull, 'docker pull f.example/caddy/build:b1234567890abcdef');
    assert.equal(c.from, 'FROM f.example/caddy/build:b1234567890abcdef');
    assert.equal(c.cli, 'fairway build --server https://f.example --caddy-version v2.10.0 --os linux --arch arm --arm 7 --with github.com/mholt/caddy-l4@v0.0.0-2025 -o caddy_v2.10.0_linux_armv7');
    const mac = buildCommands(build({ spec: { caddyVersion: 'v2.10.0', os: 'darwin', arch: 'arm64', plugins: [], toolchain: TOOLCHAIN } }), 'http://h', 'h', false);
    assert.deepEqual([mac.curl.startsWith("curl -fL -o caddy_v2.10.0_linux_armv7 'http://h/api/download?os=darwin&arch=arm64&version=v2.10.0'"), mac.verify, mac.pull, mac.from], [true, '', '', '']);
  });

  test('an agent row: name, busy by jobs or status, tools and slots, last seen', () => {
    const now = Date.parse('2026-12-07T12:00:00Z');
    assert.deepEqual(readAgent({ id: 'a1', go: 'go1.26.8', xcaddy: 'v0.4.5', concurrency: 2, jobs: ['j1', 7], lastSeen: '2026-12-07T11:59:50Z' }, now), {
      name: 'a1',
      busy: true,
      detail: 'go1.26.8 · xcaddy v0.4.5 · 1/2 busy',
      jobs: ['j1'],
      seen: 'just now',
    });
    assert.deepEqual(readAgent({ host: 'h.example', status: 'busy' }, now), { name: 'h.example', busy: true, detail: '', jobs: [], seen: '' });
    assert.deepEqual(readAgent({}, now), { name: 'agent', busy: false, detail: '', jobs: [], seen: '' });
  });

  test('the footer fingerprint of the signing key is the one the server computes', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    assert.equal(await fingerprint(pem), fingerprintOf(publicKeyFromPem(pem)));
    assert.equal(await fingerprint('not a key!'), null);
  });
});
