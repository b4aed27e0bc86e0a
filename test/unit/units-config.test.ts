// Unit tests of size/duration parsing (src/util/units.ts) and configuration loading
// (src/config/index.ts): defaults < config file < FAIRWAY_* environment < flags.
//   node --import tsx --test test/unit/units-config.test.ts
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, PROJECT_ROOT, loadConfig } from '../../src/config/index.js';
import { envToConfig } from '../../src/config/load.js';
import { formatBytes, parseBytes, parseDuration } from '../../src/util/units.js';

describe('parseDuration', () => {
  const valid: Array<[string | number, number]> = [
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1m500ms', 60_500],
    ['1h1m1s1ms', 3_661_001],
    ['2d', 172_800_000],
    ['1.5h', 5_400_000],
    ['0.5s', 500],
    ['1000', 1000],
    ['0', 0],
    [' 90s ', 90_000],
    [1234, 1234],
  ];
  for (const [input, ms] of valid) {
    test(`${JSON.stringify(input)} = ${ms} ms`, () => assert.equal(parseDuration(input), ms));
  }

  const invalid = ['', ' ', 'soon', '10x', '90 s', '1h 30m', '-5s', 's', 'ms', '1.s', '1e3', '1h-30m', '5m!', '0x10', '1,5h', 'Infinity'];
  for (const input of invalid) {
    test(`${JSON.stringify(input)} is refused`, () => {
      assert.throws(
        () => parseDuration(input),
        (e: Error) => e.message.includes('invalid duration') && e.message.includes(JSON.stringify(input)),
      );
    });
  }
});

describe('parseBytes', () => {
  const valid: Array<[string | number, number]> = [
    ['1000', 1000],
    ['0', 0],
    ['20GB', 20e9],
    ['20gb', 20e9],
    ['512MB', 512e6],
    ['512MiB', 512 * 1024 ** 2],
    ['1GiB', 1024 ** 3],
    ['1KiB', 1024],
    ['1.5G', 1.5e9],
    ['1.5KiB', 1536],
    ['64k', 64_000],
    ['64K', 64_000],
    ['2T', 2e12],
    ['1TiB', 1024 ** 4],
    ['100B', 100],
    ['1 KB', 1000],
    [' 5MB ', 5e6],
    [4096, 4096],
  ];
  for (const [input, n] of valid) {
    test(`${JSON.stringify(input)} = ${n} bytes`, () => assert.equal(parseBytes(input), n));
  }

  const invalid = ['', 'abc', 'MB', '-1MB', '5XB', '5PB', '1.2.3MB', '5 M B', '1e6', '5MBs', '0x10'];
  for (const input of invalid) {
    test(`${JSON.stringify(input)} is refused`, () => {
      assert.throws(() => parseBytes(input), /invalid size/);
    });
  }

  test('formatBytes', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(999), '999 B');
    assert.equal(formatBytes(1500), '1.5 KB');
    assert.equal(formatBytes(512e6), '512.0 MB');
    assert.equal(formatBytes(2e12), '2.0 TB');
  });
});

describe('envToConfig', () => {
  test('maps FAIRWAY_SNAKE_CASE to camelCase settings, ignores empty and unknown names', () => {
    assert.deepEqual(
      envToConfig({
        FAIRWAY_PORT: '9000',
        FAIRWAY_DATA_DIR: '/d',
        FAIRWAY_MAX_ARTIFACT_SIZE: '1GB',
        FAIRWAY_BUILD_TIMEOUT: '5m',
        FAIRWAY_GO_BIN: '/go/bin/go',
        FAIRWAY_XCADDY_BIN: '/x',
        FAIRWAY_LOG_LEVEL: 'debug',
        FAIRWAY_WORKERS: '',
        FAIRWAY_NOPE: 'x',
        PORT: '1',
        AWS_SECRET_ACCESS_KEY: 'secret',
      }),
      { port: '9000', dataDir: '/d', maxArtifactSize: '1GB', buildTimeout: '5m', goBin: '/go/bin/go', xcaddyBin: '/x', logLevel: 'debug' },
    );
  });

  test('Go variables are honoured, FAIRWAY_ ones win', () => {
    assert.deepEqual(envToConfig({ GOPROXY: 'https://p', GOPRIVATE: 'example.com', GONOSUMDB: 'a', GONOPROXY: 'b', GOSUMDB: 'off' }), {
      goproxy: 'https://p',
      goprivate: 'example.com',
      gonosumdb: 'a',
      gonoproxy: 'b',
      gosumdb: 'off',
    });
    assert.deepEqual(envToConfig({ GOPROXY: 'https://p', FAIRWAY_GOPROXY: 'https://f' }), { goproxy: 'https://f' });
    assert.deepEqual(envToConfig({ GOPROXY: '' }), {});
  });
});

