// `fdpass run` when things fail around it: spawns that fail (E2BIG, EMFILE), a log reader that went
// away, a command that cannot run, `fdpass reload` with a bad pid. (An fd store too big to pass on:
// supervisor-fd-store.test.ts.)
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exitWithin, processState, spawnJson, watchJson } from './helpers/children';
import { get } from './helpers/http';
import { NOBODY } from './helpers/foreign';
import { python3Systemd, requires, root } from './helpers/requires';
import { APP, CLI, logged, reloadCmd, stop, stopLeftovers, supervise } from './helpers/fdpass-run';
import { tmpPath } from './helpers/tmp';

const INDEX = path.join(__dirname, '..', '..', 'dist', 'index.js');

function softNofile(pid: number): string {
  return /^Max open files\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'latin1'))![1]!;
}

// What execve(2) counts (fs/exec.c): the file name, each argument and NAME=value string with its NUL,
// and a pointer for each; within min(RLIMIT_STACK / 4, 6 MiB).
function execBytes(argv: string[], env: NodeJS.ProcessEnv): number {
  const vars = Object.entries(env).filter(([, v]) => v !== undefined);
  const strings = [argv[0]!, ...argv, ...vars.map(([k, v]) => `${k}=${v}`)];
  return strings.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0) + (argv.length + vars.length) * 8;
}

function argMax(): number {
  const stack = /^Max stack size\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'latin1'))![1]!;
  return Math.max(Math.min(stack === 'unlimited' ? Infinity : Number(stack) / 4, 6 * 1024 * 1024), 128 * 1024);
}

