// Against a real systemd booted as PID 1 in fresh namespaces (test/helpers/systemd.ts), with the unit
// files of examples/systemd/ (test drop-ins only change ExecStart, ports and a report file): socket
// activation by name, and a listener kept in the fd store across `systemctl restart` under load with
// no connection refused; and the `fdpass run` units of docs/fdpass-run.md as written (one process
// with its watchdog, and --workers 2). Each test boots its own systemd and ends it; nothing of it
// survives the test.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { processState } from './helpers/children';
import { bootSystemd, requireNamespaces, processesIn, type TestSystemd } from './helpers/systemd';
import { docScenario, scenarioBlocks, workersApp } from './helpers/docs';
import { get, load } from './helpers/http';
import { freePort, line } from './helpers/net';
import { waitForValue } from './helpers/wait';

const ROOT = path.join(__dirname, '..', '..');
const EXAMPLES = path.join(ROOT, 'examples', 'systemd');
const APP = path.join(__dirname, 'fixtures', 'systemd-app.js');
// Reports go through the shared filesystem (the namespace has its own /tmp and /run).
const REPORTS = path.join(ROOT, '.test-out', 'systemd-reports');

function example(name: string): string {
  return fs.readFileSync(path.join(EXAMPLES, name), 'utf8');
}

function reportFile(name: string): string {
  fs.mkdirSync(REPORTS, { recursive: true });
  const file = path.join(REPORTS, `${name}-${process.pid}-${Date.now()}.jsonl`);
  fs.writeFileSync(file, '');
  return file;
}

function readReport(file: string): Array<Record<string, unknown>> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function drop(execArgs: string, env: Record<string, string>): string {
  return [
    '[Service]',
    'ExecStart=',
    `ExecStart=${process.execPath} ${APP} ${execArgs}`,
    ...Object.entries(env).map(([k, v]) => `Environment=${k}=${v}`),
    '',
  ].join('\n');
}

// How long after `systemctl stop` returns a process of the unit may still be in /proc (below).
const GONE_WITHIN_MS = 10_000;

