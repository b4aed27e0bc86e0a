// The web UI in a real browser (Debian's chromium, driven by playwright-core) against a real
// `fairway serve`: budget and headers, then a person's flow: choose a plugin, build, watch the
// log arrive live, download, compare the sha256 with the API. Screenshots go to test-output/.
//   node --import tsx --test test/integration/ui.test.ts
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { fingerprintOf, publicKeyFromPem } from '../../src/provenance/index.js';
import { api, CADDY_VERSION, PLUGIN, ROOT, startFairway, type FairwayProcess } from '../helpers/fairway.js';

const CHROMIUM = process.env.FAIRWAY_CHROMIUM ?? '/usr/bin/chromium';
const OUT = join(ROOT, 'test-output');
const BUDGET = 60_000;
const BUILD_TIMEOUT = 15 * 60_000;

let server: FairwayProcess;
let browser: Browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `chromium not found at ${CHROMIUM}: run bash scripts/deps.sh (or apt-get install chromium)`);
  await mkdir(OUT, { recursive: true });
  server = await startFairway();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page that records script errors and CSP violations, which fail the test at the end. */
async function newPage(viewport = { width: 1366, height: 900 }): Promise<{ ctx: BrowserContext; page: Page; problems: string[] }> {
  const ctx = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await ctx.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  return { ctx, page, problems };
}

const agent = (id: string, jobs: string[]) => ({
  id,
  host: `${id}.example`,
  go: 'go1.26.8',
  xcaddy: 'v0.4.5',
  concurrency: 2,
  jobs,
  startedAt: new Date().toISOString(),
  lastSeen: new Date().toISOString(),
});

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

