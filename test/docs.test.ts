// The docs are tests: every code block of README.md and docs/*.md is run, type-checked against the
// shipped types (dist/index.d.ts, imported as 'fdpass'), compared with the file it quotes, or marked
// as not run with a reason (markers: test/helpers/docs.ts). A snippet that stops working fails here.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exitedCleanly, spawnJson, type Fixture } from './helpers/children';
import { allBlocks, docFiles, docScenario, projectDir, CODE_LANGS, ROOT, type DocBlock } from './helpers/docs';
import { get, load, type LoadResult } from './helpers/http';
import { freePort, line } from './helpers/net';
import { tmpPath } from './helpers/tmp';
import { sleep } from './helpers/wait';

const blocks = allBlocks();

// A process of a scenario: started in the scenario's directory, like a user in a terminal.
function start(dir: string, command: string[], env: NodeJS.ProcessEnv = process.env): Fixture {
  return spawnJson('/bin/sh', ['-c', 'cd "$0" && exec "$@"', dir, ...command], { env });
}

async function stopServer(f: Fixture): Promise<void> {
  f.proc.kill('SIGTERM');
  await f.exited;
}

/** The first line a process printed (the snippets say when they are ready), as text. */
async function firstLine(f: Fixture, what: string): Promise<string> {
  const m = await f.next<{ event?: string; text?: string }>(20_000).catch((err: Error) => {
    throw new Error(`${what}: ${err.message}`);
  });
  return m.text ?? JSON.stringify(m);
}

