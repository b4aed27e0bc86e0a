/**
 * Go's GOOS/GOARCH/GOARM → the OCI platform of an image (image-spec image-index.md, "Platform
 * Variants"): `architecture` and `os` are Go's names; `variant` is `v<GOARM>` for 32-bit ARM
 * (arm/v5, arm/v6, arm/v7) and `v8` for arm64 (Go's GOARM64 default, what Docker Hub's indexes
 * say; containerd treats arm64 and arm64/v8 as the same). Other architectures have no variant:
 * Go's defaults (GOAMD64=v1, …) are each architecture's baseline.
 */

export interface PlatformInput {
  os: string;
  arch: string;
  /** GOARM for arch=arm ("5", "6", "7", optionally ",softfloat"/",hardfloat"); Go's default 7 when absent. */
  arm?: string;
}

export interface OciPlatform {
  architecture: string;
  os: string;
  variant?: string;
}

/** GOARM when none is given (Go's default for cross-compiled arm, and Fairway's DEFAULT_ARM). */
export const DEFAULT_GOARM = '7';

export function ociPlatform(p: PlatformInput): OciPlatform {
  if (p.os !== 'linux') {
    throw new Error(`images are Linux images: os "${p.os}" is not supported (the image's filesystem is a Linux root filesystem)`);
  }
  if (!/^[a-z0-9]+$/.test(p.arch)) throw new Error(`bad GOARCH "${p.arch}"`);
  if (p.arch === 'arm') {
    const goarm = p.arm ?? DEFAULT_GOARM;
    const m = /^([5-7])(?:,(?:softfloat|hardfloat))?$/.exec(goarm);
    if (!m) throw new Error(`bad GOARM "${goarm}" for arch arm (want 5, 6 or 7)`);
    return { architecture: 'arm', os: 'linux', variant: `v${m[1]}` };
  }
  if (p.arm !== undefined) throw new Error(`GOARM is only for arch arm, not ${p.arch}`);
  if (p.arch === 'arm64') return { architecture: 'arm64', os: 'linux', variant: 'v8' };
  return { architecture: p.arch, os: 'linux' };
}

/** `linux/arm/v7`-style name, for messages and sorting. */
export function platformString(p: OciPlatform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined).join('/');
}

/** ELF e_machine of each GOARCH whose binaries we can recognise (others are not checked). */
const ELF_MACHINE: Record<string, { machine: number; class: 1 | 2 }> = {
  '386': { machine: 3, class: 1 },
  amd64: { machine: 62, class: 2 },
  arm: { machine: 40, class: 1 },
  arm64: { machine: 183, class: 2 },
  ppc64le: { machine: 21, class: 2 },
  ppc64: { machine: 21, class: 2 },
  s390x: { machine: 22, class: 2 },
  riscv64: { machine: 243, class: 2 },
  loong64: { machine: 258, class: 2 },
  mips: { machine: 8, class: 1 },
  mipsle: { machine: 8, class: 1 },
  mips64: { machine: 8, class: 2 },
  mips64le: { machine: 8, class: 2 },
};

/**
 * Null when the first bytes of a binary are an ELF executable for `arch`, else why not: an image
 * that says linux/arm64 must not carry an amd64 binary.
 */
export function elfMismatch(head: Buffer, arch: string): string | null {
  if (head.length < 20 || head[0] !== 0x7f || head.toString('latin1', 1, 4) !== 'ELF') return 'not an ELF executable';
  const want = ELF_MACHINE[arch];
  if (!want) return null;
  const cls = head[4];
  const little = head[5] === 1;
  const machine = little ? head.readUInt16LE(18) : head.readUInt16BE(18);
  if (cls !== want.class || machine !== want.machine) {
    return `an ELF binary for another architecture (class ${cls}, machine ${machine}; ${arch} is class ${want.class}, machine ${want.machine})`;
  }
  return null;
}
