// `fdpass run --workers N`: N processes per generation, reloads that replace all of them or none,
// a crashed worker restarted in its slot, `fdpass status`.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Channel, connect, listen } from 'fdpass';
import { spawnJson } from './helpers/children';
import { docScenario } from './helpers/docs';
import { APP, CLI, childPids, logged, reloadCmd, stop, stopLeftovers, supervise, track } from './helpers/fdpass-run';
import { get, load, type LoadResult } from './helpers/http';
import { python3Systemd, requires, root } from './helpers/requires';
import { NOBODY } from './helpers/foreign';
import { tmpPath } from './helpers/tmp';
import { upstreamNotifySocket } from './helpers/upstream-notify';
import { waitFor } from './helpers/wait';
import { freePort } from './helpers/net';

const PY_APP = path.join(__dirname, '..', '..', 'test', 'fixtures', 'notify_app.py');

interface WorkerProc {
  pid: number;
  generation: number;
  worker: number;
}

// The supervisor's workers: its children that carry FDPASS_GENERATION (not the lifeline).
function workersOf(supPid: number): WorkerProc[] {
  const out: WorkerProc[] = [];
  for (const pid of childPids(supPid)) {
    try {
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      const value = (name: string): number | undefined => {
        const e = env.find((x) => x.startsWith(`${name}=`));
        return e === undefined ? undefined : Number(e.slice(name.length + 1));
      };
      const generation = value('FDPASS_GENERATION');
      if (generation !== undefined) out.push({ pid, generation, worker: value('FDPASS_WORKER')! });
    } catch {
      // gone
    }
  }
  return out;
}

/** Samples the workers every 10 ms until stop(): the most alive at once, and the generations seen together. */
function sampleWorkers(supPid: number): { stop(): { most: number; generationsAtOnce: number } } {
  let most = 0;
  let generationsAtOnce = 0;
  const timer = setInterval(() => {
    const ws = workersOf(supPid);
    most = Math.max(most, ws.length);
    generationsAtOnce = Math.max(generationsAtOnce, new Set(ws.map((w) => w.generation)).size);
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return { most, generationsAtOnce };
    },
  };
}

function noErrors(r: LoadResult, what: string): void {
  assert.deepEqual(r.errors.slice(0, 10), [], `${what}: ${r.errors.length} failed requests`);
  assert.ok(r.ok > 0, `${what}: no request was served`);
}

/** `fdpass status ARGS`: its exit code and output. */
async function status(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = spawnJson(process.execPath, [CLI, 'status', ...args]);
  let stdout = '';
  c.proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  // 'exit' can come before the last of a long output is read.
  const [{ code }] = await Promise.all([c.exited, once(c.proc.stdout!, 'close')]);
  return { code, stdout, stderr: c.stderr() };
}

/** The socket inode of `pid`'s fd `fd` (socket:[N]). */
function socketInode(pid: number, fd: number): string {
  return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
}