// Scenarios whose processes do not all end by themselves (servers): driven here, step by step.
const drivers: Record<string, (this: Mocha.Context) => Promise<void>> = {
  // README first screen: recv.mjs, send.mjs and the three commands, 8080 and the socket path swapped
  // for free ones.
  async quickstart() {
    need('curl');
    const port = String(await freePort());
    const dir = tmpPath('quickstart');
    const files = docScenario('quickstart', dir, [
      ['8080', port],
      ['/tmp/fdpass-demo.sock', path.join(dir, 'demo.sock')],
    ]);
    const commands = shellLines(files['commands.sh']!);
    assert.deepEqual(
      commands.map((c) => c.split(' ')[0]),
      ['node', 'node', 'curl'],
      'terminal 1, terminal 2, then curl',
    );
    const recv = start(dir, commands[0]!.split(' '));
    assert.match(await firstLine(recv, 'recv.mjs'), /^waiting on /);
    const send = start(dir, commands[1]!.split(' '));
    await exitedCleanly(send, 20_000, 'send.mjs');
    assert.equal(await firstLine(send, 'send.mjs'), 'handed over');
    assert.equal(await firstLine(recv, 'recv.mjs'), `got "port ${port}", serving it`);
    // curl without the sanitizer preload of npm run test:asan (under libasan it hangs; it is not our code).
    const { LD_PRELOAD: _preload, ...env } = process.env;
    const curl = spawnSync('/bin/sh', ['-c', commands[2]!], { cwd: dir, env, encoding: 'utf8', timeout: 10_000, killSignal: 'SIGKILL' });
    assert.equal(curl.stdout, `served by receiver ${recv.pid}\n`, curl.stderr);
    await stopServer(recv);
  },

  // Two listeners moved with recvFds/sendFds; the old process exits, the new one serves both.
  async 'pass-listeners'() {
    const [web, admin] = [String(await freePort()), String(await freePort())];
    const dir = tmpPath('pass-listeners');
    docScenario('pass-listeners', dir, [
      ['8080', web],
      ['8081', admin],
      ['/tmp/myapp-pass.sock', path.join(dir, 'pass.sock')],
    ]);
    const fresh = start(dir, ['node', 'new.mjs']);
    assert.match(await firstLine(fresh, 'new.mjs'), /^waiting/);
    await exitedCleanly(start(dir, ['node', 'old.mjs']), 20_000, 'old.mjs');
    assert.match(await firstLine(fresh, 'new.mjs'), /^serving web and admin/);
    assert.equal(await get(Number(web)), `web, served by ${fresh.pid}\n`);
    assert.equal(await get(Number(admin)), `admin, served by ${fresh.pid}\n`);
    await stopServer(fresh);
  },

  // fdpass run: app.mjs, then the commands (`npx fdpass` is this checkout's CLI), a request, a reload, a
  // request from the next generation, then SIGTERM: the app drains and the supervisor exits 0.
  async 'fdpass-run'() {
    const port = String(await freePort());
    const dir = tmpPath('fdpass-run');
    const commands = cliCommands('fdpass-run', dir, [
      ['8080', port],
      ['/tmp/myapp', path.join(dir, 'myapp')],
    ]);
    assert.deepEqual(
      commands.map((c) => c.split(' ').slice(0, 3).join(' ')),
      [`mkdir -p ${path.join(dir, 'myapp')}`, `${CLI} run`, `${CLI} reload`],
    );
    assert.equal(spawnSync('/bin/sh', ['-c', commands[0]!], { cwd: dir }).status, 0);
    const supervisor = start(dir, commands[1]!.split(' '));
    const first = await until(() => get(Number(port)), 'the first generation to serve');
    assert.match(first, /^hello from \d+\n$/);
    const reload = spawnSync('/bin/sh', ['-c', commands[2]!], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    assert.equal(reload.status, 0, `${reload.stdout}${reload.stderr}\n${supervisor.stderr()}`);
    const second = await get(Number(port));
    assert.match(second, /^hello from \d+\n$/);
    assert.notEqual(second, first, 'the next generation serves');
    supervisor.proc.kill('SIGTERM');
    await exitedCleanly(supervisor, 20_000, 'fdpass run');
  },

  // The Python app under fdpass run, with the interpreter the docs name (/usr/bin/python3, which has
  // python3-systemd): it serves, 3 reloads as written under keep-alive and new-connection load fail
  // no request, and SIGTERM drains it: the supervisor exits 0.
  async 'fdpass-run-python'() {
    const py = spawnSync('/usr/bin/python3', ['-c', 'import systemd.daemon'], { encoding: 'utf8' });
    assert.equal(py.status, 0, `/usr/bin/python3 lacks python3-systemd: run sudo scripts/install-test-deps.sh\n${py.stderr}`);
    const port = String(await freePort());
    const dir = tmpPath('fdpass-run-python');
    const commands = cliCommands('fdpass-run-python', dir, [
      ['8080', port],
      ['/tmp/myapp-py.ctl', path.join(dir, 'ctl')],
    ]);
    assert.deepEqual(
      commands.map((c) => c.split(' ').slice(0, 3).join(' ')),
      [`${CLI} run`, `${CLI} reload`],
    );
    assert.ok(commands[0]!.endsWith(' -- /usr/bin/python3 app.py'), 'the interpreter is named');
    await reloadsUnderLoad(dir, commands, Number(port));
  },

  // examples/express-app.mjs under fdpass run, with the commands of docs/fdpass-run.md run from the
  // repository's root as a clone would: it serves, 3 reloads under load fail no request, SIGTERM drains.
  async 'express-app'() {
    this.timeout(60_000); // a tsc run, then 3 reloads
    const port = String(await freePort());
    const dir = tmpPath('express-app');
    const commands = cliCommands('express-app', dir, [
      ['8080', port],
      ['/tmp/express-app.ctl', path.join(dir, 'ctl')],
    ]);
    assert.deepEqual(
      commands.map((c) => c.split(' ').slice(0, 3).join(' ')),
      [`${CLI} run`, `${CLI} reload`],
    );
    assert.ok(commands[0]!.endsWith(' -- node examples/express-app.mjs'), 'the example file is run');
    // It type-checks against Express's types and fdpass's (examples/tsconfig.json has checkJs).
    const tsc = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'examples', '--noEmit', '--pretty', 'false'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.equal(tsc.status, 0, `tsc -p examples:\n${tsc.stdout}${tsc.stderr}`);
    await reloadsUnderLoad(ROOT, commands, Number(port));
  },

  // systemd-socket-activate binds both ports and starts activated-server.mjs with them as "web" and "admin".
  async 'socket-activation'() {
    need('systemd-socket-activate');
    const [web, admin] = [String(await freePort()), String(await freePort())];
    const dir = tmpPath('socket-activation');
    const files = docScenario('socket-activation', dir, [
      ['8080', web],
      ['8081', admin],
    ]);
    const [command, ...rest] = shellLines(files['commands.sh']!);
    assert.deepEqual(rest, []);
    const activator = start(dir, command!.split(' '));
    assert.equal(await until(() => get(Number(web)), 'web to answer'), 'hello\n');
    const pid = await until(() => line(Number(admin)), 'admin to answer');
    assert.match(pid, /^pid \d+$/);
    process.kill(Number(pid.slice(4)), 'SIGTERM'); // the app (systemd-socket-activate exec()s it, or forks)
    if (activator.proc.exitCode === null) activator.proc.kill('SIGTERM');
    await activator.exited;
  },

  // "Run this twice": both processes accept on one port, and new connections reach both.
  async reuseport() {
    const port = String(await freePort());
    const dir = tmpPath('reuseport');
    docScenario('reuseport', dir, [['8080', port]]);
    const servers = [start(dir, ['node', 'server.cjs']), start(dir, ['node', 'server.cjs'])];
    for (const s of servers) assert.equal(await firstLine(s, 'server.cjs'), `${s.pid} listening on ${port}`);
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 2; i++) seen.add(await get(Number(port)));
    assert.deepEqual([...seen].sort(), servers.map((s) => `served by ${s.pid}\n`).sort());
    await Promise.all(servers.map(stopServer));
  },
};

