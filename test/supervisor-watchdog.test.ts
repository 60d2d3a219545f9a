// `fdpass run` and the watchdog, without systemd (test/systemd-pid1.test.ts has the real one): each
// generation gets WATCHDOG_USEC and its own WATCHDOG_PID, a hung one is stopped and replaced, and the
// supervisor pings the NOTIFY_SOCKET above it itself.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { spawnJson } from './helpers/children';
import { APP, CLI, stopAll, supervise, track } from './helpers/fdpass-run';
import { get } from './helpers/http';
import { tmpPath } from './helpers/tmp';
import { upstreamNotifySocket } from './helpers/upstream-notify';
import { sleep, waitFor } from './helpers/wait';

interface Watchdog {
  gen: string;
  pid: number;
  running: boolean;
  env: { usec: string | null; pid: string | null };
}

describe('fdpass run: the watchdog', function () {
  this.timeout(60_000);
  const files: string[] = [];

  // Each test ends with stopAll() (the root hooks fail a test that leaves a child): SIGTERM, and the
  // supervisor stops its generations and exits.
  afterEach(async () => {
    await stopAll(); // after a failure
    for (const f of files.splice(0)) fs.rmSync(f, { force: true });
  });

  function withoutSystemd(): NodeJS.ProcessEnv {
    const env = { ...process.env };
    for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete env[k];
    return env;
  }

  it('--watchdog: a generation gets its own WATCHDOG_USEC/WATCHDOG_PID and serves while it pings', async () => {
    const sup = supervise(['-l', 'http=127.0.0.1:0', '--watchdog', '0.3'], [process.execPath, APP, 'watchdog'], { env: withoutSystemd() });
    const { port } = await sup.expect<{ port: number }>('ready');
    const dog = await sup.expect<Watchdog>('watchdog');
    assert.deepEqual(dog.env, { usec: '300000', pid: String(dog.pid) });
    assert.equal(dog.running, true, 'startWatchdog() must run in the generation');
    await sleep(1500); // five intervals
    assert.doesNotMatch(sup.stderr(), /missed its watchdog/);
    assert.equal(await get(port), `1 ${dog.pid}`);
    await stopAll();
  });

  it('--watchdog: a hung generation gets SIGABRT and is replaced; the listener stays open', async () => {
    const plan = tmpPath('plan.json');
    files.push(plan);
    fs.writeFileSync(plan, JSON.stringify({ 1: 'watchdog-hang' }));
    const sup = supervise(
      ['-l', 'http=127.0.0.1:0', '--watchdog', '0.3', '--stop-timeout', '5'],
      [process.execPath, APP, `plan:${plan}`, '1000'],
      { env: withoutSystemd() },
    );
    const { port } = await sup.expect<{ port: number }>('ready');
    const first = await sup.expect<Watchdog>('watchdog');
    fs.writeFileSync(plan, JSON.stringify({ 1: 'watchdog' })); // its replacement serves
    await sup.expect('hanging', 10_000);
    // Restarted in its slot, in the same generation.
    const second = await sup.expect<{ gen: string; pid: number }>('ready', 10_000);
    assert.equal(second.gen, '1');
    assert.notEqual(second.pid, first.pid);
    assert.match(
      sup.stderr(),
      new RegExp(`generation 1 \\(pid ${first.pid}\\) missed its watchdog \\(no WATCHDOG=1 for [0-9.]+ s; interval 0.3 s\\): SIGABRT`),
    );
    await waitFor('the exit of generation 1', () => /generation 1 \(pid \d+\) was killed by SIGABRT/.test(sup.stderr()));
    assert.equal(await get(port), `1 ${second.pid}`);
    await stopAll();
  });

  it('--watchdog: a wall-clock step (Date.now() an hour ahead) does not stop a pinging generation', async () => {
    const shift = tmpPath('shift.js');
    files.push(shift);
    // Loaded into the supervisor only: 1 s after its start, its wall clock jumps an hour ahead.
    fs.writeFileSync(
      shift,
      'const now = Date.now; let skew = 0;\nDate.now = () => now() + skew;\nsetTimeout(() => { skew = 3600e3; process.stderr.write("clock stepped\\n"); }, 1000).unref();\n',
    );
    const sup = spawnJson(
      process.execPath,
      ['-r', shift, CLI, 'run', '-l', 'http=127.0.0.1:0', '--watchdog', '0.3', '--', process.execPath, APP, 'watchdog'],
      {
        env: withoutSystemd(),
      },
    );
    track(sup);
    const { port } = await sup.expect<{ port: number }>('ready');
    const dog = await sup.expect<Watchdog>('watchdog');
    await waitFor('the clock step', () => sup.stderr().includes('clock stepped'));
    await sleep(1000); // three intervals
    assert.doesNotMatch(sup.stderr(), /missed its watchdog/);
    assert.equal(await get(port), `1 ${dog.pid}`);
    await stopAll();
  });

  // The generations are watched at that interval.
  it('under a NOTIFY_SOCKET with WATCHDOG_USEC the supervisor pings WATCHDOG=1 itself', async () => {
    const notifyPath = tmpPath('upstream.sock');
    files.push(notifyPath);
    const { upstream, got } = await upstreamNotifySocket(notifyPath);
    try {
      const env = { ...withoutSystemd(), NOTIFY_SOCKET: notifyPath, WATCHDOG_USEC: '400000' };
      const sup = supervise(['-l', 'http=127.0.0.1:0'], [process.execPath, APP, 'watchdog'], { env });
      const dog = await sup.expect<Watchdog>('watchdog');
      assert.deepEqual(dog.env, { usec: '400000', pid: String(dog.pid) });
      const t0 = got.length;
      await sleep(1400);
      const pings = got.slice(t0).filter((m) => m.text === 'WATCHDOG=1');
      assert.ok(pings.length >= 4, `${pings.length} pings in 1.4 s at an interval of 0.4 s: ${JSON.stringify(got)}`);
      assert.deepEqual(new Set(pings.map((p) => p.pid)), new Set([sup.pid]), 'from the supervisor itself');
      assert.ok(got.some((m) => m.text.includes('READY=1') && m.text.includes(`MAINPID=${sup.pid}`)));
      assert.doesNotMatch(sup.stderr(), /missed its watchdog/);
    } finally {
      await stopAll();
      upstream.close();
    }
  });

  it('--watchdog 0 under WatchdogSec=: generations are not watched (nor told), the supervisor still pings', async () => {
    const notifyPath = tmpPath('upstream.sock');
    files.push(notifyPath);
    const { upstream, got } = await upstreamNotifySocket(notifyPath);
    try {
      const env = { ...withoutSystemd(), NOTIFY_SOCKET: notifyPath, WATCHDOG_USEC: '300000' };
      const sup = supervise(['-l', 'http=127.0.0.1:0', '--watchdog', '0'], [process.execPath, APP, 'watchdog'], { env });
      const dog = await sup.expect<Watchdog>('watchdog');
      assert.deepEqual(dog.env, { usec: null, pid: null });
      assert.equal(dog.running, false);
      await sleep(1000);
      assert.ok(got.filter((m) => m.text === 'WATCHDOG=1').length >= 4, JSON.stringify(got));
      assert.doesNotMatch(sup.stderr(), /missed its watchdog/);
    } finally {
      await stopAll();
      upstream.close();
    }
  });

  // Sent with systemd-notify.
  it('WATCHDOG=trigger from a generation without a watchdog: SIGABRT, and it is replaced', async () => {
    const marker = tmpPath('triggered');
    files.push(marker);
    const script = [
      'systemd-notify --ready',
      // The first start asks for its own watchdog to fire; its replacement just serves.
      `[ -e ${marker} ] || { : > ${marker}; systemd-notify WATCHDOG=trigger; }`,
      'exec sleep 60',
    ].join('; ');
    const sup = supervise(['--stop-timeout', '5'], ['/bin/sh', '-c', script], { env: withoutSystemd() });
    await waitFor('the restart', () => (sup.stderr().match(/started generation 1 /g) ?? []).length === 2);
    assert.match(sup.stderr(), /generation 1 \(pid \d+\) sent WATCHDOG=trigger: SIGABRT/);
    assert.match(sup.stderr(), /generation 1 \(pid \d+\) was killed by SIGABRT/);
    await stopAll();
  });

  it('a generation repeating a bad WATCHDOG_USEC= is logged once, not at every message', async () => {
    const script = [
      'systemd-notify --ready',
      'for i in 1 2 3 4 5; do systemd-notify WATCHDOG_USEC=abc; done',
      'echo \'{"event":"sent"}\'',
      'exec sleep 60',
    ].join('; ');
    const sup = supervise(['--watchdog', '30'], ['/bin/sh', '-c', script], { env: withoutSystemd() });
    await sup.expect('sent');
    await waitFor('the log line', () => /WATCHDOG_USEC=abc ignored/.test(sup.stderr()));
    await sleep(200);
    assert.equal(sup.stderr().match(/WATCHDOG_USEC=abc ignored/g)?.length, 1, sup.stderr());
    await stopAll();
  });

  it('--watchdog: a usage error for a bad value', async () => {
    for (const [value, re] of [
      ['=-1', /--watchdog: '-1' is not a number of seconds/],
      ['=0.0001', /--watchdog: '0.0001' is under a millisecond/],
      ['=0x10', /--watchdog: '0x10' is not a number of seconds/],
      ['=1e1', /--watchdog: '1e1' is not a number of seconds/],
    ] as const) {
      const c = spawnJson(process.execPath, [CLI, 'run', `--watchdog${value}`, '--', 'true']);
      assert.equal((await c.exited).code, 2, value);
      assert.match(c.stderr(), re);
    }
  });
});