describe('fdpass run --workers', function () {
  this.timeout(120_000);
  afterEach(stopLeftovers);

  for (const workers of [2, 4]) {
    it(`${workers} workers: 10 reloads under load, 0 failed requests, at most ${2 * workers} workers alive`, async () => {
      const control = tmpPath('ctl');
      const sup = supervise(
        ['-n', String(workers), '--reload-concurrency', '2', '-l', 'http=127.0.0.1:0', '--control', control],
        [process.execPath, APP],
      );
      const started = new Map<string, { worker: string; workers: string; listenPid: string; pid: number }>();
      for (let i = 0; i < workers; i++) {
        const s = await sup.expect<{ worker: string; workers: string; listenPid: string; pid: number }>('started');
        started.set(s.worker, s);
      }
      assert.deepEqual(
        [...started.keys()].sort(),
        Array.from({ length: workers }, (_, i) => String(i)),
      );
      for (const s of started.values()) {
        assert.equal(s.workers, String(workers));
        assert.equal(s.listenPid, String(s.pid), 'LISTEN_PID is each worker its own');
      }
      await logged(sup, /is ready/, workers);
      const port = Number(/http=tcp:127\.0\.0\.1:(\d+)/.exec(sup.stderr())![1]);
      const sampler = sampleWorkers(sup.pid);
      const keepAlive = load(port, { workers: 4, keepAlive: true, maxSeconds: 90 });
      const fresh = load(port, { workers: 4, keepAlive: false, maxSeconds: 90 });
      for (let i = 0; i < 10; i++) {
        const r = await reloadCmd(control);
        assert.equal(r.code, 0, r.stderr);
        assert.match(
          r.stdout,
          new RegExp(`generation ${i + 2} \\(${workers} workers\\) serving; generation ${i + 1} \\(${workers} workers\\) sent SIGTERM`),
        );
      }
      await new Promise((r) => setTimeout(r, 300));
      const [ka, fr] = await Promise.all([keepAlive.stop(), fresh.stop()]);
      const seen = sampler.stop();
      noErrors(ka, 'keep-alive');
      noErrors(fr, 'new connections');
      assert.ok(seen.most <= 2 * workers, `${seen.most} workers alive at once`);
      assert.ok(seen.generationsAtOnce <= 2, `${seen.generationsAtOnce} generations alive at once`);
      // The last generation's workers all serve.
      const last = workersOf(sup.pid).filter((w) => w.generation === 11);
      assert.equal(last.length, workers);
      const answered = new Set<string>();
      for (let i = 0; i < 200 && answered.size < workers; i++) answered.add(await get(port));
      assert.ok(
        [...answered].every((b) => b.startsWith('11 ')),
        [...answered].join(', '),
      );
      assert.equal(await stop(sup), 0);
    });
  }

  it('a reload whose worker 3 of 4 fails is rolled back: the 4 old workers serve on, 0 failed requests', async () => {
    const control = tmpPath('ctl');
    const plan = tmpPath('plan.json');
    fs.writeFileSync(plan, JSON.stringify({ '2.2': 'exit-before-ready' }));
    try {
      const sup = supervise(
        ['-n', '4', '--reload-concurrency', '2', '-l', 'http=127.0.0.1:0', '--control', control],
        [process.execPath, APP, `plan:${plan}`],
      );
      await logged(sup, /is ready/, 4);
      const port = Number(/http=tcp:127\.0\.0\.1:(\d+)/.exec(sup.stderr())![1]);
      const old = workersOf(sup.pid);
      assert.equal(old.length, 4);
      const fresh = load(port, { workers: 4, keepAlive: false, maxSeconds: 60 });
      const keepAlive = load(port, { workers: 4, keepAlive: true, maxSeconds: 60 });
      const r = await reloadCmd(control);
      assert.equal(r.code, 1, r.stdout);
      assert.match(
        r.stderr,
        /^fdpass reload: rolled back: generation 2 worker 2 \(pid \d+\) exited with code 1 before it was ready; generation 1 \(4 workers\) keeps serving\n$/,
      );
      // Every new worker was stopped and reaped; the old ones are the same processes.
      assert.deepEqual(
        workersOf(sup.pid)
          .map((w) => w.pid)
          .sort(),
        old.map((w) => w.pid).sort(),
      );
      const [fr, ka] = await Promise.all([fresh.stop(), keepAlive.stop()]);
      noErrors(fr, 'new connections');
      noErrors(ka, 'keep-alive');
      // New workers that were ready served next to the old ones until the rollback; now only the old serve.
      for (let i = 0; i < 20; i++) assert.match(await get(port), /^1 /);
      const s = await status(control, '--json');
      const st = JSON.parse(s.stdout) as {
        generations: Array<{ id: number; role: string; workers: Array<{ state: string }> }>;
        lastReload: { ok: boolean };
      };
      assert.deepEqual(
        st.generations.map((g) => [g.id, g.role, g.workers.map((w) => w.state).join()]),
        [[1, 'serving', 'ready,ready,ready,ready']],
      );
      assert.equal(st.lastReload.ok, false);
      // The next reload works (the plan fails generation 2 only).
      const again = await reloadCmd(control);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /generation 3 \(4 workers\) serving/);
      assert.equal(await stop(sup), 0);
    } finally {
      fs.rmSync(plan, { force: true });
    }
  });

  it('a reload asked while a failed reload is rolled back is refused: no third generation, the replaced one is not restarted', async () => {
    const control = tmpPath('ctl');
    const plan = tmpPath('plan.json');
    // Generation 2: worker 0 is ready and ignores SIGTERM, worker 1 is never ready: the rollback
    // waits --stop-timeout for worker 0.
    fs.writeFileSync(plan, JSON.stringify({ '2.0': 'ignore-term', '2.1': 'never-ready' }));
    try {
      const sup = supervise(
        [
          '-n',
          '2',
          '--reload-concurrency',
          '2',
          '--ready-timeout',
          '5',
          '--stop-timeout',
          '3',
          '-l',
          'http=127.0.0.1:0',
          '--control',
          control,
        ],
        [process.execPath, APP, `plan:${plan}`],
      );
      await logged(sup, /is ready/, 2);
      const first = workersOf(sup.pid)
        .map((w) => w.pid)
        .sort();
      const failing = reloadCmd(control);
      await sup.expect('term-ignored', 20_000); // the rollback stopped generation 2's worker 0 and waits for it
      const during = await reloadCmd(control);
      assert.equal(during.code, 1, during.stdout);
      assert.equal(during.stderr, 'fdpass reload: refused: a reload is in progress (generation 2 (2 workers) is being rolled back)\n');
      const failed = await failing;
      assert.equal(failed.code, 1, failed.stdout);
      assert.match(
        failed.stderr,
        /^fdpass reload: rolled back: generation 2 worker 1 \(pid \d+\) was not ready within 5 s; generation 1 \(2 workers\) keeps serving\n$/,
      );
      assert.deepEqual(
        workersOf(sup.pid)
          .map((w) => w.pid)
          .sort(),
        first,
      );
      // The next reload replaces generation 1, which then stays stopped.
      const next = await reloadCmd(control);
      assert.equal(next.code, 0, next.stderr);
      assert.match(next.stdout, /^fdpass reload: generation 3 \(2 workers\) serving; generation 1 \(2 workers\) sent SIGTERM\n$/);
      await logged(sup, /generation 1 worker \d \(pid \d+\) .* after SIGTERM \(stopped\)/, 2);
      assert.deepEqual(
        workersOf(sup.pid)
          .map((w) => `${w.generation}.${w.worker}`)
          .sort(),
        ['3.0', '3.1'],
      );
      assert.equal(sup.stderr().match(/started generation 1 worker/g)!.length, 2, 'generation 1 was never restarted');
      assert.equal(await stop(sup), 0);
    } finally {
      fs.rmSync(plan, { force: true });
    }
  });

  it('a generation restarted by a rollback is waited for again: a later reload starts only once it has stopped', async () => {
    const control = tmpPath('ctl');
    const plan = tmpPath('plan.json');
    // Generation 1 ignores SIGTERM (it stops at --stop-timeout's SIGKILL); generation 2 is never ready.
    fs.writeFileSync(plan, JSON.stringify({ '1': 'ignore-term', '2': 'never-ready' }));
    try {
      const sup = supervise(
        ['--ready-timeout', '3', '--stop-timeout', '2', '-l', 'http=127.0.0.1:0', '--control', control],
        [process.execPath, APP, `plan:${plan}`],
      );
      const { pid: crashed } = await sup.expect<{ pid: number }>('ready');
      const failing = reloadCmd(control);
      await logged(sup, /started generation 2 \(pid \d+\)/);
      process.kill(crashed, 'SIGKILL'); // the only worker of generation 1 dies during the reload: it empties
      const failed = await failing;
      assert.equal(failed.code, 1, failed.stdout);
      assert.match(failed.stderr, /rolled back: generation 2 \(pid \d+\) was not ready within 3 s; generation 1 restarts\n$/);
      // The rollback restarts generation 1 in its slot; the next reload replaces it.
      const { pid: restarted } = await sup.expect<{ pid: number; gen: string }>('ready');
      assert.notEqual(restarted, crashed);
      const replace = await reloadCmd(control);
      assert.equal(replace.code, 0, replace.stderr);
      assert.match(replace.stdout, new RegExp(`generation 3 \\(pid \\d+\\) serving; generation 1 \\(pid ${restarted}\\) sent SIGTERM`));
      // The reload after that waits for generation 1 to stop (SIGKILL at --stop-timeout) before it
      // starts generation 4: never three generations.
      const after = await reloadCmd(control);
      assert.equal(after.code, 0, after.stderr);
      const log = sup.stderr();
      const waits = log.indexOf(`waiting for generation 1 (pid ${restarted}) to stop first`);
      const stopped = log.indexOf(`generation 1 (pid ${restarted}) was killed by SIGKILL after SIGTERM (stopped)`);
      const starts = log.indexOf('starting the next generation next to generation 3');
      assert.ok(waits >= 0 && stopped > waits && starts > stopped, log);
      assert.equal(await stop(sup), 0);
    } finally {
      fs.rmSync(plan, { force: true });
    }
  });

  it("a slot that hits the start limit: fdpass run stops the other workers and exits with that slot's status", async () => {
    // Worker 1 exits 7 at every start; worker 0 serves until it is stopped.
    const sup = supervise(
      ['-n', '2', '--start-limit-burst', '2', '--max-backoff', '0.1', '-l', 'http=127.0.0.1:0'],
      ['/bin/sh', '-c', `[ "$FDPASS_WORKER" = 1 ] && exit 7; exec "${process.execPath}" "${APP}"`],
    );
    assert.equal((await sup.exited).code, 7, sup.stderr());
    assert.match(sup.stderr(), /generation 1 worker 1 \(pid \d+\) exited with code 7 before it was ready; giving up: 2 starts within 10 s/);
    assert.match(sup.stderr(), /start limit hit: stopping\n.*generation 1 worker 0 \(pid \d+\) .* after SIGTERM \(stopped\)\n$/);
  });

  it('stopped with several workers, fdpass run exits with the first failing worker in slot order', async () => {
    // Worker 1 ignores SIGTERM and dies of the SIGKILL after --stop-timeout; worker 0 exits 0.
    const plan = tmpPath('plan.json');
    fs.writeFileSync(plan, JSON.stringify({ '1.1': 'ignore-term' }));
    try {
      const sup = supervise(['-n', '2', '--stop-timeout', '1', '-l', 'http=127.0.0.1:0'], [process.execPath, APP, `plan:${plan}`]);
      await logged(sup, /all 2 workers ready/);
      assert.equal(await stop(sup), 128 + 9, sup.stderr());
      assert.match(sup.stderr(), /generation 1 worker 0 \(pid \d+\) exited with code 0 after SIGTERM/);
    } finally {
      fs.rmSync(plan, { force: true });
    }
  });

  it('fdpass status reads a status larger than a default message (hundreds of workers)', async () => {
    const control = tmpPath('ctl');
    // A control socket that answers as a supervisor of 1024 workers would during a reload.
    const worker = (slot: number) => ({
      slot,
      pid: 100_000 + slot,
      state: 'ready',
      uptimeMs: 1_234_567,
      restarts: 0,
      rssBytes: 52_428_800,
      cpuMs: 1234,
    });
    const answer = {
      pid: process.pid,
      command: ['app'],
      uptimeMs: 1000,
      rssBytes: 50_000_000,
      workers: 1024,
      listeners: [{ name: 'http', address: 'tcp:127.0.0.1:8080' }],
      generations: [
        { id: 2, role: 'serving', workers: Array.from({ length: 1024 }, (_, i) => worker(i)) },
        { id: 3, role: 'reload', workers: Array.from({ length: 512 }, (_, i) => worker(i)) },
      ],
      lastReload: null,
    };
    const data = Buffer.from(JSON.stringify(answer));
    assert.ok(data.length > 64 * 1024, `${data.length} bytes`);
    const server = await listen(control, { type: 'seqpacket' });
    server.on('connection', (ch: Channel) => {
      ch.once('message', () => void ch.send({ data }).finally(() => ch.close()));
    });
    try {
      const r = await status(control, '--json');
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout) as typeof answer;
      assert.deepEqual(
        s.generations.map((g) => [g.id, g.workers.length]),
        [
          [2, 1024],
          [3, 512],
        ],
      );
      const table = await status(control);
      assert.equal(table.code, 0, table.stderr);
      assert.equal(table.stdout.split('\n').filter((l) => /^[23] +(serving|reload) /.test(l)).length, 1536);
    } finally {
      await server.close();
    }
  });

  for (const sockets of ['shared', 'per-worker']) {
    it(`--sockets ${sockets}: kill -9 of a worker under load refuses nothing; it is restarted in its slot`, async () => {
      const control = tmpPath('ctl');
      const sup = supervise(['-n', '2', '--sockets', sockets, '-l', 'http=127.0.0.1:0', '--control', control], [process.execPath, APP]);
      await logged(sup, /is ready/, 2);
      const port = Number(/http=tcp:127\.0\.0\.1:(\d+)/.exec(sup.stderr())![1]);
      const fresh = load(port, { workers: 4, keepAlive: false, maxSeconds: 60 });
      await new Promise((r) => setTimeout(r, 300));
      const victim = workersOf(sup.pid).find((w) => w.worker === 1)!;
      process.kill(victim.pid, 'SIGKILL');
      await logged(
        sup,
        new RegExp(
          `generation 1 worker 1 \\(pid ${victim.pid}\\) was killed by SIGKILL unexpectedly; the listeners stay open, the other workers serve, restarting now`,
        ),
      );
      await logged(sup, /generation 1 worker 1 \(pid \d+\) is ready/, 2);
      await new Promise((r) => setTimeout(r, 300));
      const r = await fresh.stop();
      // Requests the killed worker had accepted die with it (a reset, at most one per client); nothing
      // is refused, and with per-worker sockets its queue waits for its replacement.
      assert.ok(!r.errors.includes('ECONNREFUSED'), `refused: ${r.errors.join(', ')}`);
      assert.ok(r.errors.length <= 4, `${r.errors.length} failures from 4 clients: ${r.errors.join(', ')}`);
      const now = workersOf(sup.pid);
      assert.deepEqual(now.map((w) => `${w.generation}.${w.worker}`).sort(), ['1.0', '1.1']);
      const s = JSON.parse((await status(control, '--json')).stdout) as {
        generations: Array<{ workers: Array<{ slot: number; restarts: number; pid: number }> }>;
      };
      assert.deepEqual(
        s.generations[0]!.workers.map((w) => [w.slot, w.restarts]),
        [
          [0, 0],
          [1, 1],
        ],
      );
      assert.notEqual(s.generations[0]!.workers[1]!.pid, victim.pid);
      assert.equal(await stop(sup), 0);
    });
  }

  // (Unix listeners, which have no SO_REUSEPORT, stay shared: checked here too.)
  it('--sockets per-worker: each slot keeps its own SO_REUSEPORT socket in every generation', async () => {
    const control = tmpPath('ctl');
    const sock = tmpPath('sock');
    const sup = supervise(
      ['-n', '2', '--sockets', 'per-worker', '-l', 'http=127.0.0.1:0', '-l', `local=unix:${sock}`, '--control', control],
      [process.execPath, APP],
    );
    await logged(sup, /is ready/, 2);
    assert.match(sup.stderr(), /http=tcp:127\.0\.0\.1:\d+ \(2 SO_REUSEPORT sockets\)/);
    const inodes = (gen: number): Array<[string, string]> =>
      workersOf(sup.pid)
        .filter((w) => w.generation === gen)
        .sort((a, b) => a.worker - b.worker)
        .map((w) => [socketInode(w.pid, 3), socketInode(w.pid, 4)]);
    const first = inodes(1);
    assert.notEqual(first[0]![0], first[1]![0], 'each slot its own TCP socket');
    assert.equal(first[0]![1], first[1]![1], 'one Unix socket for both');
    const r = await reloadCmd(control);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(inodes(2), first, 'slot N of generation 2 has the sockets of slot N of generation 1');
    assert.equal(await stop(sup), 0);
  });

  it('fdpass status prints generations, workers and the last reload, by control path or by pid', async () => {
    const control = tmpPath('ctl');
    const sup = supervise(['-n', '2', '-l', 'web=127.0.0.1:0', '--control', control], [process.execPath, APP]);
    await logged(sup, /is ready/, 2);
    const before = await status(control);
    assert.equal(before.code, 0, before.stderr);
    const lines = before.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, new RegExp(`^fdpass run \\(pid ${sup.pid}\\), up \\d+s, [0-9.]+ MiB: 2 worker\\(s\\) of ${process.execPath} `));
    assert.match(lines[1]!, /^listeners: web=tcp:127\.0\.0\.1:\d+$/);
    assert.match(lines[2]!, /^GEN\s+ROLE\s+SLOT\s+PID\s+STATE\s+UPTIME\s+RESTARTS\s+RSS\s+CPU$/);
    for (const [i, line] of lines.slice(3, 5).entries())
      assert.match(line, new RegExp(`^1\\s+serving\\s+${i}\\s+\\d+\\s+ready\\s+\\d+s\\s+0\\s+[0-9.]+ MiB\\s+[0-9.]+s$`));
    assert.equal(lines[5], 'last reload: none');
    assert.equal(lines.length, 6);
    const r = await reloadCmd(control);
    assert.equal(r.code, 0, r.stderr);
    const byPid = await status(String(sup.pid), '--json');
    assert.equal(byPid.code, 0, byPid.stderr);
    const s = JSON.parse(byPid.stdout) as {
      pid: number;
      workers: number;
      generations: Array<{
        id: number;
        role: string;
        workers: Array<{ slot: number; pid: number; state: string; rssBytes: number; cpuMs: number }>;
      }>;
      lastReload: { source: string; ok: boolean; message: string };
    };
    assert.equal(s.pid, sup.pid);
    assert.equal(s.workers, 2);
    const serving = s.generations.find((g) => g.role === 'serving')!;
    assert.equal(serving.id, 2);
    assert.deepEqual(
      serving.workers.map((w) => [w.slot, w.state]),
      [
        [0, 'ready'],
        [1, 'ready'],
      ],
    );
    assert.ok(serving.workers.every((w) => w.rssBytes > 1e6 && w.cpuMs >= 0));
    assert.deepEqual(
      s.generations.filter((g) => g.role !== 'serving').map((g) => [g.id, g.role]),
      s.generations.length > 1 ? [[1, 'stopping']] : [],
    );
    assert.equal(s.lastReload.source, 'control socket');
    assert.equal(s.lastReload.ok, true);
    assert.match(s.lastReload.message, /^generation 2 \(2 workers\) serving/);
    assert.equal(await stop(sup), 0);
  });

  it('fdpass status: a pid without --control, a non-fdpass pid, a dead control path and bad arguments fail clearly', async () => {
    const bare = supervise(['-l', '127.0.0.1:0'], [process.execPath, APP]);
    await bare.expect('ready');
    const noControl = await status(String(bare.pid));
    assert.equal(noControl.code, 1);
    assert.equal(noControl.stderr, `fdpass status: fdpass run (pid ${bare.pid}) has no --control socket to ask\n`);
    assert.equal(await stop(bare), 0);
    const notOurs = await status(String(process.pid));
    assert.equal(notOurs.code, 1);
    assert.match(notOurs.stderr, new RegExp(`^fdpass status: pid ${process.pid} is not an fdpass run process .*: not asked\\n$`));
    const dead = await status(tmpPath('nothing-here'));
    assert.equal(dead.code, 1);
    assert.match(dead.stderr, /^fdpass status: cannot reach the control socket .*: ENOENT\n$/);
    for (const args of [[], ['a', 'b'], ['--jsn', 'x'], ['0']]) {
      const r = await status(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
  });

  it('--workers and its options: auto is one per CPU; bad values are usage errors', async () => {
    const auto = supervise(['-n', 'auto', '-l', '127.0.0.1:0'], [process.execPath, APP]);
    await logged(auto, /is ready/, os.availableParallelism());
    assert.match(
      auto.stderr(),
      new RegExp(`supervising ${os.availableParallelism() > 1 ? `${os.availableParallelism()} workers of ` : ''}`),
    );
    assert.equal(await stop(auto), 0);
    const usage: Array<[string[], RegExp]> = [
      [['-n', '0'], /--workers: '0' is out of range/],
      [['--workers', '1025'], /--workers: '1025' is out of range \(1 to 1024\)/],
      [['--workers', 'many'], /--workers: 'many' is not a whole number/],
      [['--sockets', 'reuseport'], /--sockets: 'reuseport' is not shared or per-worker/],
      [['--reload-concurrency', '0'], /--reload-concurrency: '0' is out of range/],
    ];
    for (const [args, re] of usage) {
      const c = spawnJson(process.execPath, [CLI, 'run', ...args, '--', 'true']);
      assert.equal((await c.exited).code, 2, args.join(' '));
      assert.match(c.stderr(), re);
    }
  });

  it('a python3-systemd app as 2 workers: 3 reloads under load, 0 failed requests, both workers serve', async function () {
    requires(this, python3Systemd());
    const control = tmpPath('ctl');
    // per-worker sockets: new connections are spread by the kernel, so both workers answer.
    const sup = supervise(
      ['-n', '2', '--sockets', 'per-worker', '-l', 'http=127.0.0.1:0', '--control', control],
      ['/usr/bin/python3', PY_APP],
    );
    await logged(sup, /is ready \(READY=1\)/, 2);
    const port = Number(/http=tcp:127\.0\.0\.1:(\d+)/.exec(sup.stderr())![1]);
    const fresh = load(port, { workers: 4, keepAlive: false, maxSeconds: 60 });
    for (let i = 0; i < 3; i++) {
      const r = await reloadCmd(control);
      assert.equal(r.code, 0, r.stderr);
    }
    const fr = await fresh.stop();
    noErrors(fr, 'new connections');
    const pids = workersOf(sup.pid).filter((w) => w.generation === 4);
    assert.equal(pids.length, 2);
    const answered = new Set<string>();
    for (let i = 0; i < 200 && answered.size < 2; i++) answered.add(await get(port));
    assert.deepEqual([...answered].sort(), pids.map((w) => `py4 ${w.pid}`).sort());
    assert.equal(await stop(sup), 0);
  });

  it("the guide's recipe: 4 workers of the guide's app.mjs, NODE_APP_INSTANCE mapped from FDPASS_WORKER; fdpass status", async () => {
    const dir = tmpPath('workers-recipe');
    const port = String(await freePort());
    const replace: Array<[string, string]> = [
      ['8080', port],
      ['/tmp/myapp', dir],
    ];
    docScenario('fdpass-run', dir, replace); // app.mjs
    const commands = fs
      .readFileSync(docScenario('fdpass-run-workers', tmpPath('workers-commands'), replace)['commands.sh']!, 'utf8')
      .split('\n')
      .map((l) => l.replace(/#.*/, '').trim())
      .filter(Boolean)
      .map((c) => c.replace(/^npx fdpass /, `${process.execPath} ${CLI} `));
    assert.equal(commands.length, 2);
    // As a user types it: through a shell (the recipe's quotes), exec'd so that its pid is fdpass run's.
    const run = track(spawnJson('/bin/sh', ['-c', `cd ${dir} && exec ${commands[0]!}`]));
    try {
      await logged(run, /generation 1 \(4 workers\): all 4 workers ready/);
      for (const w of workersOf(run.pid)) {
        const env = fs.readFileSync(`/proc/${w.pid}/environ`, 'latin1').split('\0');
        assert.ok(
          env.includes(`NODE_APP_INSTANCE=${w.worker}`),
          `worker ${w.worker}: ${env.filter((e) => e.startsWith('NODE_APP')).join()}`,
        );
      }
      assert.match(await get(Number(port)), /^hello from \d+\n$/);
      const st = spawnJson('/bin/sh', ['-c', commands[1]!]);
      let out = '';
      st.proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      assert.equal((await st.exited).code, 0, st.stderr());
      assert.equal((out.match(/^1 +serving +\d +\d+ +ready /gm) ?? []).length, 4, out);
    } finally {
      run.proc.kill('SIGTERM');
    }
    assert.equal((await run.exited).code, 0, run.stderr());
  });

  it('--sockets per-worker: while a slot crash-loops, its share of new connections goes to the workers that serve', async () => {
    const plan = tmpPath('plan.json');
    fs.writeFileSync(plan, JSON.stringify({ '1.1': 'exit-before-ready' })); // slot 1 never serves
    try {
      const sup = supervise(
        ['-n', '3', '--sockets', 'per-worker', '--start-limit-burst', '0', '--max-backoff', '2', '-l', 'http=127.0.0.1:0'],
        [process.execPath, APP, `plan:${plan}`],
      );
      // Slot 1 has failed (the steering is logged once a worker has crashed) and 0 and 2 serve.
      await logged(sup, /new connections go to worker\(s\) 0, 2 only/);
      const port = Number(/http=tcp:127\.0\.0\.1:(\d+)/.exec(sup.stderr())![1]);
      // Without steering a third of them would wait in slot 1's queue for a worker that never comes.
      const bounded = (): Promise<string> =>
        Promise.race([
          get(port),
          new Promise<string>((_, reject) => setTimeout(() => reject(new Error('not answered within 10 s')), 10_000)),
        ]);
      const bodies = await Promise.all(Array.from({ length: 30 }, bounded));
      const servers = new Set(bodies);
      const slots = workersOf(sup.pid).filter((w) => w.worker !== 1);
      assert.ok(
        [...servers].every((b) => slots.some((w) => b === `1 ${w.pid}`)),
        [...servers].join(', '),
      );
      // The crash-looping slot's status, not the serving slots' 0: its last exit (1) or, if stopped
      // while starting again, the SIGTERM that ended it (143).
      const status = await stop(sup);
      assert.ok(status === 1 || status === 128 + 15, `exit status ${status}`);
    } finally {
      fs.rmSync(plan, { force: true });
    }
  });

  it('under a systemd (its NOTIFY_SOCKET): MAINPID is fdpass run, STATUS= counts the serving workers', async () => {
    const notifyPath = tmpPath('notify');
    const { upstream, got } = await upstreamNotifySocket(notifyPath);
    try {
      const sup = supervise(['-n', '2', '-l', 'http=127.0.0.1:0'], [process.execPath, APP], {
        env: { ...process.env, NOTIFY_SOCKET: notifyPath },
      });
      await waitFor('READY=1 upstream', () => got.some((n) => n.text.includes('READY=1')));
      const ready = got.find((n) => n.text.includes('READY=1'))!;
      assert.equal(ready.pid, sup.pid);
      assert.match(ready.text, new RegExp(`^MAINPID=${sup.pid}$`, 'm'));
      assert.match(ready.text, /^STATUS=generation 1: 2 of 2 workers serving$/m);
      const victim = workersOf(sup.pid).find((w) => w.worker === 0)!;
      process.kill(victim.pid, 'SIGKILL');
      await waitFor('the worker count upstream', () => got.some((n) => /^STATUS=generation 1: 1 of 2 workers serving$/m.test(n.text)));
      await waitFor('the restart upstream', () =>
        got.some((n) => /^STATUS=generation 1: 2 of 2 workers serving \(after a restart\)$/m.test(n.text)),
      );
      assert.match(sup.stderr(), /restarting now \(restart 1 of worker 0\)/);
      assert.equal(await stop(sup), 0);
    } finally {
      upstream.close();
    }
  });

  // The supervisor stopped (SIGSTOP) while both workers send READY=1: it reads both in one batch.
  it('both workers ready in one read: one READY=1 upstream, and no STATUS= of a restart that never was', async () => {
    const notifyPath = tmpPath('notify');
    const { upstream, got } = await upstreamNotifySocket(notifyPath);
    try {
      const sup = supervise(['-n', '2', '-l', 'http=127.0.0.1:0'], [process.execPath, APP, 'slow-ready'], {
        env: { ...process.env, NOTIFY_SOCKET: notifyPath },
      });
      for (let i = 0; i < 2; i++) await sup.expect('started');
      process.kill(sup.pid, 'SIGSTOP');
      try {
        // 'ready' is reported once READY=1 was sent: both wait in the supervisor's notify socket.
        for (let i = 0; i < 2; i++) await sup.expect('ready');
      } finally {
        process.kill(sup.pid, 'SIGCONT');
      }
      await logged(sup, /generation 1 \(2 workers\): all 2 workers ready/);
      // Then a real restart: its STATUS= follows every message the start sent.
      process.kill(workersOf(sup.pid).find((w) => w.worker === 1)!.pid, 'SIGKILL');
      await waitFor('the restart upstream', () => got.some((n) => / \(after a restart\)$/m.test(n.text)));
      assert.deepEqual(
        got.flatMap((n) => n.text.split('\n').filter((l) => /^(READY|STATUS)=/.test(l))),
        [
          'READY=1',
          'STATUS=generation 1: 2 of 2 workers serving',
          'STATUS=generation 1: 1 of 2 workers serving',
          'STATUS=generation 1: 2 of 2 workers serving (after a restart)',
        ],
      );
      assert.equal(await stop(sup), 0);
    } finally {
      upstream.close();
    }
  });

  it('--sockets per-worker on a port another instance holds fails with EADDRINUSE, not a shared group', async () => {
    const first = supervise(['-n', '2', '--sockets', 'per-worker', '-l', '127.0.0.1:0'], [process.execPath, APP]);
    await logged(first, /is ready/, 2);
    const port = /tcp:127\.0\.0\.1:(\d+)/.exec(first.stderr())![1]!;
    const second = spawnJson(process.execPath, [CLI, 'run', '-n', '2', '--sockets', 'per-worker', '-l', `127.0.0.1:${port}`, '--', 'true']);
    assert.equal((await second.exited).code, 1);
    assert.match(second.stderr(), new RegExp(`bind EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}`));
    assert.equal(await stop(first), 0);
  });

  it('a control connection that never sends a command is closed after 10 s', async function () {
    this.timeout(30_000);
    const control = tmpPath('ctl');
    const sup = supervise(['-l', '127.0.0.1:0', '--control', control], [process.execPath, APP]);
    await sup.expect('ready');
    const ch = await connect(control, { type: 'seqpacket' });
    const t0 = Date.now();
    const ended = once(ch, 'end');
    ch.on('message', () => {}); // reading: the peer's close shows as 'end'
    await ended;
    assert.ok(Date.now() - t0 >= 9_000, 'not before the timeout');
    ch.destroy();
    assert.equal(await stop(sup), 0);
  });

  it("a refused reload request does not replace the last reload's outcome in fdpass status", async () => {
    const control = tmpPath('ctl');
    const plan = tmpPath('plan.json');
    fs.writeFileSync(plan, JSON.stringify({ 2: 'slow-ready' }));
    try {
      const sup = supervise(['-l', '127.0.0.1:0', '--control', control], [process.execPath, APP, `plan:${plan}`]);
      await sup.expect('ready');
      const first = reloadCmd(control);
      await logged(sup, /started generation 2/);
      const refused = await reloadCmd(control);
      assert.equal(refused.code, 1);
      assert.equal((await first).code, 0);
      const s = JSON.parse((await status(control, '--json')).stdout) as { lastReload: { ok: boolean; message: string } };
      assert.equal(s.lastReload.ok, true, s.lastReload.message);
      assert.match(s.lastReload.message, /^generation 2 \(pid \d+\) serving/);
      assert.equal(await stop(sup), 0);
    } finally {
      fs.rmSync(plan, { force: true });
    }
  });

  it("fdpass status PID of another user's fdpass run names the refusal (EACCES), not a missing --control", async function () {
    requires(this, root('running the caller as nobody'));
    const control = tmpPath('ctl'); // an absolute path: no need to read the supervisor's cwd
    const sup = supervise(['-l', '127.0.0.1:0', '--control', control], [process.execPath, APP]);
    await sup.expect('ready');
    const c = spawnJson(process.execPath, [CLI, 'status', String(sup.pid)], { uid: NOBODY, gid: NOBODY });
    assert.equal((await c.exited).code, 1);
    assert.match(c.stderr(), /^fdpass status: cannot reach the control socket .*: EACCES\n$/);
    assert.equal(await stop(sup), 0);
  });
});
