// The container recipe of docs/fdpass-run.md as Docker runs it. This machine has no Docker engine, so the test
// does what Docker does with the Dockerfile's lines: the exec-form ENTRYPOINT + CMD, in WORKDIR, as
// PID 1 of a fresh pid namespace with its own /proc (unshare --pid --fork --mount-proc); the
// `docker exec` reload line runs inside that namespace (nsenter), and `docker stop` is SIGTERM to PID 1.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { processState, watchJson, type Fixture } from './helpers/children';
import { docScenario, scenarioBlocks, workersApp } from './helpers/docs';
import { get, load } from './helpers/http';
import { freePort } from './helpers/net';
import { hostPidIn, processesIn } from './helpers/systemd';
import { requires, unshare } from './helpers/requires';
import { tmpPath } from './helpers/tmp';
import { waitFor } from './helpers/wait';

interface Recipe {
  workdir: string;
  entrypoint: string[];
  cmd: string[];
  /** The command after `docker exec <container>`. */
  reload: string[];
}

// The Dockerfile lines the recipe uses; JSON arrays are Docker's exec form.
function parseDockerfile(text: string): Recipe {
  const line = (re: RegExp): string => {
    const m = text.split('\n').find((l) => re.test(l));
    assert.ok(m !== undefined, `the docs' Dockerfile has no line matching ${re}`);
    return m.replace(re, '').trim();
  };
  const execForm = (s: string): string[] => {
    const argv = JSON.parse(s) as unknown;
    assert.ok(Array.isArray(argv) && argv.every((a) => typeof a === 'string'), `not the exec form: ${s}`);
    return argv as string[];
  };
  return {
    workdir: line(/^WORKDIR\s+/),
    entrypoint: execForm(line(/^ENTRYPOINT\s+/)),
    cmd: execForm(line(/^CMD\s+/)),
    reload: line(/^# reload: docker exec <container>\s+/).split(/\s+/),
  };
}

function nsOf(pid: number): string {
  return fs.readlinkSync(`/proc/${pid}/ns/pid`);
}

/** The only child of `pid` (unshare's: the namespace's PID 1), once there is one. */
function childOf(pid: number): number | undefined {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return kids.length === 1 ? Number(kids[0]) : undefined;
  } catch {
    return undefined;
  }
}