describe('fdpass run when things fail', function () {
  this.timeout(60_000);
  afterEach(stopLeftovers);

  // E2BIG: an environment at the kernel limit; fdpass run gives up at the start limit.
  it('a spawn that throws (E2BIG) is a failed start, not a crash', async () => {
    // fdpass run's own exec fits with 64 bytes to spare; a generation's (a shell and its script,
    // NOTIFY_SOCKET, LISTEN_*) does not.
    const argv = [process.execPath, CLI, 'run', '-l', '127.0.0.1:0', '--', 'true'];
    const env: NodeJS.ProcessEnv = { ...process.env };
    let pad = argMax() - 64 - execBytes(argv, env);
    for (let i = 0; pad > 0; i++) {
      const name = `FDPASS_TEST_PAD${i}`;
      const len = Math.min(pad - name.length - 2 - 8, 100_000);
      env[name] = 'x'.repeat(Math.max(len, 0));
      pad -= name.length + 2 + 8 + Math.max(len, 0);
    }
    const sup = supervise(['-l', '127.0.0.1:0'], ['true'], { env });
    const { code } = await exitWithin(sup, 20_000, 'fdpass run');
    assert.match(sup.stderr(), /supervising true/, 'fdpass run itself started');
    assert.match(
      sup.stderr(),
      /generation 1 could not be started: spawn E2BIG \(its arguments and environment exceed the kernel's limit\)/,
    );
    // A failed start is restarted in its slot, within generation 1, until the start limit.
    assert.equal((sup.stderr().match(/generation 1 could not be started: spawn E2BIG/g) ?? []).length, 5, sup.stderr());
    assert.match(sup.stderr(), /generation 1 could not be started; giving up: 5 starts within 10 s/);
    assert.equal(code, 127, sup.stderr().slice(-2000));
  });

  // fdpass reload reports it; the next reload works.
  it('a spawn that fails asynchronously (EMFILE) in a reload is a reported rollback', async () => {
    const control = tmpPath('ctl');
    const sup = supervise(['-l', 'http=127.0.0.1:0', '--control', control], [process.execPath, APP]);
    const { port } = await sup.expect<{ port: number }>('ready');
    await logged(sup, /generation 1 \(pid \d+\) is ready/);
    // One descriptor left: the control connection takes it, and the spawn's pipe gets EMFILE.
    const soft = softNofile(sup.pid);
    const open = fs.readdirSync(`/proc/${sup.pid}/fd`).length;
    execFileSync('prlimit', ['--pid', String(sup.pid), `--nofile=${open + 1}:`]);
    const r = await reloadCmd(control);
    execFileSync('prlimit', ['--pid', String(sup.pid), `--nofile=${soft}:`]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /^fdpass reload: rolled back: generation 2 could not be started: spawn \/bin\/sh EMFILE; generation 1 \(pid \d+\) keeps serving\n$/,
    );
    assert.match(await get(port), /^1 /);
    const r2 = await reloadCmd(control);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(await get(port), /^3 /);
    assert.equal(await stop(sup), 0);
  });

  it('its log reader going away (stderr: a closed pipe) does not stop it: it serves and reloads on', async () => {
    const sup = supervise(['-l', 'http=127.0.0.1:0'], [process.execPath, APP]);
    const { port } = await sup.expect<{ port: number }>('ready');
    await logged(sup, /generation 1 \(pid \d+\) is ready/);
    sup.proc.stderr!.destroy(); // the only reader: the next log line is EPIPE
    for (const gen of ['2', '3']) {
      sup.proc.kill('SIGHUP'); // each reload logs several lines
      const ready = await sup.expect<{ gen: string }>('ready');
      assert.equal(ready.gen, gen);
      // The old generation answers until the supervisor, done with the reload, stops it.
      let body = await get(port);
      for (let i = 0; i < 100 && !body.startsWith(`${gen} `); i++) {
        await new Promise((r) => setTimeout(r, 50));
        body = await get(port);
      }
      assert.match(body, new RegExp(`^${gen} `));
    }
    await new Promise((r) => setTimeout(r, 200)); // the lines of the last reload: written or dropped
    assert.notEqual(processState(sup.pid), undefined, 'fdpass run exited');
    assert.equal(await stop(sup), 0);
  });

  for (const kind of ['socket', 'pipe'] as const) {
    it(`its log reader that stops reading (stderr: a full ${kind}) does not block it: a reload is answered`, async () => {
      const control = tmpPath('ctl');
      // The generation fills the shared stderr from the background (head blocks once it is full),
      // then serves. 'socket': Node's stdio pipe (a socketpair), no longer read; 'pipe': a FIFO never read.
      const fill = `head -c 300000 /dev/zero >&2 & exec "${process.execPath}" "${APP}"`;
      let fifo: { r: number; w: number } | undefined;
      if (kind === 'pipe') {
        execFileSync('mkfifo', [tmpPath('log')]);
        const r = fs.openSync(tmpPath('log'), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
        fifo = { r, w: fs.openSync(tmpPath('log'), 'w') };
      }
      const sup = supervise(['-l', 'http=127.0.0.1:0', '--control', control], ['/bin/sh', '-c', fill], {
        ...(fifo !== undefined ? { stdio: ['pipe', 'pipe', fifo.w] } : {}),
      });
      sup.proc.stderr?.pause();
      try {
        const { port } = await sup.expect<{ port: number }>('ready');
        const r = await reloadCmd(control); // logs several lines while stderr is full
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^fdpass reload: generation 2 \(pid \d+\) serving/);
        assert.equal((await sup.expect<{ gen: string }>('ready')).gen, '2');
        let body = await get(port);
        for (let i = 0; i < 100 && !body.startsWith('2 '); i++) {
          await new Promise((res) => setTimeout(res, 50));
          body = await get(port);
        }
        assert.match(body, /^2 /);
        sup.proc.stderr?.resume();
        assert.equal(await stop(sup), 0);
      } finally {
        if (fifo !== undefined) {
          fs.closeSync(fifo.w);
          fs.closeSync(fifo.r);
        }
      }
    });
  }

  // An unreachable NOTIFY_SOCKET above it is logged, a reload that worked is not.
  it('--quiet keeps the lines marked as failures, whatever their words', async () => {
    const control = tmpPath('ctl');
    const sup = supervise(['--quiet', '-l', '127.0.0.1:0', '--control', control], [process.execPath, APP], {
      env: { ...process.env, NOTIFY_SOCKET: '/nonexistent/notify' },
    });
    await logged(sup, /notifying systemd \(\/nonexistent\/notify\): connect ENOENT/);
    const r = await reloadCmd(control);
    assert.equal(r.code, 0, r.stderr);
    await logged(sup, /notifying systemd/, 3); // READY=1, RELOADING=1, READY=1 again
    assert.equal(await stop(sup), 0);
    assert.doesNotMatch(sup.stderr(), /supervising|started generation|is ready|reload|stopping/, sup.stderr());
  });

  it('a command that is not found is started 5 times, then fdpass run exits 127 with the reason', async () => {
    const sup = supervise(['-l', '127.0.0.1:0'], ['/nonexistent/command']);
    const { code } = await exitWithin(sup, 20_000, 'fdpass run of a missing command');
    assert.equal(code, 127);
    assert.equal((sup.stderr().match(/started generation/g) ?? []).length, 5, sup.stderr());
    assert.match(
      sup.stderr(),
      /generation 1 \(pid \d+\) exited with code 127 before it was ready; giving up: 5 starts within 10 s \(--start-limit-burst 5, --start-limit-interval 10\)\n.*start limit hit: stopping\n/,
    );
  });

  // It exits 1 when the last exited 0; 0 disables; bad values are usage errors.
  it('--start-limit-burst/--start-limit-interval: 2 starts in 1 s, then fdpass run exits', async () => {
    const limited = supervise(['--start-limit-burst', '2', '--start-limit-interval', '1'], ['/bin/sh', '-c', 'exit 0']);
    assert.equal((await exitWithin(limited, 20_000, 'fdpass run --start-limit-burst 2')).code, 1);
    assert.equal((limited.stderr().match(/started generation/g) ?? []).length, 2, limited.stderr());
    assert.match(limited.stderr(), /giving up: 2 starts within 1 s \(--start-limit-burst 2, --start-limit-interval 1\)/);
    for (const off of [
      ['--start-limit-burst', '0'],
      ['--start-limit-interval', '0'],
    ]) {
      const sup = supervise(off, ['/bin/sh', '-c', 'exit 3']);
      // backoff: 0, 100, 200, 400, 800, 1600 ms; stopped in a backoff, so the status is the last exit's
      // (stopped while a generation runs, it would be that generation's: 143 after the SIGTERM)
      await logged(sup, /generation 1 \(pid \d+\) exited with code 3/, 7);
      assert.doesNotMatch(sup.stderr(), /giving up/);
      assert.equal(await stop(sup), 3);
    }
    const usage: Array<[string, RegExp]> = [
      ['--start-limit-burst=-1', /--start-limit-burst: '-1' is not a whole number/],
      ['--start-limit-burst=1000001', /--start-limit-burst: '1000001' is out of range/],
      ['--start-limit-burst=five', /--start-limit-burst: 'five' is not a whole number/],
      ['--start-limit-burst=2.5', /--start-limit-burst: '2\.5' is not a whole number/],
      ['--start-limit-interval=-1', /--start-limit-interval: '-1' is not a number of seconds/],
      ['--start-limit-interval=1e12', /--start-limit-interval: '1e12' is not a number of seconds/],
      ['--start-limit-interval=soon', /--start-limit-interval: 'soon' is not a number of seconds/],
    ];
    for (const [arg, re] of usage) {
      const c = spawnJson(process.execPath, [CLI, 'run', arg, '--', 'true']);
      assert.equal((await c.exited).code, 2, arg);
      assert.match(c.stderr(), re);
    }
  });

  // As from systemd: libsystemd and fdpass listenFds() find no descriptors.
  it('with no listener, a generation gets no LISTEN_* variable at all', async function () {
    requires(this, python3Systemd());
    const py = [
      'import json, os, signal, sys, time, systemd.daemon as d',
      'signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))',
      "env = {k: v for k, v in os.environ.items() if k.startswith('LISTEN_')}",
      "print(json.dumps({'event': 'env', 'env': env, 'fds': d.listen_fds()}), flush=True)",
      "d.notify('READY=1')",
      'time.sleep(60)',
    ].join('\n');
    const node = [
      `const { listenFds, notify } = require(${JSON.stringify(INDEX)});`,
      "const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('LISTEN_')));",
      "console.log(JSON.stringify({ event: 'env', env, fds: listenFds() }));",
      "process.once('SIGTERM', () => process.exit(0));",
      'void notify({ ready: true }).then(() => setInterval(() => {}, 1000));',
    ].join('\n');
    for (const command of [
      ['/usr/bin/python3', '-c', py],
      [process.execPath, '-e', node],
    ]) {
      const sup = supervise([], command);
      const got = await sup.expect<{ env: Record<string, string>; fds: unknown[] }>('env');
      assert.deepEqual(got.env, {}, command[0]);
      assert.deepEqual(got.fds, [], command[0]);
      await logged(sup, /generation 1 \(pid \d+\) is ready/);
      assert.equal(await stop(sup), 0, sup.stderr());
    }
  });

  // 0, a negative, huge or non-numeric-looking pid; the caller's process group gets no SIGHUP.
  it('fdpass reload of an impossible pid is a usage error (exit 2) and signals no one', async () => {
    // In a process group of its own, with a shell that reports a SIGHUP: kill(0) would reach both.
    const sh = watchJson(
      spawn('/bin/sh', ['-c', 'trap "echo got-SIGHUP" HUP; "$0" "$1" reload 0; echo "status $?"', process.execPath, CLI], {
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );
    const lines: string[] = [];
    for (;;) {
      const m = await sh.next<{ event: string; text: string }>();
      lines.push(m.text);
      if (m.text.startsWith('status')) break;
    }
    await sh.exited;
    assert.deepEqual(lines, ['status 2']);
    assert.match(sh.stderr(), /fdpass: reload: '0' is not a process id \(1 to \d+\); a control path that looks like a number: \.\/0/);
    const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'latin1'));
    for (const target of ['-1', '-4242', '+0', '99999999999999999999', String(pidMax + 1)]) {
      const r = await reloadCmd(target);
      assert.equal(r.code, 2, target);
      assert.ok(r.stderr.includes(`reload: '${target}' is not a process id`), r.stderr);
    }
  });

  // With --control it reports the outcome, without it says it cannot; no such pid fails.
  it('fdpass reload PID signals only an fdpass run', async () => {
    // Not an fdpass run: not signalled (sleep would die of SIGHUP).
    const sleeper = spawnJson('sleep', ['30']);
    const other = await reloadCmd(String(sleeper.pid));
    assert.equal(other.code, 1);
    assert.equal(other.stderr, `fdpass reload: pid ${sleeper.pid} is not an fdpass run process (it is 'sleep 30'): not signalled\n`);
    assert.equal(processState(sleeper.pid) !== undefined && processState(sleeper.pid) !== 'Z', true, 'sleep was signalled');
    sleeper.proc.kill('SIGKILL');
    const { pid: gone } = sleeper;
    await sleeper.exited;
    const none = await reloadCmd(String(gone));
    assert.equal(none.code, 1);
    assert.equal(none.stderr, `fdpass reload: no process ${gone}\n`);

    const control = tmpPath('ctl');
    const withControl = supervise(['-l', 'http=127.0.0.1:0', '--control', control], [process.execPath, APP]);
    await withControl.expect('ready');
    const r = await reloadCmd(String(withControl.pid));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^fdpass reload: generation 2 \(pid \d+\) serving; generation 1 \(pid \d+\) sent SIGTERM\n$/);
    assert.equal(await stop(withControl), 0);

    const bare = supervise(['-l', 'http=127.0.0.1:0'], [process.execPath, APP]);
    await bare.expect('ready');
    const s = await reloadCmd(String(bare.pid));
    assert.equal(s.code, 0, s.stderr);
    assert.equal(
      s.stdout,
      `fdpass reload: sent SIGHUP to fdpass run (pid ${bare.pid}); without a --control socket the outcome is only in its log\n`,
    );
    await logged(bare, /reload \(SIGHUP\)[^\n]*\n[\s\S]*reload done: generation 2/);
    assert.equal(await stop(bare), 0);
  });

  it("fdpass reload PID of another user's fdpass run: EPERM, exit 1, no reload", async function () {
    requires(this, root('running the caller as nobody'));
    const sup = supervise(['-l', 'http=127.0.0.1:0'], [process.execPath, APP]);
    await sup.expect('ready');
    const r = await reloadCmd(String(sup.pid), { uid: NOBODY, gid: NOBODY });
    assert.equal(r.code, 1, r.stdout);
    assert.equal(r.stderr, `fdpass reload: cannot signal pid ${sup.pid} (EPERM)\n`);
    await new Promise((res) => setTimeout(res, 300));
    assert.doesNotMatch(sup.stderr(), /reload \(/);
    assert.equal(await stop(sup), 0);
  });
});
