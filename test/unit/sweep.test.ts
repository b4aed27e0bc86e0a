import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { processStartTime, sweepOrphanBuilds } from '../../src/runner/index.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("sweepOrphanBuilds kills the process group of a build whose owner died, and keeps live owners' builds", async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'fairway-sweep-'));
  // A "build" left running by a dead owner: a detached process group.
  const orphan = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  orphan.unref();
  const deadOwner = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const deadPid = Number(deadOwner.stdout);
  await new Promise((r) => setTimeout(r, 50));
  const record = async (owner: number, pgid: number, start?: string | null) =>
    JSON.stringify({ owner, ownerStart: await processStartTime(owner), pgid, pgidStart: start === undefined ? await processStartTime(pgid) : start });
  await mkdir(join(tmp, 'build-dead'));
  await writeFile(join(tmp, 'build-dead', 'owner.json'), await record(deadPid, orphan.pid!));
  // A build of a live owner (this process) must be left alone.
  const live = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  live.unref();
  await mkdir(join(tmp, 'build-live'));
  await writeFile(join(tmp, 'build-live', 'owner.json'), await record(process.pid, live.pid!));
  // A dead owner whose recorded group leader's PID now belongs to another process (other start
  // time): the dir goes, the unrelated process is not killed.
  const reused = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  reused.unref();
  await mkdir(join(tmp, 'build-reused'));
  await writeFile(join(tmp, 'build-reused', 'owner.json'), await record(deadPid, reused.pid!, '1'));
  // The owner's PID reused by another process: that owner is dead, its build is swept.
  const ownerReused = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  ownerReused.unref();
  await mkdir(join(tmp, 'build-owner-reused'));
  await writeFile(join(tmp, 'build-owner-reused', 'owner.json'), JSON.stringify({ owner: process.pid, ownerStart: '1', pgid: ownerReused.pid, pgidStart: await processStartTime(ownerReused.pid!) }));
  // A fresh dir without owner file (spawn in progress) is kept; an old one is removed.
  await mkdir(join(tmp, 'build-fresh'));
  await mkdir(join(tmp, 'build-stale'));
  const old = new Date(Date.now() - 3600_000);
  await utimes(join(tmp, 'build-stale'), old, old);
  await mkdir(join(tmp, 'resolve-x'));

  try {
    const swept = await sweepOrphanBuilds(tmp);
    assert.deepEqual(swept.sort(), ['build-dead', 'build-owner-reused', 'build-reused', 'build-stale']);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(alive(orphan.pid!), false, 'orphaned build process killed');
    assert.equal(alive(ownerReused.pid!), false, 'a build whose owner PID was reused is orphaned: killed');
    assert.equal(alive(reused.pid!), true, 'a process that merely reuses a recorded PID is never killed');
    assert.equal(existsSync(join(tmp, 'build-reused')), false);
    assert.equal(alive(live.pid!), true, "a live owner's build keeps running");
    assert.equal(existsSync(join(tmp, 'build-dead')), false);
    assert.equal(existsSync(join(tmp, 'build-owner-reused')), false, 'the dir of a build whose owner PID was reused is removed');
    assert.equal(existsSync(join(tmp, 'build-stale')), false, 'an old dir without an owner file is removed, not only reported');
    assert.equal(existsSync(join(tmp, 'build-live')), true);
    assert.equal(existsSync(join(tmp, 'build-fresh')), true);
    assert.equal(existsSync(join(tmp, 'resolve-x')), true);
  } finally {
    for (const p of [orphan, live, reused, ownerReused]) {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
});