// This checkout's CLI, as `npx fdpass` runs it in a clone.
const CLI = `${process.execPath} ${path.join(ROOT, 'dist', 'cli', 'main.js')}`;

// `fdpass run` started with commands[0] in `dir`: once it serves, 3 reloads with commands[1] under
// keep-alive and new-connection load fail no request and a later generation serves; then SIGTERM
// drains it and the supervisor exits 0.
async function reloadsUnderLoad(dir: string, commands: string[], port: number): Promise<void> {
  const supervisor = start(dir, commands[0]!.split(' '));
  try {
    const first = await until(() => get(port), 'the first generation to serve');
    assert.match(first, /^hello from \d+\n$/);
    const loads = [load(port, { workers: 2, keepAlive: true }), load(port, { workers: 2, keepAlive: false })];
    for (let i = 0; i < 3; i++) {
      await sleep(300);
      await exitedCleanly(start(dir, commands[1]!.split(' ')), 60_000, `fdpass reload ${i + 1}`);
    }
    await sleep(300);
    const results: LoadResult[] = await Promise.all(loads.map((l) => l.stop()));
    for (const [i, r] of results.entries()) {
      const what = i === 0 ? 'keep-alive' : 'new connections';
      assert.deepEqual(r.errors.slice(0, 10), [], `${what}: ${r.errors.length} failed requests. log:\n${supervisor.stderr()}`);
      assert.ok(r.ok > 0, `${what}: nothing served`);
    }
    const last = await get(port);
    assert.notEqual(last, first, 'a later generation serves');
    supervisor.proc.kill('SIGTERM');
    await exitedCleanly(supervisor, 20_000, 'fdpass run');
  } finally {
    if (supervisor.proc.exitCode === null && supervisor.proc.signalCode === null) supervisor.proc.kill('SIGKILL');
  }
}

// A scenario written into `dir` (see docScenario), and the commands of its commands.sh with
// `npx fdpass` replaced by CLI.
function cliCommands(scenario: string, dir: string, replace: Array<[string, string]>): string[] {
  const files = docScenario(scenario, dir, replace);
  return shellLines(files['commands.sh']!).map((c) => c.replace(/^npx fdpass /, `${CLI} `));
}

// The commands of a sh block, comments and blank lines dropped.
function shellLines(file: string): string[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

// A command the README runs, installed by scripts/install-test-deps.sh (CI runs it).
function need(command: string): void {
  const found = spawnSync('/bin/sh', ['-c', `command -v ${command}`]).status === 0;
  assert.ok(found, `${command} is missing: run sudo scripts/install-test-deps.sh`);
}

// Retries `fn` (a request to a server that is starting) for up to 15 s.
async function until<T>(fn: () => Promise<T>, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`waiting for ${what}: ${(err as Error).message}`);
      await sleep(100);
    }
  }
}

