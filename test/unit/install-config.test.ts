// Installing Fairway (docs/install.md): the toolsDir setting and its defaults, the setup command
// named in fixes, and the shipped systemd units' ExecStart that `fairway setup --systemd` rewrites.
//   node --import tsx --test test/unit/install-config.test.ts
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { NODE_ENGINES, PROJECT_ROOT, loadConfig, setupCommand } from '../../src/config/index.js';
import { INSTALL_KIND, defaultToolsDir, installKindOf } from '../../src/config/install.js';
import { SYSTEMD_UNITS, UNIT_FAIRWAY_PATH, unitText } from '../../src/setup/index.js';

const empty = mkdtempSync(join(tmpdir(), 'fairway-install-unit-'));
after(() => rmSync(empty, { recursive: true, force: true }));

describe('install kind', () => {
  test('this repository is a checkout; a folder without src/ (the npm package) is a package', () => {
    assert.equal(INSTALL_KIND, 'checkout');
    assert.equal(installKindOf(PROJECT_ROOT), 'checkout');
    assert.equal(installKindOf(empty), 'package');
  });

  test('the set-up command named in fixes', () => {
    assert.equal(setupCommand({ kind: 'checkout' }), 'npm run setup');
    assert.equal(setupCommand({ kind: 'package' }), 'fairway setup');
    assert.equal(setupCommand({ kind: 'checkout', toolsDir: join(PROJECT_ROOT, '.tools') }), 'npm run setup', 'the default dir is not named');
    assert.equal(setupCommand({ kind: 'checkout', toolsDir: '/opt/t' }), 'FAIRWAY_TOOLS_DIR=/opt/t npm run setup');
    assert.equal(setupCommand({ kind: 'package', toolsDir: '/opt/t' }), 'fairway setup --tools-dir /opt/t');
  });
});

describe('the Node.js runtime', () => {
  test('package.json engines.node is NODE_ENGINES (maintained lines only); the pinned node devDependency is a 24 LTS', () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; devDependencies: Record<string, string> };
    assert.equal(pkg.engines.node, NODE_ENGINES);
    assert.match(pkg.devDependencies.node ?? '', /^24\.\d+\.\d+$/, 'an exact 24.x pin');
  });
});

describe('toolsDir defaults', () => {
  test('a checkout: <checkout>/.tools whoever runs it (CI and `npm start` unchanged)', () => {
    assert.equal(defaultToolsDir({ kind: 'checkout', uid: 0 }), join(PROJECT_ROOT, '.tools'));
    assert.equal(defaultToolsDir({ kind: 'checkout', uid: 1000, env: { XDG_DATA_HOME: '/x' } }), join(PROJECT_ROOT, '.tools'));
  });

  test('a package: /usr/local/lib/fairway/tools for root, else $XDG_DATA_HOME/fairway/tools or ~/.local/share/fairway/tools', () => {
    assert.equal(defaultToolsDir({ kind: 'package', uid: 0, env: { HOME: '/root' } }), '/usr/local/lib/fairway/tools');
    assert.equal(defaultToolsDir({ kind: 'package', uid: 1000, env: { HOME: '/home/ann', XDG_DATA_HOME: '/data/ann' } }), '/data/ann/fairway/tools');
    assert.equal(defaultToolsDir({ kind: 'package', uid: 1000, env: { HOME: '/home/ann' } }), '/home/ann/.local/share/fairway/tools');
    // The XDG spec: a relative XDG_DATA_HOME is invalid and ignored.
    assert.equal(defaultToolsDir({ kind: 'package', uid: 1000, env: { HOME: '/home/ann', XDG_DATA_HOME: 'rel' } }), '/home/ann/.local/share/fairway/tools');
  });

  test('xcaddyBin and goCacheProgBin follow toolsDir unless set themselves', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.toolsDir, join(PROJECT_ROOT, '.tools'));
    assert.equal(c.xcaddyBin, join(PROJECT_ROOT, '.tools', 'bin', 'xcaddy'));
    assert.equal(c.goCacheProgBin, join(PROJECT_ROOT, '.tools', 'bin', 'fairway-cacheprog'));
    const t = loadConfig({ env: { FAIRWAY_TOOLS_DIR: '/opt/fw' } });
    assert.equal(t.toolsDir, '/opt/fw');
    assert.equal(t.xcaddyBin, '/opt/fw/bin/xcaddy');
    assert.equal(t.goCacheProgBin, '/opt/fw/bin/fairway-cacheprog');
    const f = loadConfig({ env: { FAIRWAY_TOOLS_DIR: '/opt/fw' }, flags: { toolsDir: '/srv/tools', xcaddyBin: '/usr/bin/xcaddy' } });
    assert.equal(f.toolsDir, '/srv/tools', 'the flag wins over the environment');
    assert.equal(f.xcaddyBin, '/usr/bin/xcaddy');
    assert.equal(f.goCacheProgBin, '/srv/tools/bin/fairway-cacheprog');
  });
});

describe('systemd units (deploy/systemd)', () => {
  test('each starts its role from the path setup rewrites, stops gracefully, restarts on failure', () => {
    for (const unit of SYSTEMD_UNITS) {
      const text = readFileSync(join(PROJECT_ROOT, 'deploy', 'systemd', unit), 'utf8');
      const role = /^fairway-(\w+)\.service$/.exec(unit)![1];
      assert.match(text, new RegExp(`^ExecStart=${UNIT_FAIRWAY_PATH} ${role}$`, 'm'), unit);
      for (const line of [
        'KillMode=mixed',
        'KillSignal=SIGTERM',
        'Restart=on-failure',
        'User=fairway',
        'StateDirectory=fairway',
        'CacheDirectory=fairway',
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
      ]) {
        assert.ok(text.split('\n').includes(line), `${unit}: ${line}`);
      }
      // Settings that would break bubblewrap (docs/install.md "Hardening").
      for (const bad of ['RestrictNamespaces=', 'PrivateUsers=', 'ProtectKernelTunables=', 'ProtectProc=', 'ProcSubset=', 'MemoryDenyWriteExecute=']) {
        assert.ok(!text.split('\n').some((l) => l.startsWith(bad)), `${unit} sets ${bad}`);
      }
      const rewritten = unitText(text, '/opt/node/bin/fairway');
      assert.match(rewritten, new RegExp(`^ExecStart=/opt/node/bin/fairway ${role}$`, 'm'));
      assert.ok(!rewritten.includes(UNIT_FAIRWAY_PATH));
    }
  });
});