test('the page and its assets fit the 60 KB budget and use no external resources', async () => {
  const built = join(ROOT, 'dist', 'ui', 'static');
  const files = (await readdir(built)).filter((f) => f !== 'manifest.json');
  let onDisk = 0;
  for (const f of files) onDisk += (await readFile(join(built, f))).length;
  assert.ok(onDisk <= BUDGET, `built UI is ${onDisk} bytes, over the ${BUDGET} byte budget`);

  // What a browser really loads: the page plus every asset it references.
  const page = await fetch(`${server.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type')!, /^text\/html; charset=utf-8/);
  assert.equal(page.headers.get('cache-control'), 'no-cache');
  const csp = page.headers.get('content-security-policy')!;
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/, 'no inline or external scripts');
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  const html = await page.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline <script>');
  assert.doesNotMatch(html, /<style|\sstyle=/i, 'no inline styles');
  const refs = [...html.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)].map((m) => m[1]!);
  assert.ok(refs.some((r) => r.endsWith('.js')) && refs.some((r) => r.endsWith('.css')), `page references its js and css: ${refs.join(', ')}`);
  let total = Buffer.byteLength(html);
  for (const ref of refs) {
    const res = await fetch(server.url + ref);
    assert.equal(res.status, 200, ref);
    assert.match(res.headers.get('content-type')!, ref.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
    assert.match(res.headers.get('cache-control')!, /immutable/);
    const body = await res.text();
    total += Buffer.byteLength(body);
    assert.doesNotMatch(body, /https?:\/\/|@import|fonts\.g/i, `${ref} loads nothing from elsewhere`);
  }
  assert.doesNotMatch(html, /(?:src|href)="(?:https?:)?\/\//i, 'no CDN or external font links');
  assert.ok(total <= BUDGET, `the page loads ${total} bytes, over the ${BUDGET} byte budget`);

  // Revalidation and unknown assets.
  const again = await fetch(`${server.url}/`, { headers: { 'if-none-match': page.headers.get('etag')! } });
  assert.equal(again.status, 304);
  assert.equal((await fetch(`${server.url}/ui/nope.js`)).status, 404);
});

test('catalog search and ticking; absent catalog and agents degrade gracefully', async () => {
  const { ctx, page, problems } = await newPage();
  // The server's real /api/catalog (the curated catalog, src/catalog/packages.json) and /api/agents.
  const catalog = await api(server.url, '/api/catalog');
  assert.equal(catalog.status, 200, JSON.stringify(catalog.body));
  const paths: string[] = catalog.body.packages.map((p: { path: string }) => p.path);
  assert.ok(paths.includes(PLUGIN.module) && paths.includes('github.com/caddy-dns/cloudflare'), paths.join(', '));
  const agents = await api(server.url, '/api/agents');
  assert.equal(agents.status, 200, JSON.stringify(agents.body));
  assert.equal(agents.body.agents.length, 1, 'a single server: its embedded workers');
  const catalogCalls: string[] = [];
  page.on('request', (r) => {
    if (/\/api\/(catalog|agents)/.test(r.url())) catalogCalls.push(new URL(r.url()).pathname);
  });
  const recipesAnswered = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/recipes');
  await page.goto(server.url);
  await page.locator('#results li').first().waitFor();
  const all = await page.locator('#results li').count();
  assert.ok(all > 1, `the catalog lists its packages (${all})`);
  await page.fill('#q', 'cloudflare dns');
  await page.locator('#results input[value="github.com/caddy-dns/cloudflare"]').waitFor();
  await page.waitForFunction((n) => document.querySelectorAll('#results li').length < n, all);
  await page.fill('#q', 'layer 4');
  await page.locator(`#results input[value="${PLUGIN.module}"]`).waitFor();
  await page.waitForFunction((n) => document.querySelectorAll('#results li').length < n, all);
  await page.locator(`#results input[value="${PLUGIN.module}"]`).check();
  assert.equal(await page.locator('#selected li').count(), 1);
  assert.equal(await page.locator('#count').textContent(), '1');
  await page.getByRole('button', { name: `Remove ${PLUGIN.module}` }).click();
  assert.equal(await page.locator('#selected li').count(), 0);
  assert.equal(await page.locator(`#results input[value="${PLUGIN.module}"]`).isChecked(), false);
  assert.equal(await page.locator('#agents-card').isVisible(), true);
  assert.match((await page.locator('#server').textContent())!, /Queue: \d+ waiting, \d+ building.*1 agent/);
  const [real] = agents.body.agents;
  assert.match((await page.locator('#agents').textContent())!, new RegExp(`${real.id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} idle.*0/${real.concurrency} busy`));
  assert.ok(catalogCalls.includes('/api/catalog') && catalogCalls.includes('/api/agents'), `the page asked the server: ${catalogCalls.join(', ')}`);
  // This server has no recipes: the Recipes section stays hidden.
  await recipesAnswered;
  await page.waitForTimeout(200); // the page has handled the answer
  assert.equal(await page.locator('#recipes-card').isVisible(), false);

  // Several busy agents (a hub's view; this single server has one idle agent): the stand-in below
  // has exactly the fields of the real /api/agents answer, so it cannot drift from it.
  assert.deepEqual(Object.keys(agent('x', [])).sort(), Object.keys(real).sort(), 'the stand-in agent has the real fields');
  await page.route('**/api/agents', (r) => r.fulfill({ json: { agents: [agent('agent-1', ['a'.repeat(64)]), agent('agent-2', [])], queue: { queued: 3, running: 1 } } }));
  await page.reload();
  await page.locator('#results li').first().waitFor();
  await page.waitForFunction(() => /2 agents/.test(document.getElementById('server')?.textContent ?? ''));
  assert.match((await page.locator('#server').textContent())!, /Queue: \d+ waiting, \d+ building.*2 agents/);
  assert.match((await page.locator('#agents').textContent())!, /agent-1 building.*1\/2 busy.*build aaaaaaaaaaaa.*agent-2 idle/);

  // Without a catalog (404, as a server without the route answers) the page says so, and custom modules still work.
  await page.route('**/api/catalog*', (r) => r.fulfill({ status: 404, json: { error: { code: 'not_found', message: 'no route' } } }));
  await page.unroute('**/api/agents');
  await page.route('**/api/agents', (r) => r.fulfill({ status: 404, json: { error: { code: 'not_found', message: 'no route' } } }));
  await page.route('**/api/recipes', (r) => r.fulfill({ status: 404, json: { error: { code: 'not_found', message: 'no route' } } }));
  const recipes404 = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/recipes');
  await page.reload();
  await page.getByText('catalog unavailable', { exact: false }).waitFor();
  assert.equal(await page.locator('#agents-card').isVisible(), false);
  assert.equal((await recipes404).status(), 404);
  await page.waitForTimeout(200);
  assert.equal(await page.locator('#recipes-card').isVisible(), false, 'no Recipes section without the route');
  await page.getByLabel('Custom module').fill('not a module');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  assert.match((await page.locator('#custom-err').textContent())!, /not a Go module path/);
  await page.getByLabel('Custom module').fill('github.com/example/caddy-thing@v1.2.3');
  await page.getByLabel('Custom module').press('Enter');
  assert.equal(await page.getByLabel('Version of github.com/example/caddy-thing').inputValue(), 'v1.2.3');

  // The server's refusal is shown next to the Build button.
  await page.getByLabel('Custom module').fill('github.com/caddyserver/caddy/v2');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await page.waitForFunction(() => /Caddy itself/.test(document.getElementById('form-err')?.textContent ?? ''));

  // Only buildable combinations: the ARM version appears for arm only.
  assert.equal(await page.locator('#arm').isVisible(), false);
  await page.selectOption('#arch', 'arm');
  assert.equal(await page.locator('#arm').isVisible(), true);
  const oses = await page.locator('#os option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
  assert.ok(oses.includes('linux') && oses.includes('windows') && !oses.includes('plan9') && !oses.includes('js'), oses.join(','));
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a person builds Caddy with a plugin, watches the log live and downloads it', { timeout: BUILD_TIMEOUT }, async () => {
  const { ctx, page, problems } = await newPage();
  await page.goto(server.url);

  // Every control has an accessible name.
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, button, textarea')]
      .filter((el) => !(el as HTMLElement).hidden && !(el as HTMLInputElement).labels?.length && !el.getAttribute('aria-label') && !el.textContent?.trim())
      .map((el) => el.outerHTML.slice(0, 80)),
  );
  assert.deepEqual(unlabelled, []);

  // Versions come from /api/versions with `latest` first.
  await page.locator(`#version option[value="${CADDY_VERSION}"]`).waitFor({ state: 'attached' });
  assert.equal(await page.locator('#version option').first().getAttribute('value'), 'latest');
  await page.getByLabel('Caddy version').selectOption(CADDY_VERSION);
  await page.getByLabel('Operating system').selectOption('linux');
  await page.getByLabel('Architecture').selectOption('amd64');

  // Choose the plugin: tick it in the catalog when the server has one, else add it by path.
  await page.getByLabel('Search the plugin catalog').fill('caddy-l4');
  await page.waitForFunction(() => (document.getElementById('catalog-msg')?.textContent ?? '') !== '');
  // The server's catalog has it: tick it there (no fallback that would pass without the catalog).
  const box = page.locator(`#results input[value="${PLUGIN.module}"]`);
  await box.waitFor();
  assert.equal(await box.count(), 1, 'the real catalog offers the plugin');
  await box.check();
  await page.getByLabel(`Version of ${PLUGIN.module}`).fill(PLUGIN.version);

  // Record what the phase line says over time, and when log lines arrive.
  await page.evaluate(() => {
    const w = window as unknown as { phases: string[]; linesBeforeEnd: number };
    w.phases = [];
    w.linesBeforeEnd = 0;
    new MutationObserver(() => {
      const t = document.getElementById('b-phase')!.textContent ?? '';
      if (t && w.phases[w.phases.length - 1] !== t.replace(/ · .*/, '')) w.phases.push(t.replace(/ · .*/, ''));
    }).observe(document.getElementById('b-phase')!, { childList: true, characterData: true, subtree: true });
    new MutationObserver(() => {
      if (document.getElementById('result')!.hidden) w.linesBeforeEnd = document.getElementById('log')!.childNodes.length;
    }).observe(document.getElementById('log')!, { childList: true });
  });

  // Build, with the keyboard.
  await page.getByRole('button', { name: 'Build', exact: true }).focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /^#\/builds\/[0-9a-f]{64}$/.test(location.hash));
  const id = (await page.evaluate(() => location.hash)).slice('#/builds/'.length);
  // The recent list shows the build while it is in flight, with its phase or its place in the queue.
  const inFlight = await page
    .locator(`#recent a[href="#/builds/${id}"] .badge`)
    .filter({ hasText: /^(queued|resolving|building|storing|running)/ })
    .textContent({ timeout: 15_000 });
  assert.match(inFlight ?? '', /^(queued( #\d+)?|resolving|building|storing|running)$/);

  // Live: log lines show up while the build is still running.
  await page.waitForFunction(() => (window as unknown as { linesBeforeEnd: number }).linesBeforeEnd >= 3, null, { timeout: BUILD_TIMEOUT });
  await page.locator('#dl').waitFor({ state: 'visible', timeout: BUILD_TIMEOUT });
  const phases = await page.evaluate(() => (window as unknown as { phases: string[] }).phases);
  assert.ok(
    phases.some((p) => /^(Queued|Resolving|Building)/.test(p)),
    `phases seen: ${phases.join(' | ')}`,
  );
  assert.match(phases[phases.length - 1]!, /^Done/);
  assert.equal(await page.locator('#b-badge').textContent(), 'succeeded');
  const logLines = await page.locator('#log').evaluate((el) => el.textContent!.split('\n').filter(Boolean).length);
  assert.ok(logLines > 10, `log has ${logLines} lines`);
  // Auto-scroll kept the newest line in view.
  assert.ok(await page.locator('#log').evaluate((el) => el.scrollTop + el.clientHeight >= el.scrollHeight - 30));

  const rec = await api(server.url, `/api/builds/${id}`);
  assert.equal(rec.body.status, 'succeeded');
  assert.equal(await page.locator('#sha').textContent(), rec.body.sha256);
  const curl = await page.locator('#curl').inputValue();
  assert.match(curl, new RegExp(`^curl -fL -o caddy_linux_amd64 '${server.url}/api/download\\?os=linux&arch=amd64&version=${CADDY_VERSION}&p=${PLUGIN.module}@${PLUGIN.version}'$`));
  assert.match(await page.locator('#url').inputValue(), /\/api\/download\?os=linux&arch=amd64/);
  assert.match(await page.locator('#cli').inputValue(), new RegExp(`--with ${PLUGIN.module}@${PLUGIN.version}`));

  // A finished Linux build is an image too: docker pull and FROM lines with this server's host and the build id.
  const host = new URL(server.url).host;
  assert.equal(await page.evaluate(() => location.host), host);
  assert.equal(await page.locator('#pull').isVisible(), true);
  assert.equal(await page.locator('#pull').inputValue(), `docker pull ${host}/caddy/build:${id}`);
  assert.equal(await page.locator('#from').isVisible(), true);
  assert.equal(await page.locator('#from').inputValue(), `FROM ${host}/caddy/build:${id}`);
  assert.equal(await page.getByRole('button', { name: 'Copy docker pull command' }).isVisible(), true);
  assert.equal(await page.getByRole('button', { name: 'Copy Dockerfile FROM line' }).isVisible(), true);

  await page.screenshot({ path: join(OUT, 'ui.png'), fullPage: true });

  // The copied caddyserver.com-style URL serves the same binary (from the cache).
  const viaCompat = await fetch(await page.locator('#url').inputValue());
  assert.equal(viaCompat.status, 200);
  assert.equal(
    createHash('sha256')
      .update(Buffer.from(await viaCompat.arrayBuffer()))
      .digest('hex'),
    rec.body.sha256,
  );

  // Download through the link, as a person would, and check it against the API.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#dl').click()]);
  assert.equal(download.suggestedFilename(), 'caddy_linux_amd64');
  const file = await download.path();
  assert.equal(await sha256File(file), rec.body.sha256);

  // Recent builds list it; opening it from a fresh page shows the finished build.
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.locator(`#recent a[href="#/builds/${id}"]`).waitFor();
  const { ctx: ctx2, page: page2, problems: problems2 } = await newPage({ width: 375, height: 812 });
  await page2.goto(server.url);
  await page2.locator(`#recent a[href="#/builds/${id}"]`).click();
  await page2.locator('#dl').waitFor({ state: 'visible' });
  assert.equal(await page2.locator('#sha').textContent(), rec.body.sha256);
  const overflow = await page2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling at phone width (overflow ${overflow}px)`);
  await page2.screenshot({ path: join(OUT, 'ui-phone.png'), fullPage: true });
  await ctx2.close();

  // Images are Linux only: the same finished build for Windows (the real record, its os changed,
  // sent as the log websocket would) shows no image lines.
  const windows = { ...rec.body, spec: { ...rec.body.spec, os: 'windows' }, filename: 'caddy_windows_amd64.exe' };
  const { ctx: ctx3, page: page3, problems: problems3 } = await newPage();
  await page3.routeWebSocket(/\/api\/builds\/[0-9a-f]+\/log/, (ws) => {
    ws.send(JSON.stringify({ type: 'status', build: windows }));
    ws.send(JSON.stringify({ type: 'end', status: 'succeeded', build: windows }));
  });
  await page3.goto(`${server.url}/#/builds/${id}`);
  await page3.locator('#dl').waitFor({ state: 'visible' });
  assert.equal(await page3.locator('#dl').textContent(), 'Download caddy_windows_amd64.exe');
  assert.equal(await page3.locator('#pull').isVisible(), false);
  assert.equal(await page3.locator('#from').isVisible(), false);
  assert.equal(await page3.locator('#pull').inputValue(), '');
  assert.deepEqual(problems3, []);
  await ctx3.close();

  // The same build again is served from the cache and can be downloaded at once.
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await page.waitForFunction(() => document.getElementById('b-badge')?.textContent === 'cached');
  assert.equal(await page.locator('#dl').isVisible(), true);
  assert.match((await page.locator('#b-phase').textContent())!, /cache/i);

  assert.deepEqual(problems, []);
  assert.deepEqual(problems2, []);
  await ctx.close();
});

test('the live log resumes after a dropped websocket without losing or repeating lines', async () => {
  const { body } = await api(server.url, '/api/builds');
  const done = body.builds.find((b: { status: string }) => b.status === 'succeeded');
  assert.ok(done, 'a finished build from the previous test');
  const text = (await api(server.url, `/api/builds/${done.id}/log`)).body as string;
  const expected = text.split('\n').length - 1;

  const { ctx, page, problems } = await newPage();
  const urls: string[] = [];
  await page.routeWebSocket(/\/api\/builds\/[0-9a-f]+\/log/, (ws) => {
    urls.push(ws.url());
    const upstream = ws.connectToServer();
    let n = 0;
    const cut = urls.length === 1;
    upstream.onMessage((m) => {
      if (cut && ++n > 12) {
        // The network goes away mid-log: both sides close.
        upstream.close();
        ws.close({ code: 4000, reason: 'test drop' });
        return;
      }
      ws.send(m);
    });
  });
  await page.goto(`${server.url}/#/builds/${done.id}`);
  await page.locator('#dl').waitFor({ state: 'visible', timeout: 60_000 });
  await page.waitForFunction((n) => document.getElementById('log')!.textContent!.split('\n').length - 1 === n, expected, { timeout: 60_000 });
  assert.ok(urls.length >= 2, `reconnected (${urls.join(', ')})`);
  assert.match(urls[1]!, /\?from=([1-9]\d*)$/);
  const lines = await page.locator('#log').evaluate((el) => el.textContent!.split('\n').slice(0, -1));
  const plain = text
    .split('\n')
    .slice(0, -1)
    .map((l) => l.replace(/^\S+ (stdout|stderr|system) /, ''));
  assert.deepEqual(lines, plain);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a server with recipes lists them with their plugins and image lines', async () => {
  const recipes = { l4: { plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } };
  const withRecipes = await startFairway({ env: { FAIRWAY_RECIPES: JSON.stringify(recipes) } });
  try {
    const listed = await api(withRecipes.url, '/api/recipes');
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.deepEqual(
      listed.body.recipes.map((r: { name: string }) => r.name),
      ['l4'],
    );
    const { ctx, page, problems } = await newPage();
    await page.goto(withRecipes.url);
    const row = page.locator('#recipes li[data-recipe="l4"]');
    await row.waitFor();
    assert.equal(await page.locator('#recipes-card').isVisible(), true);
    assert.equal(await page.locator('#recipes li').count(), 1);
    const host = new URL(withRecipes.url).host;
    assert.match((await row.textContent())!, new RegExp(`^l4.*${PLUGIN.module}@${PLUGIN.version.replace(/\./g, '\\.')}`));
    assert.equal(await page.getByLabel('docker pull for recipe l4', { exact: true }).inputValue(), `docker pull ${host}/caddy/l4:latest`);
    assert.equal(await page.getByLabel('Dockerfile FROM line for recipe l4', { exact: true }).inputValue(), `FROM ${host}/caddy/l4:latest`);
    assert.equal(await page.getByRole('button', { name: 'Copy docker pull for recipe l4' }).isVisible(), true);
    assert.equal(await page.getByRole('button', { name: 'Copy Dockerfile FROM line for recipe l4' }).isVisible(), true);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (overflow ${overflow}px)`);
    // What the watcher knows (GET /api/recipes/l4, its real answer first: watching, nothing tried yet).
    const real = await api(withRecipes.url, '/api/recipes/l4');
    assert.equal(real.status, 200, JSON.stringify(real.body));
    assert.deepEqual(real.body.upstream, { promoted: [], history: [], broken: [] });
    assert.equal(await row.locator('details.upstream summary').textContent(), 'nothing promoted yet');
    // Then a history as the watcher writes it: the compatibility table, green, red and untried, in text too.
    const trial = (caddyVersion: string, version: string, result: string, culprit?: string) => ({
      caddyVersion,
      plugins: [{ module: PLUGIN.module, version }],
      kind: 'candidate',
      result,
      at: '2026-12-01T00:00:00.000Z',
      finishedAt: '2026-12-01T00:01:00.000Z',
      builds: [],
      ...(culprit ? { culprit: { module: culprit, version }, reason: 'the linux/amd64 build failed' } : {}),
    });
    const upstream = {
      promoted: [{ caddyVersion: 'v2.11.9', plugins: [{ module: PLUGIN.module, version: 'v0.1.2' }], at: '2026-12-01T00:01:00.000Z', builds: [] }],
      history: [trial('v2.11.9', 'v0.1.3', 'failed', PLUGIN.module), trial('v2.11.9', 'v0.1.2', 'promoted'), trial('v2.11.8', 'v0.1.2', 'promoted')],
      broken: [],
    };
    await page.route('**/api/recipes/l4', (r) => r.fulfill({ json: { ...real.body, upstream } }));
    await page.reload();
    const table = row.locator('table.compat');
    await table.waitFor({ state: 'attached' });
    await row.locator('details.upstream summary').click();
    assert.equal(await row.locator('details.upstream summary').textContent(), `promoted: Caddy v2.11.9 with ${PLUGIN.module}@v0.1.2`);
    assert.equal(await table.locator('td[title$="v0.1.3: fails"]').textContent(), '✗');
    assert.equal(await table.locator('td.ok').count(), 2);
    assert.equal(await table.locator('td.untried').count(), 1, 'Caddy v2.11.8 with v0.1.3 was never tried');
    assert.match((await row.textContent())!, new RegExp(`culprit ${PLUGIN.module}@v0\\.1\\.3`));
    // The footer says what is true of this server: a default serve signs (its own key), named by fingerprint.
    const fp = fingerprintOf(publicKeyFromPem(await (await fetch(`${withRecipes.url}/api/signing-key`)).text()));
    await page.waitForFunction(() => /^Builds are signed/.test(document.getElementById('signing')?.textContent ?? ''));
    assert.equal(await page.locator('#signing').textContent(), `Builds are signed with the key at /api/signing-key (sha256 ${fp.slice(0, 16)}…).`);
    assert.deepEqual(problems, []);
    await ctx.close();
  } finally {
    await withRecipes.stop();
  }
});

test('on a server that wants a token, a person enters one, then builds, follows the log over SSE and downloads', { timeout: BUILD_TIMEOUT }, async () => {
  const token = `fw_${randomBytes(32).toString('base64url')}`;
  const locked = await startFairway({ env: { FAIRWAY_TOKENS: `ui:build:${createHash('sha256').update(token).digest('hex')}`, FAIRWAY_ANONYMOUS_SCOPES: 'none' } });
  try {
    const { ctx, page, problems } = await newPage();
    const requests: Array<{ url: string; auth: string | undefined }> = [];
    page.on('request', (r) => requests.push({ url: r.url(), auth: r.headers().authorization }));
    await page.goto(locked.url);

    // Without a token: reading and building are refused, and the page says where the token goes.
    await page.waitForFunction(() => /API token/.test(document.getElementById('recent-msg')?.textContent ?? ''));
    await page.getByRole('button', { name: 'Build', exact: true }).click();
    await page.waitForFunction(() => /needs an API token/.test(document.getElementById('form-err')?.textContent ?? ''));

    // A malformed token is refused by the page; the real one is taken (for this tab only).
    await page.locator('#auth-sum').click();
    await page.locator('#token').fill('not a token');
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.waitForFunction(() => /not a token/.test(document.getElementById('auth-msg')?.textContent ?? ''));
    await page.screenshot({ path: join(OUT, 'ui-token.png') });
    await page.locator('#token').fill(token);
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.waitForFunction(() => document.getElementById('auth-sum')?.textContent === 'Token set');
    assert.equal(await page.locator('#token').inputValue(), '', 'the field is cleared');
    await page.waitForFunction(() => /No builds yet/.test(document.getElementById('recent-msg')?.textContent ?? ''));
    assert.equal(await page.evaluate(() => [localStorage.getItem('fairway.token'), sessionStorage.getItem('fairway.token') !== null]).then(([l, s]) => `${l}/${s}`), 'null/true');

    // Versions and platforms load now; build a plain Caddy and follow it live.
    await page.locator(`#version option[value="${CADDY_VERSION}"]`).waitFor({ state: 'attached' });
    await page.getByLabel('Caddy version').selectOption(CADDY_VERSION);
    await page.getByLabel('Operating system').selectOption('linux');
    await page.getByLabel('Architecture').selectOption('amd64');
    await page.getByRole('button', { name: 'Build', exact: true }).click();
    await page.waitForFunction(() => /^#\/builds\/[0-9a-f]{64}$/.test(location.hash));
    const id = (await page.evaluate(() => location.hash)).slice('#/builds/'.length);
    await page.locator('#dl').waitFor({ state: 'visible', timeout: BUILD_TIMEOUT });
    assert.equal(await page.locator('#b-badge').textContent(), 'succeeded');
    const rec = await api(locked.url, `/api/builds/${id}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(rec.status, 200);
    const logText = (await api(locked.url, `/api/builds/${id}/log`, { headers: { authorization: `Bearer ${token}` } })).body as string;
    const logLines = await page.locator('#log').evaluate((el) => el.textContent!.split('\n').length - 1);
    assert.equal(logLines, logText.split('\n').length - 1, 'every log line arrived over SSE');
    const sse = requests.filter((r) => /\/api\/builds\/[0-9a-f]{64}\/log\?from=/.test(r.url));
    assert.ok(sse.length >= 1 && sse.every((r) => r.auth === `Bearer ${token}`), 'the log was followed with the token');

    // The curl command reads the token from the environment; the token is never on screen.
    assert.match(await page.locator('#curl').inputValue(), /^curl -fL -H "Authorization: Bearer \$FAIRWAY_TOKEN" -o caddy_linux_amd64 '/);
    assert.equal((await page.content()).includes(token), false);

    // The download is fetched with the token, checked, and saved under its name.
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#dl').click()]);
    assert.equal(download.suggestedFilename(), 'caddy_linux_amd64');
    assert.equal(await sha256File(await download.path()), rec.body.sha256);
    assert.equal(await page.locator('#b-error').textContent(), '');
    assert.ok(requests.some((r) => r.url.endsWith(`/api/builds/${id}/artifact`) && r.auth === `Bearer ${token}`));

    // A new tab of the same browser does not have it (not remembered); remembered, it does.
    const page2 = await ctx.newPage();
    await page2.goto(locked.url);
    await page2.waitForFunction(() => document.getElementById('auth-sum')?.textContent === 'API token');
    await page.locator('#auth-sum').click();
    await page.locator('#token').fill(token);
    await page.locator('#token-remember').check();
    await page.getByRole('button', { name: 'Use token' }).click();
    await page.waitForFunction(() => /remembered/.test(document.getElementById('auth-msg')?.textContent ?? ''));
    await page2.reload();
    await page2.waitForFunction(() => document.getElementById('auth-sum')?.textContent === 'Token set');
    await page2.locator(`#recent a[href="#/builds/${id}"]`).waitFor();

    // Forget clears it everywhere in this browser; reads are refused again.
    await page2.locator('#auth-sum').click();
    await page2.getByRole('button', { name: 'Forget' }).click();
    await page2.waitForFunction(() => /needs an API token/.test(document.getElementById('recent-msg')?.textContent ?? ''));
    assert.equal(await page2.evaluate(() => localStorage.getItem('fairway.token')), null);
    assert.deepEqual(problems, []);
    await ctx.close();
  } finally {
    await locked.stop();
  }
});
