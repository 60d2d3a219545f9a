// `fdpass run --watch`: a change reloads as SIGHUP does; one inotify watch per directory that is not
// ignored, never one in node_modules, .git or a --watch-ignore match; directories created later are
// watched too.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { APP, CLI, logged, stop, stopLeftovers, supervise } from './helpers/fdpass-run';
import { processState as state, spawnJson } from './helpers/children';
import { get, load, noErrors } from './helpers/http';
import { requires, unshare } from './helpers/requires';
import { tmpPath } from './helpers/tmp';
import { waitFor } from './helpers/wait';

/** The inotify watches a process holds: `inotify wd:` lines in the fdinfo of its inotify descriptors. */
function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== 'anon_inode:inotify') continue;
    n += fs
      .readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('inotify wd:')).length;
  }
  return n;
}

describe('fdpass run --watch', function () {
  this.timeout(60_000);
  afterEach(stopLeftovers);

  it('--watch reloads on edits in watched directories, new ones included, not in ignored ones', async () => {
    const dir = tmpPath('src');
    const watched = ['', 'lib', 'lib/deep', 'views'];
    for (const d of watched) fs.mkdirSync(path.join(dir, d), { recursive: true });
    for (let i = 0; i < 2000; i++) fs.mkdirSync(path.join(dir, 'node_modules', `pkg${i % 100}`, `d${i}`), { recursive: true });
    fs.mkdirSync(path.join(dir, '.git', 'objects'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'gen', 'out'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'lib', 'deep', 'app.js'), '1');
    const sup = supervise(
      ['-l', 'http=127.0.0.1:0', '--watch', dir, '--watch-ignore', 'gen', '--watch-delay', '100'],
      [process.execPath, APP],
    );
    await sup.expect('ready');
    assert.equal(inotifyWatches(sup.pid), watched.length, 'one watch per directory not ignored');

    fs.writeFileSync(path.join(dir, 'lib', 'deep', 'app.js'), '2');
    await logged(sup, /reload \(--watch: .*lib\/deep\/app\.js changed\)/);
    await logged(sup, /reload done: generation 2/);

    // A directory created after start is watched (once the mkdir's own reload is done).
    fs.mkdirSync(path.join(dir, 'lib', 'fresh'));
    await waitFor('a watch on lib/fresh', () => inotifyWatches(sup.pid) === watched.length + 1);
    await logged(sup, /reload done: generation 3/);
    fs.writeFileSync(path.join(dir, 'lib', 'fresh', 'new.js'), 'x');
    await logged(sup, /reload \(--watch: .*lib\/fresh\/new\.js changed\)/);
    await logged(sup, /reload done: generation 4/);

    // Nothing in ignored directories, new ones included, is watched or reloads.
    fs.mkdirSync(path.join(dir, 'node_modules', 'pkg0', 'new'));
    fs.writeFileSync(path.join(dir, 'node_modules', 'pkg0', 'd0', 'index.js'), 'x');
    fs.writeFileSync(path.join(dir, 'gen', 'out', 'bundle.js'), 'x');
    fs.writeFileSync(path.join(dir, '.git', 'objects', 'ab'), 'x');
    await new Promise((r) => setTimeout(r, 1000)); // ten times --watch-delay
    assert.equal((sup.stderr().match(/reload \(/g) ?? []).length, 3, sup.stderr());
    assert.equal(inotifyWatches(sup.pid), watched.length + 1);

    // A removed directory's watch goes.
    fs.rmSync(path.join(dir, 'lib', 'fresh'), { recursive: true });
    await waitFor('the watch on lib/fresh to go', () => inotifyWatches(sup.pid) === watched.length);
    assert.equal(await stop(sup), 0);
  });

  it('at the inotify watch limit it logs what is not watched and serves; the rest still reloads', async function () {
    requires(this, unshare(['--user', '--map-root-user']));
    const dir = tmpPath('src');
    for (let i = 0; i < 10; i++) fs.mkdirSync(path.join(dir, `d${i}`), { recursive: true });
    // A user namespace of its own, whose inotify watch limit (user.max_inotify_watches) is 3.
    const sup = spawnJson('unshare', [
      '--user',
      '--map-root-user',
      'sh',
      '-c',
      'echo 3 > /proc/sys/user/max_inotify_watches && exec "$@"',
      'sh',
      process.execPath,
      CLI,
      'run',
      '-l',
      'http=127.0.0.1:0',
      '--watch',
      dir,
      '--watch-delay',
      '100',
      '--',
      process.execPath,
      APP,
    ]);
    const { port } = await sup.expect<{ port: number }>('ready');
    assert.match(sup.stderr(), /--watch: the inotify watch limit is reached \(.*\): .* and \d+ more directories not watched/);
    assert.match(await get(port), /^1 /);
    fs.writeFileSync(path.join(dir, 'app.js'), 'x'); // the root is watched first
    await logged(sup, /reload done: generation 2/);
    assert.equal(await stop(sup), 0);
  });

  it('--watch: a file change reloads the same way, with no failed request', async () => {
    const dir = tmpPath('src');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'app.js'), '1');
    const sup = supervise(['-l', 'http=127.0.0.1:0', '--watch', dir, '--watch-delay', '100'], [process.execPath, APP]);
    const { port } = await sup.expect<{ port: number }>('ready');
    const fresh = load(port, { workers: 3, keepAlive: false, maxSeconds: 60 });
    fs.writeFileSync(path.join(dir, 'app.js'), '2');
    await logged(sup, /reload \(--watch: .*app\.js changed\)/);
    await logged(sup, /reload done: generation 2/);
    const r = await fresh.stop();
    noErrors(r, 'new connections');
    assert.match(await get(port), /^2 /);
    assert.equal(await stop(sup), 0);
  });

  it('--watch-ignore: changes matching a glob (and under node_modules, .git) do not reload; others do', async () => {
    const dir = tmpPath('src');
    for (const d of ['gen', 'node_modules', '.git']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    fs.writeFileSync(path.join(dir, 'app.js'), '1');
    const sup = supervise(
      ['-l', 'http=127.0.0.1:0', '--watch', dir, '--watch-ignore', '*.log', '--watch-ignore', 'gen/**', '--watch-delay', '100'],
      [process.execPath, APP],
    );
    const first = await sup.expect<{ pid: number; port: number }>('ready');
    for (const f of ['server.log', 'gen/out.js', 'node_modules/dep.js', '.git/index']) fs.writeFileSync(path.join(dir, f), 'x');
    // A change that is not ignored reloads within --watch-delay of its event; give the ignored ones
    // ten times that, then make one that counts.
    await new Promise((r) => setTimeout(r, 1000));
    assert.doesNotMatch(sup.stderr(), /reload \(/, 'an ignored change reloaded');
    // No generation was started, and the first one serves on.
    assert.deepEqual(await sup.next(50).catch(() => 'nothing'), 'nothing', 'a generation said something after an ignored change');
    assert.equal(await get(first.port), `1 ${first.pid}`);
    assert.equal(state(first.pid) !== undefined && state(first.pid) !== 'Z', true, 'generation 1 was stopped');
    fs.writeFileSync(path.join(dir, 'app.js'), '2');
    await logged(sup, /reload done: generation 2/);
    assert.match(await get(first.port), /^2 /);
    assert.equal((sup.stderr().match(/reload \(--watch/g) ?? []).length, 1, sup.stderr());
    assert.match(sup.stderr(), /reload \(--watch: .*app\.js changed\)/);
    assert.equal(await stop(sup), 0);
  });
});