describe('under a real systemd (PID 1 in a namespace)', function () {
  this.timeout(120_000);
  let sd: TestSystemd | undefined;
  const files: string[] = [];

  before(function () {
    requireNamespaces(this);
  });

  afterEach(async () => {
    // After a failure too: the namespace and everything in it end here.
    await sd?.stop();
    sd = undefined;
    for (const f of files.splice(0)) fs.rmSync(f, { force: true, recursive: true });
  });

  /** What a process is, for a message: pid, state and command line. */
  function described(pid: number): string {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      return `${pid} (${processState(pid) ?? 'gone'}) ${cmd}`;
    } catch {
      return `${pid} (gone)`;
    }
  }

  /**
   * Stops the units, checks that every process of the service is gone, then ends systemd and its
   * namespace. A process systemd killed at the stop can still be in /proc for a moment after
   * `systemctl stop` returns, until systemd (PID 1 here, the parent of every orphan) reaps it: seen
   * once in CI, one pid left. So each must be gone within GONE_WITHIN_MS, and one that stays is named
   * with its state and command line.
   */
  async function shutDown(units: string[]): Promise<void> {
    if (units.length > 0) await sd!.systemctl('stop', ...units);
    const t0 = Date.now();
    let left = sd!.others();
    while (left.length > 0 && Date.now() - t0 < GONE_WITHIN_MS) {
      await new Promise((r) => setTimeout(r, 20));
      left = sd!.others();
    }
    assert.deepEqual(left.map(described), [], `processes left in the namespace ${GONE_WITHIN_MS} ms after systemctl stop`);
    const ns = sd!.namespace;
    await sd!.stop();
    assert.deepEqual(processesIn(ns), [], 'processes left after systemd was killed');
    sd = undefined;
  }

  /** A unit's property (`systemctl show -p NAME --value`). */
  async function property(unit: string, name: string): Promise<string> {
    return (await sd!.systemctl('show', '-p', name, '--value', unit)).trim();
  }

  /** A directory the namespace sees too (it has its own /tmp): under the checkout's .test-out. */
  function sharedDir(name: string): string {
    fs.mkdirSync(path.join(ROOT, '.test-out'), { recursive: true });
    const dir = fs.mkdtempSync(path.join(ROOT, '.test-out', `${name}-`));
    files.push(dir);
    return dir;
  }

  /** Asks `fn` again every 50 ms until it gives a value; fails naming `what` after `ms`. */
  async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  // MainPID is fdpass run; WatchdogSec=2 never fires in 7 s.
  it("the docs' `fdpass run` unit: 3 `systemctl reload`s under load fail no request", async () => {
    sd = await bootSystemd();
    const port = await freePort();
    // The docs' unit and app as a user copies them: /srv/app is a project with fdpass installed
    // (node_modules/fdpass is this checkout), serving on a free port instead of 80.
    const dir = sharedDir('srv-app');
    const unitFile = docScenario('fdpass-run-systemd', dir, [
      ['/srv/app', dir],
      ['0.0.0.0:80', `127.0.0.1:${port}`],
    ])['fdpass-run.service']!;
    const server = scenarioBlocks('fdpass-run').find((b) => b.marker.name === 'app.mjs')!;
    fs.writeFileSync(path.join(dir, 'app.mjs'), server.code);
    const unit = 'fdpass-run.service';
    const text = fs.readFileSync(unitFile, 'utf8');
    for (const l of ['Type=notify', 'ExecReload=/bin/kill -HUP $MAINPID', 'WatchdogSec=', 'KillMode=mixed'])
      assert.ok(text.includes(l), `the docs' unit lacks ${l}`);
    sd.writeUnit(unit, text);
    sd.writeUnit(`${unit}.d/test.conf`, '[Service]\nWatchdogSec=2\n');
    await sd.systemctl('daemon-reload');
    await sd.systemctl('start', unit); // Type=notify, NotifyAccess=main: returns once MainPID said READY=1
    const mainPid = Number(await property(unit, 'MainPID'));
    const cmdline = fs.readFileSync(`/proc/${sd.hostPid(mainPid)}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(
      cmdline.slice(0, 3),
      ['/usr/bin/node', path.join(dir, 'node_modules/fdpass/dist/cli/main.js'), 'run'],
      'MainPID is fdpass run',
    );
    const first = await get(port);
    assert.match(first, /^hello from \d+\n$/);
    assert.notEqual(first, `hello from ${mainPid}\n`, 'served by a generation');

    const t0 = Date.now();
    const traffic = load(port, { workers: 4, keepAlive: false, maxSeconds: 90 });
    let result: Awaited<ReturnType<typeof traffic.stop>>;
    const servers = [first];
    try {
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 1500));
        await sd.systemctl('reload', unit);
        const next = await eventually(`the generation of reload ${i + 1}`, async () => {
          const body = await get(port);
          return servers.includes(body) ? undefined : body;
        });
        servers.push(next);
      }
      // More than 3 x WatchdogSec in all: systemd would have killed a unit that does not ping.
      while (Date.now() - t0 < 7000) await new Promise((r) => setTimeout(r, 100));
    } finally {
      result = await traffic.stop();
    }
    assert.deepEqual(result.errors, [], `${result.errors.length} failed requests of ${result.ok + result.errors.length}`);
    assert.ok(result.ok > 50, `only ${result.ok} requests were served`);
    assert.equal(await property(unit, 'MainPID'), String(mainPid), 'MainPID never changes');
    assert.equal(await property(unit, 'NRestarts'), '0');
    assert.equal((await sd.systemctlStatus('is-active', unit)).stdout.trim(), 'active');
    // The pings arrive: systemd's last-ping timestamp moves.
    const ping1 = Number(await property(unit, 'WatchdogTimestampMonotonic'));
    await new Promise((r) => setTimeout(r, 1200));
    const ping2 = Number(await property(unit, 'WatchdogTimestampMonotonic'));
    assert.ok(ping2 > ping1, `WatchdogTimestampMonotonic did not move: ${ping1}, ${ping2}`);
    assert.doesNotMatch(await sd.journal(unit), /[Ww]atchdog timeout|missed its watchdog/);

    await sd.systemctl('stop', unit); // SIGTERM to fdpass run (KillMode=mixed), forwarded; the app drains
    assert.equal(await property(unit, 'Result'), 'success');
    assert.equal(await property(unit, 'ExecMainStatus'), '0');
    await shutDown([]);
  });

  // `systemctl reload` runs `fdpass reload $MAINPID`, which waits for both new workers.
  it("the docs' --workers 2 unit: MainPID stays, STATUS= counts workers; 3 reloads, 1 rollback, 0 failed", async () => {
    sd = await bootSystemd();
    const port = await freePort();
    const dir = sharedDir('srv-app-workers');
    const files = docScenario('fdpass-run-systemd-workers', dir, [
      ['/srv/app', dir],
      ['0.0.0.0:80', `127.0.0.1:${port}`],
    ]);
    fs.writeFileSync(path.join(dir, 'app.mjs'), workersApp());
    const unit = 'fdpass-run.service';
    const text = fs.readFileSync(files[unit]!, 'utf8');
    for (const l of ['Type=notify', 'run --workers 2 ', '--control /run/', 'RuntimeDirectory=', 'ExecReload=', 'KillMode=mixed'])
      assert.ok(text.includes(l), `the docs' unit lacks ${l}`);
    // The docs' commands, as typed in a shell on that machine (comments dropped).
    const commands = fs
      .readFileSync(files['commands.sh']!, 'utf8')
      .split('\n')
      .map((l) => l.replace(/#.*/, '').trim())
      .filter(Boolean);
    assert.equal(commands.length, 3);
    const shell = async (command: string): Promise<string> => {
      const r = await sd!.exec('/bin/sh', '-c', command);
      assert.equal(r.code, 0, `${command}: exit ${r.code}: ${r.stdout}${r.stderr}\n${await sd!.journal(unit)}`);
      return r.stdout;
    };
    sd.writeUnit(unit, text);
    // Every worker pings fdpass run at the interval (startWatchdog()): a short one, over the whole test.
    sd.writeUnit(`${unit}.d/test.conf`, '[Service]\nWatchdogSec=2\n');
    await sd.systemctl('daemon-reload');
    await sd.systemctl('start', unit); // Type=notify: returns once fdpass run said READY=1 (both workers ready)
    const mainPid = Number(await property(unit, 'MainPID'));
    const cmdline = fs.readFileSync(`/proc/${sd.hostPid(mainPid)}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(
      cmdline.slice(0, 3),
      ['/usr/bin/node', path.join(dir, 'node_modules/fdpass/dist/cli/main.js'), 'run'],
      'MainPID is fdpass run',
    );
    assert.equal(await property(unit, 'StatusText'), 'generation 1: 2 of 2 workers serving', await sd.journal(unit));
    // `fdpass status --json <MainPID>`, in the namespace (MainPID is its pid): each generation's workers.
    const cli = `/usr/bin/node ${path.join(dir, 'node_modules/fdpass/dist/cli/main.js')}`;
    type Workers = Array<{ slot: number; pid: number; state: string }>;
    const serving = async (): Promise<Workers> => {
      const st = JSON.parse(await shell(`${cli} status --json ${mainPid}`)) as {
        pid: number;
        generations: Array<{ role: string; workers: Workers }>;
      };
      assert.equal(st.pid, mainPid);
      return st.generations.find((g) => g.role === 'serving')!.workers;
    };
    const slots = (ws: Workers): string[] => ws.map((w) => `worker ${w.slot} ${w.state}`);
    const generations = [await serving()];
    assert.deepEqual(slots(generations[0]!), ['worker 0 ready', 'worker 1 ready']);

    const traffic = load(port, { workers: 4, keepAlive: false, maxSeconds: 90 });
    let result: Awaited<ReturnType<typeof traffic.stop>>;
    try {
      for (let i = 0; i < 3; i++) {
        // Each generation serves for a while first (both its workers answer: checked below).
        const served = traffic.served();
        await eventually(
          `requests served by generation ${i + 1}`,
          async () => (traffic.served() > served + 100 ? true : undefined),
          30_000,
        );
        await shell(commands[0]!); // systemctl reload: returns once the new generation serves
        const shown = await shell(commands[1]!); // systemctl show -p MainPID -p StatusText
        assert.deepEqual(shown.trim().split('\n').sort(), [`MainPID=${mainPid}`, `StatusText=generation ${i + 2}: 2 of 2 workers serving`]);
        const next = await serving();
        assert.deepEqual(slots(next), ['worker 0 ready', 'worker 1 ready']);
        assert.ok(!next.some((w) => generations.flat().some((o) => o.pid === w.pid)), `reload ${i + 1} started new workers`);
        generations.push(next);
      }
      // A reload whose workers cannot start (app.mjs gone: node exits 1): `systemctl reload` fails,
      // the unit stays active, and generation 4 serves on.
      const app = path.join(dir, 'app.mjs');
      fs.renameSync(app, `${app}.away`);
      const failed = await sd.exec('/bin/sh', '-c', commands[0]!);
      fs.renameSync(`${app}.away`, app);
      assert.notEqual(failed.code, 0, `a rolled-back reload succeeded: ${failed.stdout}${failed.stderr}`);
      assert.match(
        await sd.journal(unit),
        /reload failed: rolled back: generation 5 worker \d \(pid \d+\) exited with code 1 before it was ready; generation 4 \(2 workers\) keeps serving/,
      );
      assert.equal((await sd.systemctlStatus('is-active', unit)).stdout.trim(), 'active');
      assert.match(
        await property(unit, 'StatusText'),
        /^reload failed: generation 5 worker \d \(pid \d+\) exited with code 1 before it was ready$/,
      );
      const pids = (ws: Workers): string[] => ws.map((w) => `worker ${w.slot} ${w.pid} ${w.state}`);
      assert.deepEqual(pids(await serving()), pids(generations[3]!), 'generation 4 serves on');
      const served = traffic.served();
      await eventually('requests served by generation 4', async () => (traffic.served() > served + 100 ? true : undefined), 30_000);
    } finally {
      result = await traffic.stop();
    }
    assert.deepEqual(result.errors, [], `${result.errors.length} failed requests of ${result.ok + result.errors.length}`);
    // Both workers of every generation answered.
    for (const [i, gen] of generations.entries()) {
      for (const w of gen) {
        const body = `hello from ${w.pid} worker ${w.slot}\n`;
        assert.ok(result.bodies.has(body), `generation ${i + 1} worker ${w.slot} (pid ${w.pid}) served none of ${result.ok}`);
      }
    }
    assert.equal(await property(unit, 'MainPID'), String(mainPid), 'MainPID never changes');
    assert.equal(await property(unit, 'NRestarts'), '0');
    assert.equal((await sd.systemctlStatus('is-active', unit)).stdout.trim(), 'active');
    // The docs' `fdpass status $(systemctl show -p MainPID --value ...)`: the table of generation 4.
    const table = await shell(commands[2]!);
    assert.match(table, new RegExp(`^fdpass run \\(pid ${mainPid}\\), up .*: 2 worker\\(s\\) of /usr/bin/node `));
    for (const w of generations[3]!) assert.match(table, new RegExp(`^4 +serving +${w.slot} +${w.pid} +ready +\\S+ +0 `, 'm'));
    assert.doesNotMatch(await sd.journal(unit), /missed its watchdog|[Ww]atchdog timeout/);

    await sd.systemctl('stop', unit); // SIGTERM to fdpass run (KillMode=mixed), forwarded to both workers
    assert.equal(await property(unit, 'Result'), 'success');
    assert.equal(await property(unit, 'ExecMainStatus'), '0');
    const journal = await sd.journal(unit);
    for (const w of generations[3]!) {
      assert.match(journal, new RegExp(`generation 4 worker ${w.slot} \\(pid ${w.pid}\\) exited with code 0 after SIGTERM \\(stopped\\)`));
    }
    await shutDown([]);
  });

  // A stopped fdpass run is killed by systemd.
  it('WatchdogSec= over `fdpass run`: a generation that stops pinging is replaced, the unit stays', async () => {
    sd = await bootSystemd();
    const port = await freePort();
    const dir = sharedDir('watchdog');
    const plan = path.join(dir, 'plan.json');
    fs.writeFileSync(plan, JSON.stringify({ 1: 'watchdog-hang' }));
    const cli = path.join(ROOT, 'dist', 'cli', 'main.js');
    const app = path.join(__dirname, 'fixtures', 'supervised-app.js');
    const unit = 'fdpass-watchdog.service';
    const node = process.execPath;
    sd.writeUnit(
      unit,
      [
        '[Service]',
        'Type=notify',
        `ExecStart=${node} ${cli} run -l http=127.0.0.1:${port} --stop-timeout 3 -- ${node} ${app} plan:${plan} 2500`,
        'KillMode=mixed',
        'WatchdogSec=2',
        '',
      ].join('\n'),
    );
    await sd.systemctl('daemon-reload');
    await sd.systemctl('start', unit);
    const mainPid = await property(unit, 'MainPID');
    const first = await get(port);
    assert.match(first, /^1 \d+$/);
    fs.writeFileSync(plan, JSON.stringify({ 1: 'watchdog' })); // its replacement pings on
    // Generation 1 pings (startWatchdog() got WATCHDOG_PID = its pid), then its event loop blocks for
    // good; it is restarted in its slot, in generation 1.
    const second = await eventually(
      'the replacement to serve',
      async () => {
        const body = await get(port).catch(() => '');
        return body.startsWith('1 ') && body !== first ? body : undefined;
      },
      20_000,
    );
    assert.match(second, /^1 \d+$/);
    const journal = await sd.journal(unit);
    assert.match(journal, /generation 1 \(pid \d+\) missed its watchdog/);
    assert.match(journal, /generation 1 \(pid \d+\) was killed by SIGABRT/);
    assert.doesNotMatch(journal, /[Ww]atchdog timeout/, 'systemd never acted');
    assert.equal(await property(unit, 'MainPID'), mainPid);
    assert.equal(await property(unit, 'NRestarts'), '0');
    assert.equal((await sd.systemctlStatus('is-active', unit)).stdout.trim(), 'active');

    // fdpass run itself hangs (SIGSTOP): no more pings, and systemd's watchdog fires.
    process.kill(sd.hostPid(Number(mainPid))!, 'SIGSTOP');
    await eventually('systemd to see the watchdog fail', async () => ((await property(unit, 'Result')) === 'watchdog' ? true : undefined));
    await shutDown([unit]);
  });

  it('socket units "web" and "admin": the first connection starts the service, which serves both by name', async () => {
    sd = await bootSystemd();
    const [webPort, adminPort] = [await freePort(), await freePort()];
    const report = reportFile('activation');
    files.push(report);
    for (const unit of ['fdpass-app-web.socket', 'fdpass-app-admin.socket', 'fdpass-app.service']) sd.writeUnit(unit, example(unit));
    // Test ports instead of 8080/8081 (the machine is shared): an empty ListenStream= resets the list.
    sd.writeUnit('fdpass-app-web.socket.d/test.conf', `[Socket]\nListenStream=\nListenStream=127.0.0.1:${webPort}\n`);
    sd.writeUnit('fdpass-app-admin.socket.d/test.conf', `[Socket]\nListenStream=\nListenStream=127.0.0.1:${adminPort}\n`);
    sd.writeUnit('fdpass-app.service.d/test.conf', drop('unit activation', { FDPASS_TEST_REPORT: report }));
    await sd.systemctl('daemon-reload');
    await sd.systemctl('start', 'fdpass-app-web.socket', 'fdpass-app-admin.socket');
    const before = await sd.systemctlStatus('is-active', 'fdpass-app.service');
    assert.equal(before.stdout.trim(), 'inactive', 'the service must not run before a connection');

    const web = await get(webPort); // this connection starts the service
    const [name, pid] = web.split(' ');
    assert.equal(name, 'web');
    assert.equal(await line(adminPort), `admin ${pid}`);
    assert.equal(await get(webPort), `web ${pid}`);
    assert.equal((await sd.systemctl('show', '-p', 'MainPID', '--value', 'fdpass-app.service')).trim(), pid, 'served by the main process');
    const start = await waitForValue('start report', () => readReport(report).find((r) => r.event === 'start'));
    assert.deepEqual([...(start.names as string[])].sort(), ['admin', 'web']);
    assert.deepEqual(start.kinds, ['socket', 'socket']);
    assert.equal(start.env, null, 'LISTEN_FDS must be gone from the environment');

    await sd.systemctl('stop', 'fdpass-app.service');
    const exit = await waitForValue('exit report', () => readReport(report).find((r) => r.event === 'exit'));
    assert.equal(exit.fds, exit.base, `service fds not back to baseline: ${JSON.stringify(exit.targets)}`);
    await shutDown(['fdpass-app-web.socket', 'fdpass-app-admin.socket']);
  });

  // Each start gets "web" back.
  it('Type=notify with the fd store: 5 restarts under load refuse no connection', async () => {
    sd = await bootSystemd();
    const port = await freePort();
    const report = reportFile('store');
    files.push(report);
    const unit = 'fdpass-store.service';
    const text = example(unit);
    for (const line of ['Type=notify', 'NotifyAccess=all', 'FileDescriptorStoreMax='])
      assert.ok(text.includes(line), `${unit} lacks ${line}`);
    sd.writeUnit(unit, text);
    sd.writeUnit(`${unit}.d/test.conf`, drop('unit store', { FDPASS_TEST_REPORT: report, PORT: String(port) }));
    // Six starts in a few seconds would trip systemd's default start limit (5 per 10 s).
    sd.writeUnit(`${unit}.d/start-limit.conf`, '[Unit]\nStartLimitIntervalSec=0\n');
    await sd.systemctl('daemon-reload');
    await sd.systemctl('start', unit); // Type=notify: returns once the service sent READY=1
    const first = readReport(report).find((r) => r.event === 'start')!;
    assert.equal(first.from, 'bound');
    assert.equal(await get(port), `web ${first.pid}`);

    // Clients making a new connection per request, bounded in time, on 127.0.0.1 only.
    const traffic = load(port, { workers: 4, keepAlive: false, maxSeconds: 90 });
    const restarts = 5;
    let result: Awaited<ReturnType<typeof traffic.stop>>;
    try {
      for (let i = 0; i < restarts; i++) {
        await new Promise((r) => setTimeout(r, 300));
        await sd.systemctl('restart', unit); // returns once the new process sent READY=1
      }
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      result = await traffic.stop();
    }
    const starts = readReport(report).filter((r) => r.event === 'start');
    const exits = readReport(report).filter((r) => r.event === 'exit');
    assert.equal(starts.length, restarts + 1, JSON.stringify(starts));
    assert.deepEqual(result.errors, [], `${result.errors.length} failed requests of ${result.ok + result.errors.length}`);
    assert.ok(result.ok > 50, `only ${result.ok} requests were served`);
    for (const s of starts.slice(1)) {
      assert.equal(s.from, 'listenFds', 'a restarted process must get the listener from the fd store');
      assert.deepEqual(s.names, ['web']);
      assert.deepEqual(s.kinds, ['socket']);
      assert.equal(s.ino, first.ino, 'the very same socket came back');
    }
    // Served by every generation but the last one or two (a generation can be short under load).
    const servedBy = new Set([...result.bodies.keys()].map((b) => Number(b.split(' ')[1])));
    assert.ok(servedBy.size >= 3, `served by ${[...servedBy].join(', ')} only`);
    const last = starts[starts.length - 1]!;
    assert.equal((await sd.systemctl('show', '-p', 'MainPID', '--value', unit)).trim(), String(last.pid));
    assert.equal(exits.length, restarts);
    for (const e of exits) assert.equal(e.fds, e.base, `service fds not back to baseline: ${JSON.stringify(e.targets)}`);

    await sd.systemctl('stop', unit);
    const lastExit = await waitForValue('exit report', () => readReport(report).filter((r) => r.event === 'exit')[restarts]);
    assert.equal(lastExit.fds, lastExit.base);
    // Stopped for good: the store is flushed and the port is free again.
    await assert.rejects(get(port), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
    await shutDown([]);
  });

  // MainPID follows; a failing successor changes nothing.
  it('ExecReload=kill -HUP $MAINPID: 5 self-upgrades under load, 0 failed requests', async () => {
    sd = await bootSystemd();
    const port = await freePort();
    const report = reportFile('reload');
    const failFlag = reportFile('reload-fail-flag');
    fs.rmSync(failFlag);
    files.push(report, failFlag);
    const unit = 'fdpass-reload.service';
    const text = example(unit);
    for (const l of ['Type=notify', 'ExecReload=/bin/kill -HUP $MAINPID']) assert.ok(text.includes(l), `${unit} lacks ${l}`);
    sd.writeUnit(unit, text);
    sd.writeUnit(
      `${unit}.d/test.conf`,
      [
        '[Service]',
        'ExecStart=',
        `ExecStart=${process.execPath} ${path.join(__dirname, 'fixtures', 'upgrade-app.js')} ${port} ${failFlag}`,
        `Environment=FDPASS_TEST_REPORT=${report}`,
        '',
      ].join('\n'),
    );
    await sd.systemctl('daemon-reload');
    await sd.systemctl('start', unit); // Type=notify: returns once the first process said READY=1
    const mainPid = async (): Promise<string> => (await sd!.systemctl('show', '-p', 'MainPID', '--value', unit)).trim();
    const active = async (): Promise<string> => (await sd!.systemctlStatus('is-active', unit)).stdout.trim();
    let current = await mainPid();
    assert.equal(await get(port), `gen ${current}`);
    const traffic = load(port, { workers: 4, keepAlive: false, maxSeconds: 90 });
    let result: Awaited<ReturnType<typeof traffic.stop>>;
    const pids = [current];
    try {
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 300));
        await sd.systemctl('reload', unit);
        const before = current;
        const deadline = Date.now() + 15_000;
        do {
          current = await mainPid();
          if (current !== before) break;
          await new Promise((r) => setTimeout(r, 20));
        } while (Date.now() < deadline);
        assert.notEqual(current, before, `reload ${i + 1}: MainPID stayed ${before}`);
        assert.equal(await active(), 'active');
        pids.push(current);
      }
      // A successor that exits before it is ready: nothing changes, and it is reaped.
      fs.writeFileSync(failFlag, '');
      await sd.systemctl('reload', unit);
      const failed = await waitForValue('the failed upgrade', () => readReport(report).find((r) => r.event === 'failed'), 15_000);
      assert.equal(failed.code, 'ERR_FDPASS_CLOSED');
      assert.equal(await mainPid(), current, 'MainPID stays with the process that kept serving');
      assert.equal(await active(), 'active');
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      result = await traffic.stop();
    }
    assert.deepEqual(result.errors, [], `${result.errors.length} failed requests of ${result.ok + result.errors.length}`);
    assert.equal(await get(port), `gen ${current}`);
    const zombies = sd.others().filter((p) => processState(p) === 'Z');
    assert.deepEqual(zombies, [], 'no zombie in the namespace');
    const serving = readReport(report)
      .filter((r) => r.event === 'serving')
      .map((r) => String(r.pid));
    assert.deepEqual(serving, pids, 'each reload started one successor, which became MainPID');
    await shutDown([unit]);
  });
});
