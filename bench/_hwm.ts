import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { benchDir, BENCH_ENV, curlDownload, downloadPath, GO_CACHE, getFreePort, interleave, median, fmtRate, spec, startBench, timedBuild, sleep } from './lib.js';
const dir = await benchDir();
const s = spec('linux','amd64');
const a = await startBench({ dataDir: join(dir,'data'), cacheDir: GO_CACHE });
const built = await timedBuild(a.url, s);
const port = await getFreePort();
const child = spawn(process.execPath, ['/tmp/fwdist/dist/cli/main.js','serve','--port',String(port),'--data-dir',join(dir,'data'),'--cache-dir',GO_CACHE], { env: { ...process.env, ...BENCH_ENV }, stdio: 'ignore' });
for (;;) { try { await (await fetch(`http://127.0.0.1:${port}/healthz`)).text(); break; } catch { await sleep(200); } }
const u1 = `${a.url}${downloadPath(s)}`, u2 = `http://127.0.0.1:${port}${downloadPath(s)}`;
await curlDownload(u1); await curlDownload(u2);
const r = await interleave(10, () => curlDownload(u1), () => curlDownload(u2));
console.log('64KiB', fmtRate(median(r.a.map(x=>x.rate))), '1MiB', fmtRate(median(r.b.map(x=>x.rate))));
child.kill(); await a.stop(); process.exit(0);
