/** GOOS/GOARCH/GOARM: which targets Fairway accepts, from the toolchain's own `go tool dist list`. */

export interface Platform {
  os: string;
  arch: string;
}

/** Targets Go lists but cannot build Caddy for with CGO_ENABLED=0, with the reason shown to users. */
const UNBUILDABLE: Array<[RegExp, string]> = [
  [/^ios\//, "iOS targets need cgo and Apple's linker"],
  [/^android\/(386|amd64|arm)$/, 'this Android target needs cgo; android/arm64 is supported'],
  [/^js\/wasm$/, 'Caddy does not run on js/wasm'],
  [/^wasip1\/wasm$/, 'Caddy does not run on wasip1/wasm'],
  [/^plan9\//, 'Caddy does not build for Plan 9'],
];

export const ARM_VERSIONS = ['5', '6', '7'] as const;
export const DEFAULT_ARM = '7';

export class PlatformSet {
  private readonly all: Set<string>;

  constructor(platforms: Iterable<Platform>) {
    this.all = new Set([...platforms].map((p) => `${p.os}/${p.arch}`));
  }

  /** Parses the JSON printed by `go tool dist list -json`. */
  static fromDistListJson(json: string): PlatformSet {
    const rows = JSON.parse(json) as Array<{ GOOS: string; GOARCH: string }>;
    return new PlatformSet(rows.map((r) => ({ os: r.GOOS, arch: r.GOARCH })));
  }

  /** Null when buildable, else why not. */
  check(os: string, arch: string): string | null {
    const id = `${os}/${arch}`;
    if (!this.all.has(id)) {
      const oses = new Set([...this.all].map((p) => p.split('/')[0]));
      if (!oses.has(os)) return `unknown os "${os}"; supported: ${this.oses().join(', ')}`;
      return `Go cannot build ${id}; architectures for ${os}: ${this.archesFor(os).join(', ')}`;
    }
    for (const [re, why] of UNBUILDABLE) if (re.test(id)) return `${id} is not supported: ${why}`;
    return null;
  }

  /** The buildable targets, sorted, for the API and UI. */
  list(): Platform[] {
    return [...this.all]
      .sort()
      .map((id) => {
        const [os, arch] = id.split('/') as [string, string];
        return { os, arch };
      })
      .filter((p) => !UNBUILDABLE.some(([re]) => re.test(`${p.os}/${p.arch}`)));
  }

  oses(): string[] {
    return [...new Set(this.list().map((p) => p.os))];
  }

  archesFor(os: string): string[] {
    return this.list()
      .filter((p) => p.os === os)
      .map((p) => p.arch);
  }
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
const GOOS: Record<string, string> = { linux: 'linux', darwin: 'darwin', win32: 'windows', freebsd: 'freebsd', openbsd: 'openbsd', netbsd: 'netbsd', sunos: 'solaris', aix: 'aix' };

/** This machine as GOOS/GOARCH: binaries for it are the only ones that can run here. */
export function hostPlatform(): Platform {
  return { os: GOOS[process.platform] ?? process.platform, arch: GOARCH[process.arch] ?? process.arch };
}
