// Self-upgrade (tableflip's model): a process spawns its successor itself on SIGHUP and hands it the
// listeners; the successor is its child. The successor outlives its parent, so the tests end it by pid.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { handoff } from 'fdpass';
import { processState, runFixture, spawnJson, type Fixture } from './helpers/children';
import { tmpPath } from './helpers/tmp';
import { get, load } from './helpers/http';
import { freePort } from './helpers/net';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  // A zombie still answers kill(0): read its state.
  const state = processState(pid);
  return state !== undefined && state !== 'Z' && state !== 'X';
}

async function gone(pid: number, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (fs.existsSync(`/proc/${pid}`)) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

// The first generation's 'exit' (its stdout stays open while a successor holds the same pipe).
function exitOf(f: Fixture): Promise<number | null> {
  return new Promise((resolve) => {
    if (f.proc.exitCode !== null) return resolve(f.proc.exitCode);
    f.proc.once('exit', (code) => resolve(code));
  });
}

describe('self-upgrade (handoff.upgrader)', () => {
  it('SIGHUP: the process spawns its successor, which takes over under load with 0 errors; the old one drains and exits', async () => {
    const port = await freePort();
    const gen1 = runFixture('upgrade-app', [String(port)]);
    const s1 = await gen1.expect<{ pid: number; inherited: boolean }>('serving');
    assert.equal(s1.inherited, false);
    const traffic = load(port, { workers: 4, keepAlive: true });
    await sleep(200);
    gen1.proc.kill('SIGHUP');
    const up = await gen1.expect<{ pid: number; by: number }>('upgrade');
    assert.equal(up.by, gen1.pid);
    const s2 = await gen1.expect<{ pid: number; inherited: boolean }>('serving'); // the successor writes to the same stdout
    assert.deepEqual([s2.pid, s2.inherited], [up.pid, true]);
    assert.equal(await exitOf(gen1), 0, 'the old process drained and exited');
    await sleep(300);
    const r = await traffic.stop();
    assert.deepEqual(r.errors, []);
    assert.ok((r.bodies.get(`gen ${s2.pid}`) ?? 0) > 0, 'the successor served');
    assert.equal(await get(port), `gen ${s2.pid}`);
    // And the successor can upgrade itself in turn.
    process.kill(s2.pid, 'SIGHUP');
    const s3 = await gen1.expect<{ pid: number; inherited: boolean }>('serving');
    assert.ok(await gone(s2.pid), 'the second generation exited');
    assert.equal(await get(port), `gen ${s3.pid}`);
    process.kill(s3.pid, 'SIGTERM');
    assert.ok(await gone(s3.pid));
    await gen1.exited;
  });

  it('a successor that exits before ready is reaped; the old process keeps serving, and a later upgrade works', async () => {
    const port = await freePort();
    const flag = tmpPath('fail-successor');
    fs.writeFileSync(flag, '');
    const gen1 = runFixture('upgrade-app', [String(port), flag]);
    await gen1.expect('serving');
    const traffic = load(port, { workers: 2, keepAlive: false });
    gen1.proc.kill('SIGHUP');
    const up = await gen1.expect<{ pid: number }>('upgrade');
    const failed = await gen1.expect<{ code: string; pid: number }>('failed');
    assert.deepEqual([failed.code, failed.pid], ['ERR_FDPASS_CLOSED', up.pid]);
    assert.equal(alive(up.pid), false, 'no zombie: the failed successor was reaped');
    assert.ok(await gone(up.pid));
    const r = await traffic.stop();
    assert.deepEqual(r.errors, []);
    assert.equal(r.bodies.get(`gen ${gen1.pid}`), r.ok, 'the old process served everything');
    fs.rmSync(flag);
    gen1.proc.kill('SIGHUP');
    const s2 = await gen1.expect<{ pid: number }>('serving');
    assert.equal(await exitOf(gen1), 0);
    assert.equal(await get(port), `gen ${s2.pid}`);
    process.kill(s2.pid, 'SIGTERM');
    assert.ok(await gone(s2.pid));
    await gen1.exited;
  });

  it('the successor runs the script path as given: a symlink swapped to a new release runs the new code', async () => {
    const port = await freePort();
    const app = require.resolve('./fixtures/upgrade-app.js');
    // Two "releases": each sets its version, then runs the app.
    for (const v of ['1', '2'])
      fs.writeFileSync(tmpPath(`release-${v}.js`), `process.env.APP_VERSION = '${v}';\nrequire(${JSON.stringify(app)});\n`);
    const current = tmpPath('current.js');
    fs.symlinkSync(tmpPath('release-1.js'), current);
    const gen1 = spawnJson(process.execPath, [current, String(port)]);
    assert.equal((await gen1.expect<{ version: string }>('serving')).version, '1');
    // Deploy: point the symlink at release 2 (atomically, as deploy tools do), then SIGHUP.
    fs.symlinkSync(tmpPath('release-2.js'), tmpPath('next.js'));
    fs.renameSync(tmpPath('next.js'), current);
    gen1.proc.kill('SIGHUP');
    const s2 = await gen1.expect<{ pid: number; version: string; inherited: boolean }>('serving');
    assert.deepEqual([s2.version, s2.inherited], ['2', true]);
    assert.equal(await exitOf(gen1), 0);
    assert.equal(await get(port), `gen ${s2.pid}`);
    process.kill(s2.pid, 'SIGTERM');
    assert.ok(await gone(s2.pid));
    await gen1.exited;
  });

  it('a second request while an upgrade runs is refused, not queued', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    // A successor that never takes anything: `sleep` stands in, killed when the upgrade gives up.
    const up = handoff.upgrader({ web: server }, { command: '/bin/sleep', args: ['30'], readyTimeout: 500, systemd: false });
    const first = up.upgrade();
    assert.equal(up.busy, true);
    await assert.rejects(up.upgrade(), { code: 'ERR_FDPASS_HANDOFF_BUSY' });
    await assert.rejects(first, { code: 'ERR_FDPASS_TIMEOUT' });
    assert.equal(up.busy, false);
    assert.ok(server.listening, 'still serving');
    up.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('bad arguments are refused with Node-style errors', () => {
    assert.throws(() => handoff.upgrader({}), { code: 'ERR_INVALID_ARG_VALUE' });
    const s = net.createServer();
    assert.throws(() => handoff.upgrader({ web: s }, { signal: 'HUP' as NodeJS.Signals }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => handoff.upgrader({ web: s }, { args: 'x' as unknown as string[] }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => handoff.upgrader({ web: s }, { readyTimeout: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  });
});