// Scenarios driven by another test file (which calls docScenario('name', ...)).
function drivenElsewhere(): Set<string> {
  const names = new Set<string>();
  const testDir = path.join(ROOT, 'test');
  for (const f of fs.readdirSync(testDir).filter((f) => f.endsWith('.test.ts') && f !== 'docs.test.ts')) {
    for (const m of fs.readFileSync(path.join(testDir, f), 'utf8').matchAll(/docScenario\('([\w.-]+)'/g)) names.add(m[1]!);
  }
  return names;
}

function scenarios(): Map<string, DocBlock[]> {
  const map = new Map<string, DocBlock[]>();
  for (const b of blocks) {
    if (b.marker?.kind !== 'run' && b.marker?.kind !== 'file') continue;
    map.set(b.marker.scenario, [...(map.get(b.marker.scenario) ?? []), b]);
  }
  return map;
}

// The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces to
// hyphens, and -1, -2, ... for repeats.
function headingSlugs(file: string): Set<string> {
  const slugs = new Set<string>();
  const seen = new Map<string, number>();
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  for (const m of text.matchAll(/^#+\s+(.*)$/gm)) {
    const base = m[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    slugs.add(n === 0 ? base : `${base}-${n}`);
  }
  return slugs;
}

// The file a code block is type-checked as: its scenario name, else by its module style.
function checkedName(b: DocBlock, i: number): string {
  const m = b.marker;
  if (m?.kind === 'run' || m?.kind === 'file') return `${i}-${m.scenario}-${m.name}`;
  if (b.lang === 'ts' || b.lang === 'typescript') return `${i}-fragment.mts`;
  return /\brequire\(/.test(b.code) && !/^import /m.test(b.code) ? `${i}-fragment.cjs` : `${i}-fragment.mjs`;
}

describe('docs: README.md and docs/*.md', () => {
  it('every code block has a marker that says how it is checked', () => {
    assert.ok(blocks.length > 10, `found ${blocks.length} blocks`);
    const problems: string[] = [];
    for (const b of blocks) {
      if (b.badMarker) problems.push(`${b.where}: marker does not parse: ${b.badMarker}`);
      else if (CODE_LANGS.has(b.lang) && !['run', 'file', 'fragment'].includes(b.marker?.kind ?? '')) {
        problems.push(`${b.where}: a ${b.lang} block needs <!-- test: run|file SCENARIO/FILE --> or <!-- test: fragment -->`);
      } else if (b.lang !== '' && b.lang !== 'text' && b.marker === null) {
        problems.push(`${b.where}: a ${b.lang} block needs a marker (run, file, excerpt, or skip with a reason)`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('every scenario is run: by its run blocks, a driver here, or another test', () => {
    const elsewhere = drivenElsewhere();
    const problems: string[] = [];
    for (const [name, bs] of scenarios()) {
      const driven = drivers[name] !== undefined || elsewhere.has(name);
      const runs = bs.some((b) => b.marker?.kind === 'run');
      if (!driven && !runs) problems.push(`scenario ${name} (${bs[0]!.where}): no run block and no driver`);
      if (driven && runs) problems.push(`scenario ${name} (${bs[0]!.where}): has run blocks and a driver`);
    }
    for (const name of [...Object.keys(drivers), ...elsewhere]) {
      if (!scenarios().has(name)) problems.push(`a driver for scenario ${name}, which the docs no longer have`);
    }
    assert.deepEqual(problems, []);
  });

  it('every JavaScript/TypeScript block type-checks against dist/index.d.ts (one tsc run)', function () {
    const dir = projectDir(tmpPath('typecheck'));
    const byFile = new Map<string, DocBlock>();
    blocks.forEach((b, i) => {
      if (!CODE_LANGS.has(b.lang)) return;
      const name = checkedName(b, i);
      byFile.set(name, b);
      fs.writeFileSync(path.join(dir, name), b.code);
    });
    // Not strict: the snippets are plain JavaScript; what must hold is that every name is defined and
    // every fdpass call matches its declaration.
    const tsconfig = {
      compilerOptions: {
        allowJs: true,
        checkJs: true,
        noEmit: true,
        strict: false,
        module: 'node16',
        moduleResolution: 'node16',
        target: 'es2022',
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
        skipLibCheck: true,
      },
      include: ['*.mjs', '*.cjs', '*.js', '*.mts', '*.ts'],
    };
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', dir, '--pretty', 'false'], { encoding: 'utf8', cwd: dir });
    // TS2769 (no overload matches) is dropped: in plain JavaScript, `new Promise((resolve) =>
    // server.listen(port, resolve))` passes a one-argument resolve where Node's types want `() => void`.
    // fdpass's own functions have no overloads: a wrong call to them is TS2345 and still fails here.
    const diagnostics = `${tsc.stdout}${tsc.stderr}`.split(/\n(?=\S)/).filter((d) => d.trim() !== '' && !/ error TS2769: /.test(d));
    const errors = diagnostics
      .flatMap((d) => d.split('\n'))
      .map((line) => {
        const m = /^([^(]+)\((\d+),(\d+)\): (.*)$/.exec(line);
        const b = m ? byFile.get(m[1]!) : undefined;
        if (!m || !b) return line;
        return `${b.where.replace(/:\d+$/, '')}:${Number(b.where.split(':')[1]) + Number(m[2])} (${m[1]}): ${m[4]}`;
      });
    assert.deepEqual(errors, [], 'type errors in doc snippets');
    assert.ok(tsc.status === 0 || /TS2769/.test(tsc.stdout), `tsc exited with ${tsc.status}: ${tsc.stderr}`); // it ran, and failed only on what is dropped
  });

  it('every excerpt block matches the file it quotes', () => {
    const problems: string[] = [];
    for (const b of blocks) {
      if (b.marker?.kind !== 'excerpt') continue;
      const quoted = new Set(
        b.marker.paths.flatMap((p) =>
          fs
            .readFileSync(path.join(ROOT, p), 'utf8')
            .split('\n')
            .map((l) => l.trimEnd()),
        ),
      );
      for (const [i, line] of b.code.split('\n').entries()) {
        const names = b.marker.paths.map((p) => `# ${path.basename(p)}`); // a line naming the file quoted next
        if (line.trim() !== '' && !quoted.has(line.trimEnd()) && !names.includes(line.trim()))
          problems.push(`${b.where}+${i + 1}: not in ${b.marker.paths.join(' or ')}: ${line}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('docs/API.md has a row for every code of the FdpassErrorCode union (lib/errors.ts)', () => {
    const union = /export type FdpassErrorCode =([^;]*);/.exec(fs.readFileSync(path.join(ROOT, 'lib', 'errors.ts'), 'utf8'));
    assert.ok(union, 'lib/errors.ts declares FdpassErrorCode');
    const codes = [...union[1]!.matchAll(/'(ERR_FDPASS_\w+)'/g)].map((m) => m[1]!);
    assert.ok(codes.length > 10, `found ${codes.length} codes`);
    const api = fs.readFileSync(path.join(ROOT, 'docs', 'API.md'), 'utf8');
    const rows = new Set([...api.matchAll(/^\| `(ERR_FDPASS_\w+)` \|/gm)].map((m) => m[1]!));
    assert.deepEqual(
      codes.filter((c) => !rows.has(c)),
      [],
      'codes without a row in the error table of docs/API.md',
    );
  });

  it('every guide under docs/ is reached from the README', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const unlinked = docFiles().filter((f) => f !== 'README.md' && !readme.includes(`](${f}`));
    assert.deepEqual(unlinked, []);
  });

  it('every relative link reaches a file, and every #anchor a heading (GitHub slugs)', () => {
    const problems: string[] = [];
    for (const file of docFiles()) {
      const text = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
        const [rel, anchor] = target.split('#') as [string, string | undefined];
        const linked = rel === '' ? file : path.normalize(path.join(path.dirname(file), rel));
        if (!fs.existsSync(path.join(ROOT, linked))) problems.push(`${file}: ${target}: no file ${linked}`);
        else if (anchor !== undefined && !headingSlugs(linked).has(anchor))
          problems.push(`${file}: ${target}: no heading #${anchor} in ${linked}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  describe('scenarios', () => {
    for (const [name, bs] of scenarios()) {
      if (drivers[name] !== undefined) {
        it(`${name} (${bs[0]!.where}, driven)`, drivers[name]);
        continue;
      }
      const runs = bs.filter((b) => b.marker?.kind === 'run');
      if (runs.length === 0) continue; // driven by another test
      // Run blocks start in order; each but the last says it is ready on its first line of output;
      // all must end by themselves with status 0.
      it(`${name} (${bs[0]!.where}): ${runs.map((b) => (b.marker as { name: string }).name).join(', then ')}`, async () => {
        const dir = tmpPath(name);
        docScenario(name, dir);
        const procs: Fixture[] = [];
        for (const [i, b] of runs.entries()) {
          const file = (b.marker as { name: string }).name;
          const p = start(dir, ['node', file]);
          procs.push(p);
          if (i < runs.length - 1) await firstLine(p, file);
        }
        for (const [i, p] of procs.entries())
          await exitedCleanly(p, 20_000, `${(runs[i]!.marker as { name: string }).name} (${runs[i]!.where})`);
        await sleep(0);
      });
    }
  });
});