function argvOf(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Runs `argv` in the namespace of host pid `pid1`, in `cwd`, as `docker exec` does. */
function dockerExec(pid1: number, cwd: string, argv: string[]): { status: number | null; out: string } {
  const r = spawnSync('nsenter', ['-t', String(pid1), '-p', '-m', '--', ...argv], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("the docs' container entrypoint as PID 1 (no Docker engine here: a pid namespace, as Docker makes)", function () {
  this.timeout(60_000);
  let unshared: Fixture | undefined;

  before(function () {
    requires(this, unshare(['--pid', '--fork', '--mount-proc']));
  });

  afterEach(async () => {
    // After a failure: SIGKILL of unshare, whose --kill-child ends PID 1 and so the namespace.
    if (unshared !== undefined && unshared.proc.exitCode === null && unshared.proc.signalCode === null) {
      unshared.proc.kill('SIGKILL');
      await unshared.exited;
    }
    unshared = undefined;
  });

  /**
   * The docs' container recipe written into a fresh /app (a project with fdpass installed:
   * node_modules/fdpass is this checkout), started as Docker would: the entrypoint + CMD as PID 1 of
   * a new pid namespace. `entrypoint` may change the recipe's (e.g. add --workers); `app` is another
   * app's code. Returns once PID 1 runs the entrypoint.
   */
  async function startContainer(
    opts: { entrypoint?: (argv: string[]) => string[]; app?: string } = {},
  ): Promise<{ port: number; dir: string; recipe: Recipe; pid1: number; ns: string; container: Fixture }> {
    const port = await freePort();
    const dir = tmpPath('container');
    const files = docScenario('container', dir, [
      ['/app', dir],
      ['0.0.0.0:8080', `127.0.0.1:${port}`],
      ['/run/fdpass.ctl', path.join(dir, 'fdpass.ctl')],
    ]);
    const server = scenarioBlocks('fdpass-run').find((b) => b.marker.name === 'app.mjs')!;
    const recipe = parseDockerfile(fs.readFileSync(files.Dockerfile!, 'utf8'));
    fs.writeFileSync(path.join(recipe.workdir, recipe.cmd[1]!), opts.app ?? server.code);
    const entrypoint = (opts.entrypoint ?? ((a) => a))(recipe.entrypoint);

    const env = { ...process.env };
    for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) delete env[k];
    const proc = spawn('unshare', ['--pid', '--fork', '--kill-child=SIGKILL', '--mount-proc', ...entrypoint, ...recipe.cmd], {
      cwd: recipe.workdir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const container = watchJson(proc);
    unshared = container;
    // unshare's child is in the new namespace before it has mounted /proc and exec'd the entrypoint.
    await waitFor('PID 1 of the namespace to run the entrypoint', () => {
      const c = childOf(proc.pid!);
      return c !== undefined && argvOf(c)[0] === entrypoint[0];
    });
    const pid1 = childOf(proc.pid!)!;
    const ns = nsOf(pid1);
    assert.notEqual(ns, nsOf(process.pid));
    assert.equal(hostPidIn(ns, 1), pid1);
    assert.deepEqual(argvOf(pid1).slice(1, 3), [path.join(dir, 'node_modules/fdpass/dist/cli/main.js'), 'run'], 'PID 1 is fdpass run');
    return { port, dir, recipe, pid1, ns, container };
  }

  /** A `docker exec` that leaves a background process; returns its host pid once PID 1 is its parent. */
  async function leaveOrphan(pid1: number, ns: string, workdir: string): Promise<number> {
    // Its parent (sh) exits at once, so it is reparented to PID 1, which must reap it once it exits.
    const exec = dockerExec(pid1, workdir, ['/bin/sh', '-c', 'sleep 1 >/dev/null 2>&1 & echo $!']);
    assert.equal(exec.status, 0, exec.out);
    const orphan = hostPidIn(ns, Number(exec.out.trim()));
    assert.ok(orphan !== undefined, `the orphan ${exec.out.trim()} is not in the namespace`);
    await waitFor(
      'the orphan to be reparented to PID 1',
      () => fs.readFileSync(`/proc/${orphan}/stat`, 'latin1').split(') ')[1]!.split(' ')[1] === String(pid1),
    );
    return orphan;
  }

  // `fdpass reload` goes over the control socket; SIGTERM goes to PID 1.
  it('serves, reloads under load without a failed request, reaps orphans, stops on SIGTERM with 0', async () => {
    const { port, recipe, pid1, ns, container } = await startContainer();
    let first = '';
    for (const deadline = Date.now() + 15_000; first === '' && Date.now() < deadline;) {
      first = await get(port).catch(() => new Promise<string>((r) => setTimeout(() => r(''), 100)));
    }
    assert.match(first, /^hello from \d+\n$/, container.stderr());

    const orphan = await leaveOrphan(pid1, ns, recipe.workdir);

    // `docker exec <container> ... reload /run/fdpass.ctl`, under load.
    const traffic = load(port, { workers: 4, keepAlive: false, maxSeconds: 60 });
    let result: Awaited<ReturnType<typeof traffic.stop>>;
    try {
      await new Promise((r) => setTimeout(r, 300));
      const reload = dockerExec(pid1, recipe.workdir, recipe.reload);
      assert.equal(reload.status, 0, `${reload.out}\n${container.stderr()}`);
      assert.match(reload.out, /^fdpass reload: generation 2 \(pid \d+\) serving; generation 1 \(pid \d+\) sent SIGTERM\n$/);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      result = await traffic.stop();
    }
    assert.deepEqual(result.errors, [], `${result.errors.length} failed requests of ${result.ok + result.errors.length}`);
    assert.ok(result.ok > 20, `only ${result.ok} requests were served`);
    const second = await get(port);
    assert.notEqual(second, first, 'the next generation serves');

    await waitFor('the orphan to exit and be reaped', () => processState(orphan) === undefined);
    const zombies = processesIn(ns).filter((p) => processState(p) === 'Z');
    assert.deepEqual(zombies, [], 'no zombie in the namespace');

    // `docker stop`: SIGTERM to PID 1, forwarded; the app drains and exits 0, and so does PID 1.
    process.kill(pid1, 'SIGTERM');
    const end = await container.exited;
    assert.deepEqual(end, { code: 0, signal: null }, container.stderr());
    assert.match(container.stderr(), /SIGTERM: stopping/);
    assert.match(container.stderr(), /generation 2 \(pid \d+\) exited with code 0 after SIGTERM \(stopped\)/);
    assert.deepEqual(processesIn(ns), [], 'the namespace is empty');
  });
  // SIGHUP (`docker kill -s HUP`) to PID 1; each worker answers with its FDPASS_WORKER.
  it('--workers 2 as PID 1: SIGHUP replaces both under load, orphans are reaped, SIGTERM stops all with 0', async () => {
    const { port, recipe, pid1, ns, container } = await startContainer({
      entrypoint: (argv) => [...argv.slice(0, argv.indexOf('--')), '--workers', '2', ...argv.slice(argv.indexOf('--'))],
      app: workersApp(),
    });
    // `docker exec <container> node .../main.js status --json 1`: by pid, PID 1 of the namespace.
    const statusArgv = [...recipe.reload.slice(0, recipe.reload.indexOf('reload')), 'status', '--json', '1'];
    const workers = (role: string): Array<{ slot: number; pid: number; state: string }> => {
      const r = dockerExec(pid1, recipe.workdir, statusArgv);
      assert.equal(r.status, 0, r.out);
      const st = JSON.parse(r.out) as {
        pid: number;
        generations: Array<{ id: number; role: string; workers: Array<{ slot: number; pid: number; state: string }> }>;
      };
      assert.equal(st.pid, 1, 'fdpass status 1 asks PID 1');
      return st.generations.find((g) => g.role === role)?.workers ?? [];
    };
    const log = (): string => container.stderr();
    await waitFor('generation 1 to serve', () => /generation 1 \(2 workers\): all 2 workers ready/.test(log()), 15_000);
    const first = workers('serving');
    assert.deepEqual(
      first.map((w) => [w.slot, w.state]),
      [
        [0, 'ready'],
        [1, 'ready'],
      ],
    );
    // Workers are PID 1's children, in the namespace (their pids are the namespace's).
    for (const w of first) assert.ok(hostPidIn(ns, w.pid) !== undefined, `worker ${w.slot} (pid ${w.pid}) is not in the namespace`);
    const answered = new Set<string>();
    for (let i = 0; i < 200 && answered.size < 2; i++) answered.add(await get(port));
    assert.deepEqual([...answered].sort(), first.map((w) => `hello from ${w.pid} worker ${w.slot}\n`).sort());

    const orphans = [await leaveOrphan(pid1, ns, recipe.workdir), await leaveOrphan(pid1, ns, recipe.workdir)];

    const traffic = load(port, { workers: 4, keepAlive: false, maxSeconds: 60 });
    let result: Awaited<ReturnType<typeof traffic.stop>>;
    try {
      await waitFor('the load to be served', () => traffic.served() > 20, 15_000);
      process.kill(pid1, 'SIGHUP');
      await waitFor(
        'the reload to finish',
        () => /reload done: generation 2 \(2 workers\) serving; generation 1 \(2 workers\) sent SIGTERM/.test(log()),
        30_000,
      );
      for (const w of first) {
        const stopped = new RegExp(`generation 1 worker ${w.slot} \\(pid ${w.pid}\\) exited with code 0 after SIGTERM \\(stopped\\)`);
        await waitFor(`old worker ${w.slot} to drain and exit`, () => stopped.test(log()), 30_000);
      }
      const served = traffic.served();
      await waitFor('generation 2 to be served under load', () => traffic.served() > served + 20, 15_000);
    } finally {
      result = await traffic.stop();
    }
    assert.deepEqual(result.errors, [], `${result.errors.length} failed requests of ${result.ok + result.errors.length}`);
    const second = workers('serving');
    assert.deepEqual(
      second.map((w) => [w.slot, w.state]),
      [
        [0, 'ready'],
        [1, 'ready'],
      ],
    );
    assert.ok(
      second.every((w) => !first.some((f) => f.pid === w.pid)),
      'both workers were replaced',
    );
    assert.deepEqual(workers('stopping'), [], 'generation 1 is gone');
    const servedBy = new Set(result.bodies.keys());
    for (const w of [...first, ...second]) {
      assert.ok(
        servedBy.has(`hello from ${w.pid} worker ${w.slot}\n`),
        `pid ${w.pid} (worker ${w.slot}) served none of ${[...servedBy].join(', ')}`,
      );
    }
    // The old workers were reaped (libuv), the orphans too (PID 1's reaper): no zombie is left.
    for (const o of orphans) await waitFor(`the orphan ${o} to exit and be reaped`, () => processState(o) === undefined);
    for (const w of first) assert.equal(hostPidIn(ns, w.pid), undefined, `old worker ${w.slot} is still in the namespace`);
    const zombies = processesIn(ns).filter((p) => processState(p) === 'Z');
    assert.deepEqual(zombies, [], 'no zombie in the namespace');

    // `docker stop`: SIGTERM to PID 1, forwarded to both workers; PID 1 exits 0 once both drained
    // and exited (had it exited first, the kernel would have SIGKILLed them with the namespace).
    process.kill(pid1, 'SIGTERM');
    const end = await container.exited;
    assert.deepEqual(end, { code: 0, signal: null }, log());
    assert.match(log(), /SIGTERM: stopping/);
    for (const w of second) {
      assert.match(log(), new RegExp(`generation 2 worker ${w.slot} \\(pid ${w.pid}\\) exited with code 0 after SIGTERM \\(stopped\\)`));
    }
    assert.deepEqual(processesIn(ns), [], 'the namespace is empty');
  });
});