describe('loadConfig', () => {
  let dir: string;
  const file = (name: string, content: unknown): string => {
    const p = join(dir, name);
    writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
    return p;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fairway-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('defaults', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.port, 8080);
    assert.equal(c.workers, 1);
    assert.equal(c.buildTimeout, 30 * 60_000);
    assert.equal(c.resolveTtl, 10 * 60_000);
    assert.equal(c.maxPlugins, 50);
    assert.equal(c.maxArtifactSize, 512e6);
    assert.equal(c.bodyLimit, 64 * 1024);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.goBin, 'go');
    assert.equal(c.xcaddyBin, join(PROJECT_ROOT, '.tools', 'bin', 'xcaddy'));
    assert.equal(PROJECT_ROOT, fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, ''));
    assert.equal(c.dataDir, resolve('.data'));
    assert.equal(c.cacheDir, join(resolve('.data'), 'go'));
    assert.equal(c.goproxy, undefined);
    assert.equal(c.gosumdb, undefined);
    assert.equal(c.memoryCache, 256 * 1024 * 1024);
  });

  test('memoryCache: a size or 0 (off); a bad value is refused with the size syntax', () => {
    assert.equal(loadConfig({ env: { FAIRWAY_MEMORY_CACHE: '1GiB' } }).memoryCache, 1024 ** 3);
    assert.equal(loadConfig({ env: { FAIRWAY_MEMORY_CACHE: '0' } }).memoryCache, 0);
    assert.equal(loadConfig({ env: {}, flags: { memoryCache: '512MB' } }).memoryCache, 512e6);
    for (const bad of ['lots', '-5', '1XB']) {
      assert.throws(
        () => loadConfig({ env: { FAIRWAY_MEMORY_CACHE: bad } }),
        (e: unknown) => e instanceof ConfigError && /memoryCache/.test(e.message) && /invalid size/.test(e.message),
        bad,
      );
    }
  });

  test('does not read process.env when env is given', () => {
    const saved = process.env.FAIRWAY_PORT;
    process.env.FAIRWAY_PORT = '1234';
    try {
      assert.equal(loadConfig({ env: {} }).port, 8080);
      assert.equal(loadConfig({}).port, 1234);
    } finally {
      if (saved === undefined) delete process.env.FAIRWAY_PORT;
      else process.env.FAIRWAY_PORT = saved;
    }
  });

  test('file overrides defaults', () => {
    const f = file('a.json', { port: 9000, workers: 3, buildTimeout: '5m', maxArtifactSize: '1GiB', dataDir: join(dir, 'data'), goproxy: 'https://file.example' });
    const c = loadConfig({ env: {}, file: f });
    assert.equal(c.port, 9000);
    assert.equal(c.workers, 3);
    assert.equal(c.buildTimeout, 300_000);
    assert.equal(c.maxArtifactSize, 1024 ** 3);
    assert.equal(c.dataDir, join(dir, 'data'));
    assert.equal(c.cacheDir, join(dir, 'data', 'go'));
    assert.equal(c.goproxy, 'https://file.example');
    assert.equal(c.host, '127.0.0.1', 'untouched settings keep their defaults');
  });

  test('FAIRWAY_CONFIG names the file; an explicit file wins over it', () => {
    const a = file('env-named.json', { port: 9001 });
    const b = file('explicit.json', { port: 9002 });
    assert.equal(loadConfig({ env: { FAIRWAY_CONFIG: a } }).port, 9001);
    assert.equal(loadConfig({ env: { FAIRWAY_CONFIG: a }, file: b }).port, 9002);
  });

  test('env overrides file, flags override env', () => {
    const f = file('b.json', { port: 9000, workers: 3, logLevel: 'warn', buildTimeout: '5m', cacheDir: join(dir, 'c-file') });
    const env = { FAIRWAY_PORT: '9100', FAIRWAY_WORKERS: '4', FAIRWAY_BUILD_TIMEOUT: '90s', FAIRWAY_CACHE_DIR: join(dir, 'c-env') };
    const fromEnv = loadConfig({ env, file: f });
    assert.equal(fromEnv.port, 9100);
    assert.equal(fromEnv.workers, 4);
    assert.equal(fromEnv.buildTimeout, 90_000);
    assert.equal(fromEnv.logLevel, 'warn', 'file value kept where env says nothing');
    assert.equal(fromEnv.cacheDir, join(dir, 'c-env'));

    const fromFlags = loadConfig({ env, file: f, flags: { port: 9200, buildTimeout: '2h', workers: undefined } });
    assert.equal(fromFlags.port, 9200);
    assert.equal(fromFlags.buildTimeout, 7_200_000);
    assert.equal(fromFlags.workers, 4, 'an undefined flag does not hide the env value');
    assert.equal(fromFlags.logLevel, 'warn');
  });

  test('an empty env variable counts as unset', () => {
    const f = file('c.json', { port: 9000 });
    assert.equal(loadConfig({ env: { FAIRWAY_PORT: '' }, file: f }).port, 9000);
  });

  test('GOPROXY and friends are honoured from the environment', () => {
    const c = loadConfig({ env: { GOPROXY: 'https://proxy.example,direct', GOPRIVATE: 'corp.example', GOSUMDB: 'sum.golang.google.cn', GONOSUMDB: 'corp.example', GONOPROXY: 'none' } });
    assert.equal(c.goproxy, 'https://proxy.example,direct');
    assert.equal(c.goprivate, 'corp.example');
    assert.equal(c.gosumdb, 'sum.golang.google.cn');
    // The checksum database stays on (docs/SECURITY.md).
    assert.throws(() => loadConfig({ env: { GOSUMDB: 'off' } }), /GOSUMDB=off is refused/);
    assert.equal(c.gonosumdb, 'corp.example');
    assert.equal(c.gonoproxy, 'none');
  });

  test('GOPROXY precedence: file < GOPROXY < FAIRWAY_GOPROXY < flag', () => {
    const f = file('d.json', { goproxy: 'https://file.example' });
    assert.equal(loadConfig({ env: {}, file: f }).goproxy, 'https://file.example');
    assert.equal(loadConfig({ env: { GOPROXY: 'https://go.example' }, file: f }).goproxy, 'https://go.example');
    assert.equal(loadConfig({ env: { GOPROXY: 'https://go.example', FAIRWAY_GOPROXY: 'https://fw.example' }, file: f }).goproxy, 'https://fw.example');
    assert.equal(loadConfig({ env: { GOPROXY: 'https://go.example', FAIRWAY_GOPROXY: 'https://fw.example' }, file: f, flags: { goproxy: 'off' } }).goproxy, 'off');
  });

  test('relative directories are made absolute', () => {
    const c = loadConfig({ env: { FAIRWAY_DATA_DIR: 'rel/data', FAIRWAY_CACHE_DIR: 'rel/cache' } });
    assert.equal(c.dataDir, resolve('rel/data'));
    assert.equal(c.cacheDir, resolve('rel/cache'));
  });

  const invalid: Array<[string, Parameters<typeof loadConfig>[0], string, RegExp?]> = [
    ['port not a number (env)', { env: { FAIRWAY_PORT: 'abc' } }, 'port'],
    ['port too large (flag)', { env: {}, flags: { port: 70000 } }, 'port'],
    ['port negative', { env: { FAIRWAY_PORT: '-1' } }, 'port'],
    ['port fractional', { env: { FAIRWAY_PORT: '80.5' } }, 'port'],
    ['workers 0', { env: { FAIRWAY_WORKERS: '0' } }, 'workers'],
    ['workers 65', { env: {}, flags: { workers: 65 } }, 'workers'],
    ['maxPlugins 201', { env: { FAIRWAY_MAX_PLUGINS: '201' } }, 'maxPlugins'],
    ['buildTimeout "soon"', { env: { FAIRWAY_BUILD_TIMEOUT: 'soon' } }, 'buildTimeout', /invalid duration "soon"/],
    ['resolveTtl "10 minutes"', { env: {}, flags: { resolveTtl: '10 minutes' } }, 'resolveTtl', /invalid duration/],
    ['buildTimeout as a boolean', { env: {}, flags: { buildTimeout: true } }, 'buildTimeout'],
    ['maxArtifactSize "12 parsecs"', { env: { FAIRWAY_MAX_ARTIFACT_SIZE: '12 parsecs' } }, 'maxArtifactSize', /invalid size/],
    ['bodyLimit "-1KB"', { env: { FAIRWAY_BODY_LIMIT: '-1KB' } }, 'bodyLimit'],
    ['logLevel "loud"', { env: { FAIRWAY_LOG_LEVEL: 'loud' } }, 'logLevel'],
    ['empty host (flag)', { env: {}, flags: { host: '' } }, 'host'],
    ['empty goBin (flag)', { env: {}, flags: { goBin: '' } }, 'goBin'],
    ['unknown flag', { env: {}, flags: { colour: 'blue' } }, 'colour'],
  ];
  for (const [name, opts, setting, msg] of invalid) {
    test(`invalid: ${name} -> ConfigError naming ${setting}`, () => {
      assert.throws(
        () => loadConfig(opts),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.equal(e.name, 'ConfigError');
          assert.ok(e.message.includes(setting), e.message);
          if (msg) assert.match(e.message, msg);
          return true;
        },
      );
    });
  }

  test('invalid: unknown key in the file names the key', () => {
    const f = file('e.json', { port: 9000, workrs: 2 });
    assert.throws(
      () => loadConfig({ env: {}, file: f }),
      (e: unknown) => e instanceof ConfigError && e.message.includes('workrs'),
    );
  });

  test('invalid: a wrongly typed file value names the setting', () => {
    const f = file('f.json', { logLevel: 3 });
    assert.throws(
      () => loadConfig({ env: {}, file: f }),
      (e: unknown) => e instanceof ConfigError && e.message.includes('logLevel'),
    );
  });

  test('invalid: several problems are all reported', () => {
    assert.throws(
      () => loadConfig({ env: { FAIRWAY_PORT: 'x', FAIRWAY_WORKERS: '0' } }),
      (e: unknown) => e instanceof ConfigError && e.message.includes('port') && e.message.includes('workers'),
    );
  });

  test('invalid: a file that is not JSON, or missing, is a ConfigError naming the file', () => {
    const bad = file('bad.json', '{ port: 9000 ');
    assert.throws(
      () => loadConfig({ env: {}, file: bad }),
      (e: unknown) => e instanceof ConfigError && e.message.includes(bad),
    );
    const missing = join(dir, 'missing.json');
    assert.throws(
      () => loadConfig({ env: {}, file: missing }),
      (e: unknown) => e instanceof ConfigError && e.message.includes(missing),
    );
  });

  test('an invalid file value is fixed by a valid env value (env wins before validation)', () => {
    const f = file('g.json', { port: 'not-a-port' });
    assert.equal(loadConfig({ env: { FAIRWAY_PORT: '9300' }, file: f }).port, 9300);
  });
});
