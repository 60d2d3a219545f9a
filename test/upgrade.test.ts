// Self-upgrade (tableflip's model): a process spawns its successor itself on SIGHUP and hands it the
// listeners; the successor is its child. The successor outlives its parent, so the tests end it by pid.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { handoff } from 'fdpass';
import { fixturesDir, processState, runFixture, spawnJson, type Fixture } from './helpers/children';
import { tmpPath } from './helpers/tmp';
import { get, load } from './helpers/http';
import { freePort } from './helpers/net';
import { requires, unshare } from './helpers/requires';
import { sleep, waitFor } from './helpers/wait';

const fixture = (name: string): string => path.join(fixturesDir, `${name}.js`);
const INDEX = path.join(__dirname, '..', '..', 'dist', 'index.js');

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
  it('SIGHUP: the successor takes over under load with 0 errors; the old one drains and exits', async () => {
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

  it("a 'failed' listener that throws: upgrade() still rejects with the real reason, 'error' reports the throw", async () => {
    const port = await freePort();
    const flag = tmpPath('fail-successor');
    fs.writeFileSync(flag, '');
    const gen1 = runFixture('upgrade-app', [String(port), flag], { env: { ...process.env, FDPASS_TEST_THROW_FAILED: '1' } });
    await gen1.expect('serving');
    gen1.proc.kill('SIGUSR2'); // the fixture calls up.upgrade()
    const seen = new Map<string, Record<string, unknown>>(); // the two come in either order
    while (!seen.has('upgrade-rejected') || !seen.has('upgrader-error')) {
      const m = await gen1.next<Record<string, unknown>>();
      seen.set(String(m.event), m);
    }
    assert.equal(seen.get('upgrade-rejected')!.code, 'ERR_FDPASS_CLOSED', String(seen.get('upgrade-rejected')!.message));
    assert.equal(seen.get('upgrader-error')!.message, 'a careless failed handler');
    assert.equal(await get(port), `gen ${gen1.pid}`);
    gen1.proc.kill('SIGTERM');
    assert.equal(await exitOf(gen1), 0);
  });

  // A later upgrade works.
  it('a successor that exits before ready is reaped; the old process keeps serving', async () => {
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

  // A successor's 'ready' read only past the deadline (this process busy).
  it("readyTimeout is one deadline: a late 'ready' is taken or rolled back, never both", async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const T = 3000;
    const t0 = Date.now();
    // It says hello late (a deadline counted from there would end after this process is busy), takes the
    // listeners, then says ready shortly before the deadline, while this process is busy.
    const successor = [
      `const { handoff } = require(${JSON.stringify(INDEX)});`,
      '(async () => {',
      `  await new Promise((r) => setTimeout(r, Math.max(0, ${t0 + 800} - Date.now())));`, // hello well after the spawn
      '  const inh = await handoff.inherit();',
      '  const web = await inh.server("web");',
      `  await new Promise((r) => setTimeout(r, Math.max(0, ${t0 + T - 300} - Date.now())));`,
      '  await inh.ready().catch(() => process.exit(1));',
      '  setInterval(() => {}, 1000);',
      '})();',
    ].join('\n');
    const up = handoff.upgrader({ web: server }, { command: process.execPath, args: ['-e', successor], readyTimeout: T, systemd: false });
    let pid: number | undefined;
    up.on('upgrade', (p: number) => (pid = p));
    up.on('upgraded', () => {}); // no hand-over line on stderr
    const failed: Error[] = [];
    up.on('failed', (err: Error) => failed.push(err));
    const outcome = up.upgrade().then(
      () => 'upgraded',
      (err: Error & { code?: string }) => err.code,
    );
    // Busy from before its 'ready' until past the deadline: both are due when the loop runs again.
    // Busy in the check phase (setImmediate), so that the timers run before its 'ready' is read.
    await sleep(T - 600);
    await new Promise((r) => setImmediate(r));
    const busyUntil = t0 + T + 300;
    while (Date.now() < busyUntil) {
      // a busy process
    }
    const result = await outcome;
    await sleep(500); // a hand-off judged apart would close this process's listeners meanwhile
    try {
      if (result === 'upgraded') {
        assert.equal(failed.length, 0);
        assert.equal(server.listening, false, 'handed over: this process let go');
        assert.ok(alive(pid!), 'the successor serves');
      } else {
        assert.equal(result, 'ERR_FDPASS_TIMEOUT');
        assert.equal(failed.length, 1, 'reported once');
        assert.ok(server.listening, 'rolled back: this process still serves');
        assert.ok(await gone(pid!), 'the successor was killed');
      }
    } finally {
      if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
      up.close();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  // Its in-flight request completes.
  it('a second SIGHUP while the old process drains is ignored; it exits 0', async () => {
    const port = await freePort();
    const gen1 = runFixture('upgrade-app', [String(port)]);
    await gen1.expect('serving');
    const slow = get(port, '/slow');
    await gen1.expect('slow');
    gen1.proc.kill('SIGHUP');
    const s2 = await gen1.expect<{ pid: number }>('serving');
    // The old process said it handed over: it is draining, with the slow request in flight.
    await waitFor('the hand-over line', () => gen1.stderr().includes(`handed over to pid ${s2.pid}`));
    gen1.proc.kill('SIGHUP');
    assert.equal(await slow, `gen ${gen1.pid}`);
    assert.equal(await exitOf(gen1), 0, 'the old process drained and exited 0');
    process.kill(s2.pid, 'SIGTERM');
    assert.ok(await gone(s2.pid));
    await gen1.exited;
  });

  // Its in-flight request completes; it exits 0.
  it('the hand-over line to a stderr pipe whose reader left does not kill the old process', async () => {
    const port = await freePort();
    const gen1 = runFixture('upgrade-app', [String(port)]);
    await gen1.expect('serving');
    gen1.proc.stderr!.destroy(); // the only reader of the pipe: writes to it now fail with EPIPE
    const slow = get(port, '/slow');
    await gen1.expect('slow');
    gen1.proc.kill('SIGHUP');
    const s2 = await gen1.expect<{ pid: number }>('serving');
    assert.equal(await slow, `gen ${gen1.pid}`);
    assert.equal(await exitOf(gen1), 0, 'the old process drained and exited 0');
    assert.equal(await get(port), `gen ${s2.pid}`);
    process.kill(s2.pid, 'SIGTERM');
    assert.ok(await gone(s2.pid));
    await gen1.exited;
  });

  it('the pid file names the serving process across two upgrades, and goes when that process exits', async () => {
    const port = await freePort();
    const pidFile = tmpPath('app.pid');
    const gen1 = runFixture('upgrade-app', [String(port)], { env: { ...process.env, FDPASS_TEST_PIDFILE: pidFile } });
    await gen1.expect('serving');
    const named = (): string => (fs.existsSync(pidFile) ? fs.readFileSync(pidFile, 'latin1') : '');
    assert.equal(named(), `${gen1.pid}\n`);
    gen1.proc.kill('SIGHUP');
    const s2 = await gen1.expect<{ pid: number }>('serving');
    await waitFor('the pid file to name the second generation', () => named() === `${s2.pid}\n`);
    assert.equal(await exitOf(gen1), 0);
    assert.equal(named(), `${s2.pid}\n`, 'the old process left the file naming its successor');
    process.kill(s2.pid, 'SIGHUP');
    const s3 = await gen1.expect<{ pid: number }>('serving');
    assert.ok(await gone(s2.pid));
    assert.equal(named(), `${s3.pid}\n`);
    assert.match(
      gen1.stderr(),
      new RegExp(`pid ${gen1.pid} handed over to pid ${s2.pid}\n[^]*pid ${s2.pid} handed over to pid ${s3.pid}\n`),
    );
    process.kill(s3.pid, 'SIGTERM');
    assert.ok(await gone(s3.pid));
    assert.equal(fs.existsSync(pidFile), false, 'the last process removed its pid file');
    assert.deepEqual(
      fs.readdirSync(path.dirname(pidFile)).filter((f) => f.startsWith('app.pid.')),
      [],
      'no temporary file left',
    );
    await gen1.exited;
  });

  it('a successor whose pid file cannot be written (its directory went) still serves; the old one exits 0', async () => {
    const port = await freePort();
    const dir = tmpPath('run');
    fs.mkdirSync(dir);
    const gen1 = runFixture('upgrade-app', [String(port)], { env: { ...process.env, FDPASS_TEST_PIDFILE: path.join(dir, 'app.pid') } });
    await gen1.expect('serving');
    fs.rmSync(dir, { recursive: true });
    gen1.proc.kill('SIGHUP');
    const s2 = await gen1.expect<{ pid: number }>('serving');
    assert.equal(await exitOf(gen1), 0);
    assert.equal(await get(port), `gen ${s2.pid}`, 'the successor serves');
    process.kill(s2.pid, 'SIGTERM');
    assert.ok(await gone(s2.pid));
    await gen1.exited;
  });

  // At the temporary name or the file itself.
  it('the pid file is not written through a symlink planted in its directory', async () => {
    const port = await freePort();
    const pidFile = tmpPath('app.pid');
    const victims = [tmpPath('victim-1'), tmpPath('victim-2')];
    for (const v of victims) fs.writeFileSync(v, 'precious\n');
    const gen1 = runFixture('upgrade-app', [String(port)], { env: { ...process.env, FDPASS_TEST_PIDFILE: pidFile } });
    await gen1.expect('serving');
    // The name the hand-over write used to take (`<pidFile>.<pid>.tmp`), and the pid file itself.
    fs.symlinkSync(victims[0]!, `${pidFile}.${gen1.pid}.tmp`);
    fs.rmSync(pidFile);
    fs.symlinkSync(victims[1]!, pidFile);
    gen1.proc.kill('SIGHUP');
    const s2 = await gen1.expect<{ pid: number }>('serving');
    assert.equal(await exitOf(gen1), 0);
    for (const v of victims) assert.equal(fs.readFileSync(v, 'latin1'), 'precious\n', `${path.basename(v)} was overwritten`);
    assert.ok(fs.lstatSync(pidFile).isFile(), 'the link was replaced, not followed');
    assert.equal(fs.readFileSync(pidFile, 'latin1'), `${s2.pid}\n`);
    assert.equal(fs.statSync(pidFile).mode & 0o777, 0o644);
    process.kill(s2.pid, 'SIGTERM');
    assert.ok(await gone(s2.pid));
    fs.rmSync(`${pidFile}.${gen1.pid}.tmp`);
    await gen1.exited;
  });

  // Nothing serves after.
  it('SIGTERM while the successor starts: close() kills it, the old one drains and exits 0', async () => {
    const port = await freePort();
    const gen1 = runFixture('upgrade-app', [String(port)], { env: { ...process.env, FDPASS_TEST_SLOW_READY: '4000' } });
    await gen1.expect('serving');
    const slow = get(port, '/slow');
    await gen1.expect('slow');
    gen1.proc.kill('SIGHUP');
    const up = await gen1.expect<{ pid: number }>('upgrade');
    await gen1.expect('inherited'); // the successor holds the listeners, not yet ready
    gen1.proc.kill('SIGTERM');
    const failed = await gen1.expect<{ code: string; pid: number }>('failed');
    assert.deepEqual([failed.code, failed.pid], ['ERR_FDPASS_CLOSED', up.pid]);
    assert.equal(await slow, `gen ${gen1.pid}`, 'the in-flight request was answered');
    assert.equal(await exitOf(gen1), 0);
    assert.ok(await gone(up.pid, 1000), 'the successor was killed');
    await sleep(4500); // past the moment the successor would have been ready
    await assert.rejects(get(port), { code: 'ECONNREFUSED' });
    await gen1.exited;
  });

  it('upgrade() after close() is refused with ERR_FDPASS_CLOSED', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const up = handoff.upgrader({ web: server }, { command: '/bin/sleep', args: ['30'], systemd: false });
    await up.close();
    await assert.rejects(up.upgrade(), { code: 'ERR_FDPASS_CLOSED' });
    assert.ok(server.listening);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('as PID 1 of a pid namespace, upgrade() is ERR_FDPASS_UPGRADE_PID1 and the app serves on', async function () {
    requires(this, unshare(['--pid', '--fork', '--mount-proc']));
    const port = await freePort();
    const app = spawnJson('unshare', [
      '--pid',
      '--fork',
      '--mount-proc',
      '--kill-child',
      process.execPath,
      fixture('upgrade-app'),
      String(port),
    ]);
    const serving = await app.expect<{ pid: number }>('serving');
    assert.equal(serving.pid, 1);
    await waitFor('a warning at start', () => app.stderr().includes('ERR_FDPASS_UPGRADE_PID1'));
    const node = Number(fs.readFileSync(`/proc/${app.pid}/task/${app.pid}/children`, 'latin1').trim());
    process.kill(node, 'SIGHUP');
    const failed = await app.expect<{ code: string; by: number }>('failed');
    assert.deepEqual([failed.code, failed.by], ['ERR_FDPASS_UPGRADE_PID1', 1]);
    assert.equal(await get(port), 'gen 1', 'still serving');
    process.kill(node, 'SIGTERM');
    assert.equal((await app.exited).code, 0);
  });

  // E.g. sh -c 'node app; ...'.
  it('as the child of a PID 1 that exits with it, upgrade() is refused and the app serves on', async function () {
    requires(this, unshare(['--pid', '--fork', '--mount-proc']));
    const port = await freePort();
    const script = `${JSON.stringify(process.execPath)} ${JSON.stringify(fixture('upgrade-app'))} ${port}; echo init exiting >&2`;
    const app = spawnJson('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'sh', '-c', script]);
    const serving = await app.expect<{ pid: number }>('serving');
    assert.notEqual(serving.pid, 1);
    await waitFor('a warning at start', () => app.stderr().includes('ERR_FDPASS_UPGRADE_PID1'));
    assert.match(app.stderr(), /parent is PID 1 of its pid namespace \(sh\)/);
    const childOf = (pid: number): number => Number(fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim());
    const node = childOf(childOf(app.pid));
    process.kill(node, 'SIGHUP');
    const failed = await app.expect<{ code: string; by: number }>('failed');
    assert.deepEqual([failed.code, failed.by], ['ERR_FDPASS_UPGRADE_PID1', serving.pid]);
    assert.equal(await get(port), `gen ${serving.pid}`, 'still serving');
    process.kill(node, 'SIGTERM');
    assert.equal((await app.exited).code, 0);
  });

  it('bad arguments are refused with Node-style errors', () => {
    assert.throws(() => handoff.upgrader({}), { code: 'ERR_INVALID_ARG_VALUE' });
    const s = net.createServer();
    assert.throws(() => handoff.upgrader({ web: s }, { signal: 'HUP' as NodeJS.Signals }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => handoff.upgrader({ web: s }, { args: 'x' as unknown as string[] }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => handoff.upgrader({ web: s }, { readyTimeout: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => handoff.upgrader({ web: s }, { pidFile: 42 as unknown as string }), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
    });
    assert.throws(() => handoff.upgrader({ web: s }, { pidFile: '' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => handoff.upgrader({ web: s }, { pidFile: 'a\0b' }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => handoff.upgrader({ web: s }, { pidFile: tmpPath('no-such-dir/app.pid') }), { code: 'ENOENT' });
  });
});
