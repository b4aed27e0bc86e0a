import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, open, readFile, readdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DownloadVerifyError, expectedSha256, receiveVerified } from '../../src/cli/download.js';
import { runPackageCommand } from '../../src/cli/packages.js';

const body = Buffer.from('a caddy binary');
const sum = createHash('sha256').update(body).digest('hex');

async function* chunks(): AsyncIterable<Uint8Array> {
  yield body.subarray(0, 5);
  yield body.subarray(5);
}

describe('the shared download-and-verify helper (fairway build, upgrade, add-package)', () => {
  test('refuses a download without a checksum header (and no record)', () => {
    assert.throws(
      () => expectedSha256(undefined),
      (e: Error) => e instanceof DownloadVerifyError && /no sha256.*refusing an unverified binary/.test(e.message),
    );
    assert.throws(() => expectedSha256(null, null), DownloadVerifyError);
    assert.throws(() => expectedSha256(''), DownloadVerifyError);
    assert.throws(() => expectedSha256('not-a-sha'), /malformed/);
    assert.throws(() => expectedSha256(sum, 'f'.repeat(64)), /two different checksums/);
    assert.equal(expectedSha256(sum.toUpperCase()), sum);
    assert.equal(expectedSha256(null, sum), sum);
  });

  test('accepts the right bytes; refuses a wrong sha256, a short body and a cut connection', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fw-dl-'));
    const run = async (o: Parameters<typeof receiveVerified>[2]) => {
      const fh = await open(join(dir, `f${Math.random()}`), 'wx');
      try {
        return await receiveVerified(chunks(), fh, o);
      } finally {
        await fh.close();
      }
    };
    assert.deepEqual(await run({ sha256: sum, length: body.length }), { sha256: sum, size: body.length });
    await assert.rejects(run({ sha256: 'e'.repeat(64) }), /checksum mismatch/);
    await assert.rejects(run({ sha256: sum, length: body.length + 1 }), /incomplete/);
    await assert.rejects(run({ sha256: sum, complete: () => false }), /incomplete/);
    await assert.rejects(run({ sha256: '' }), /refusing an unverified binary/);
  });
});

describe('fairway upgrade / add-package use it', () => {
  for (const cmd of ['upgrade', 'add-package'] as const) {
    test(`${cmd} refuses a download without X-Checksum-Sha256, leaving the binary alone`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'fw-up-'));
      const caddy = join(dir, 'caddy');
      const script = '#!/bin/sh\ncase "$1" in\n  version) echo v2.11.9;;\n  build-info) printf "build\\tGOOS=linux\\nbuild\\tGOARCH=amd64\\n";;\n  *) ;;\nesac\n';
      await writeFile(caddy, script);
      await chmod(caddy, 0o755);
      const server = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
        res.end(body);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      try {
        await assert.rejects(
          runPackageCommand(cmd, cmd === 'upgrade' ? [] : ['github.com/example/plugin'], { server: `http://127.0.0.1:${port}`, caddy, stdout: () => undefined, stderr: () => undefined }),
          /no sha256.*refusing an unverified binary/,
        );
        assert.equal(await readFile(caddy, 'utf8'), script, 'the target is untouched');
        assert.deepEqual((await readdir(dir)).sort(), ['caddy'], 'no temp or backup file is left');
      } finally {
        server.close();
      }
    });
  }
});
