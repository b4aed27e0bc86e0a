/**
 * The result panel of a succeeded build: download (fetched and checked against its sha256 when
 * a token is in use, since a link cannot carry it), facts, provenance, and copyable commands.
 */
import { get, hasToken, refusal } from './api.js';
import { $, copyButton, h } from './dom.js';
import { buildCommands, fmtBytes, hex } from './format.js';
import type { Build } from './types.js';

export function renderResult(b: Build): void {
  const ok = b.status === 'succeeded';
  $('result').hidden = !ok;
  if (!ok) return;
  const dl = $<HTMLAnchorElement>('dl');
  dl.href = b.links.artifact;
  dl.download = b.filename;
  dl.textContent = `Download ${b.filename}`;
  $('dl-size').textContent = fmtBytes(b.size);
  $('sha').textContent = b.sha256 ?? '';
  $('size').textContent = b.size !== undefined ? `${fmtBytes(b.size)} (${b.size.toLocaleString('en')} bytes)` : '';
  $('go').textContent = [b.goVersion, b.spec.toolchain?.xcaddy && `xcaddy ${b.spec.toolchain.xcaddy}`, b.agent && `on ${b.agent}`].filter(Boolean).join(', ');
  // Signed SLSA provenance (docs/provenance.md): the link, and how to check it with cosign.
  const prov = $<HTMLAnchorElement>('prov');
  prov.href = b.links.provenance ?? '#';
  prov.textContent = b.provenance === 'signed' ? 'signed (SLSA v1)' : b.provenance === 'unsigned' ? 'UNSIGNED: this server has no signing key' : 'none (built before provenance)';
  $('prov-row').hidden = !b.provenance;
  $('prov-dd').hidden = !b.provenance;
  const cmd = buildCommands(b, location.origin, location.host, hasToken());
  $<HTMLInputElement>('verify').value = cmd.verify;
  $('verify-row').hidden = b.provenance !== 'signed';
  $<HTMLInputElement>('url').value = cmd.url;
  $<HTMLInputElement>('curl').value = cmd.curl;
  $('img').hidden = b.spec.os !== 'linux';
  $<HTMLInputElement>('pull').value = cmd.pull;
  $<HTMLInputElement>('from').value = cmd.from;
  $<HTMLInputElement>('cli').value = cmd.cli;
}

async function downloadWithToken(b: Build): Promise<void> {
  const dl = $<HTMLAnchorElement>('dl');
  if (dl.getAttribute('aria-disabled') === 'true') return;
  const label = dl.textContent;
  dl.setAttribute('aria-disabled', 'true');
  dl.textContent = 'Downloading…';
  $('b-error').textContent = '';
  try {
    const res = await get(b.links.artifact);
    if (!res.ok) throw new Error(await refusal(res));
    const bytes = await res.arrayBuffer();
    // crypto.subtle exists in secure contexts (https, localhost) only.
    if (b.sha256 && window.crypto?.subtle) {
      const sum = hex(await crypto.subtle.digest('SHA-256', bytes));
      if (sum !== b.sha256) throw new Error(`the download does not match its SHA-256 (got ${sum}); try again`);
    }
    const href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    const a = h('a', { href, download: b.filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
  } catch (err) {
    $('b-error').textContent = `Download failed: ${(err as Error).message}`;
  } finally {
    dl.textContent = label;
    dl.removeAttribute('aria-disabled');
  }
}

/** The panel's controls: Download (with a token: fetched) for the build `shown` returns, and the Copy buttons. */
export function initResult(shown: () => Build | undefined): void {
  $('dl').addEventListener('click', (e) => {
    const b = shown();
    if (!hasToken() || !b || b.status !== 'succeeded') return;
    e.preventDefault();
    void downloadWithToken(b);
  });
  for (const btn of document.querySelectorAll<HTMLButtonElement>('[data-copy]')) copyButton(btn, $(btn.dataset.copy!));
}
