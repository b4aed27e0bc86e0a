/**
 * Learns which Caddy module IDs a plugin package registers by asking a binary Fairway built:
 * `<binary> list-modules --packages --versions --skip-standard`. Only binaries for the host's own
 * OS/architecture can run here; others are skipped (the curated or upstream list still applies).
 *
 * Running a built binary executes its plugins' init code on the server, which `go build` never
 * does. So it is policy-controlled (`catalogLearn`): `catalog` (default) only runs binaries whose
 * plugins are all listed by the curated file or the upstream mirror; `all` runs any; `off` never.
 * The binary runs from a private temp dir with an empty environment, no stdin and a timeout, and
 * its whole process group is killed afterwards.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ResolvedSpec } from '../spec/index.js';
import type { ArtifactStore } from '../store/index.js';
import type { Catalog } from './index.js';
import { modulesByPackage, parseListModulesText } from './listmodules.js';

export type LearnMode = 'off' | 'catalog' | 'all';

export interface LearnResult {
  key: string;
  /** Package path → module IDs stored. */
  learned: Record<string, string[]>;
  skipped?: string;
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
const GOOS: Record<string, string> = { linux: 'linux', darwin: 'darwin', win32: 'windows', freebsd: 'freebsd', openbsd: 'openbsd', netbsd: 'netbsd', sunos: 'solaris', aix: 'aix' };

/** This machine as GOOS/GOARCH. */
export function hostPlatform(): { os: string; arch: string } {
  return { os: GOOS[process.platform] ?? process.platform, arch: GOARCH[process.arch] ?? process.arch };
}

export interface ModuleLearnerOptions {
  store: ArtifactStore;
  catalog: Catalog;
  /** Folder for the temporary copies of binaries. */
  tmpDir: string;
  mode: LearnMode;
  logger?: Logger;
  timeoutMs?: number;
}

export class ModuleLearner {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ModuleLearnerOptions) {}

  /** Queues learning from the finished build `key`; one binary runs at a time. Never throws. */
  learn(key: string): Promise<LearnResult> {
    const run = this.chain.then(() => this.learnNow(key));
    this.chain = run.catch(() => undefined);
    return run.catch((err: unknown) => {
      this.o.logger?.warn({ key, err }, 'catalog: could not learn module IDs from the build');
      return { key, learned: {}, skipped: (err as Error).message };
    });
  }

  private async learnNow(key: string): Promise<LearnResult> {
    const skip = (why: string): LearnResult => {
      this.o.logger?.debug({ key, why }, 'catalog: not learning module IDs from this build');
      return { key, learned: {}, skipped: why };
    };
    if (this.o.mode === 'off') return skip('learning is off');
    const meta = await this.o.store.getMeta(key);
    if (!meta || meta.status !== 'succeeded') return skip('no successful build');
    const spec = meta.spec as ResolvedSpec;
    if (!spec.plugins?.length) return skip('no plugins');
    const host = hostPlatform();
    if (spec.os !== host.os || spec.arch !== host.arch) return skip(`built for ${spec.os}/${spec.arch}, cannot run on ${host.os}/${host.arch}`);
    if (this.o.mode === 'catalog') {
      const unlisted = spec.plugins.filter((p) => !this.o.catalog.lists(p.module)).map((p) => p.module);
      if (unlisted.length) return skip(`plugins not in the catalog: ${unlisted.join(', ')} (catalogLearn=catalog)`);
    }
    await mkdir(this.o.tmpDir, { recursive: true });
    const dir = await mkdtemp(join(this.o.tmpDir, 'learn-'));
    try {
      const bin = join(dir, 'caddy');
      await pipeline(await this.o.store.openBinary(key), createWriteStream(bin, { mode: 0o700 }));
      await chmod(bin, 0o700);
      const out = await runBinary(bin, ['list-modules', '--packages', '--versions', '--skip-standard'], dir, this.o.timeoutMs ?? 30_000);
      const groups = modulesByPackage(parseListModulesText(out));
      const learned: Record<string, string[]> = {};
      for (const p of spec.plugins) {
        // A plugin named by a package inside its Go module still maps to the module printed.
        const hit = groups.get(p.module) ?? [...groups.entries()].find(([path]) => p.module.startsWith(`${path}/`))?.[1];
        const ids = hit?.ids ?? [];
        await this.o.catalog.setModules(p.module, ids, { ...(p.version ? { version: p.version } : {}), build: key });
        learned[p.module] = ids;
      }
      this.o.logger?.info({ key, packages: Object.fromEntries(Object.entries(learned).map(([k, v]) => [k, v.length])) }, 'catalog: learned module IDs from build');
      return { key, learned };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function runBinary(bin: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd,
      env: { HOME: cwd, TMPDIR: cwd, PATH: '/usr/bin:/bin', XDG_CONFIG_HOME: cwd, XDG_DATA_HOME: cwd, XDG_CACHE_HOME: cwd },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let err = '';
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    };
    const timer = setTimeout(() => {
      killGroup();
      reject(new Error(`${args[0]} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      if (out.length < 4 * 1024 * 1024) out += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      if (err.length < 64 * 1024) err += c;
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      killGroup();
      if (code === 0) resolve(out);
      else reject(new Error(`${args.join(' ')} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}
