/** The new-build form: Caddy version and target (from the server's lists), and Build. */
import { ApiError, api } from './api.js';
import { $, option } from './dom.js';
import { selectedPlugins } from './plugins.js';
import type { Build } from './types.js';

const form = $<HTMLFormElement>('form');
const versionSel = $<HTMLSelectElement>('version');
const osSel = $<HTMLSelectElement>('os');
const archSel = $<HTMLSelectElement>('arch');
const armSel = $<HTMLSelectElement>('arm');

let platforms: Array<{ os: string; arch: string }> = [];
const OS_NAMES: Record<string, string> = {
  linux: 'Linux',
  darwin: 'macOS',
  windows: 'Windows',
  freebsd: 'FreeBSD',
  openbsd: 'OpenBSD',
  netbsd: 'NetBSD',
  android: 'Android',
  illumos: 'illumos',
  solaris: 'Solaris',
  dragonfly: 'DragonFly BSD',
  aix: 'AIX',
};
const OS_ORDER = ['linux', 'darwin', 'windows', 'freebsd'];
const rank = (os: string) => (OS_ORDER.includes(os) ? OS_ORDER.indexOf(os) : 99);

async function loadVersions(): Promise<void> {
  try {
    const v = await api<{ versions: Array<{ version: string; prerelease: boolean }>; latest: string | null }>('/api/versions');
    versionSel.replaceChildren(
      option('latest', v.latest ? `latest (${v.latest})` : 'latest', true),
      ...v.versions.map((x) => option(x.version, x.prerelease ? `${x.version} (pre-release)` : x.version)),
    );
  } catch {
    versionSel.replaceChildren(option('latest', 'latest', true));
  }
}

async function loadPlatforms(): Promise<void> {
  try {
    const p = await api<{ platforms: Array<{ os: string; arch: string }>; arm?: string[] }>('/api/platforms');
    platforms = p.platforms;
    if (p.arm?.length) armSel.replaceChildren(...[...p.arm].reverse().map((a) => option(a, `v${a}`, a === '7')));
  } catch {
    platforms = [{ os: 'linux', arch: 'amd64' }];
  }
  const oses = [...new Set(platforms.map((x) => x.os))].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  osSel.replaceChildren(...oses.map((o) => option(o, OS_NAMES[o] ?? o, o === 'linux')));
  fillArch('amd64');
}

function fillArch(prefer?: string): void {
  const arches = platforms.filter((x) => x.os === osSel.value).map((x) => x.arch);
  const keep = prefer && arches.includes(prefer) ? prefer : arches.includes('amd64') ? 'amd64' : arches[0];
  archSel.replaceChildren(...arches.map((a) => option(a, a, a === keep)));
  $('arm-field').hidden = archSel.value !== 'arm';
}

/** Load the versions and platforms; `keep` (after a token change) keeps the choices that are still offered. */
export function loadTargets(keep = false): Promise<void> {
  const was = { version: versionSel.value, os: osSel.value, arch: archSel.value };
  const pick = (sel: HTMLSelectElement, value: string) => {
    if ([...sel.options].some((o) => o.value === value)) sel.value = value;
  };
  const loaded = Promise.all([loadVersions(), loadPlatforms()]);
  if (!keep) return loaded.then(() => undefined);
  return loaded.then(() => {
    pick(versionSel, was.version);
    pick(osSel, was.os);
    fillArch(was.arch);
    $('arm-field').hidden = archSel.value !== 'arm';
  });
}

async function submit(started: (b: Build) => void): Promise<void> {
  const btn = $<HTMLButtonElement>('build');
  const err = $('form-err');
  err.textContent = '';
  btn.disabled = true;
  btn.textContent = 'Starting…';
  const body = {
    caddyVersion: versionSel.value,
    os: osSel.value,
    arch: archSel.value,
    ...(archSel.value === 'arm' ? { arm: armSel.value } : {}),
    plugins: selectedPlugins(),
  };
  try {
    const b = await api<Build>('/api/builds', { method: 'POST', body: JSON.stringify(body) });
    started(b);
  } catch (e2) {
    err.textContent = e2 instanceof ApiError ? e2.message : `Cannot reach the server: ${(e2 as Error).message}`;
  } finally {
    btn.disabled = false;
    btn.textContent = 'Build';
  }
}

/** The form's controls; `started` gets the build the server accepted. */
export function initForm(started: (b: Build) => void): void {
  osSel.addEventListener('change', () => fillArch(archSel.value));
  archSel.addEventListener('change', () => ($('arm-field').hidden = archSel.value !== 'arm'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void submit(started);
  });
}
