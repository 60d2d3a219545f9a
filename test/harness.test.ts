// The test harness itself (hooks.ts, helpers/): what it promises holds where CI runs it, in a
// checkout others cannot read and on a run that fails.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runFixture, spawnJson } from './helpers/children';
import { NOBODY, openToOthers } from './helpers/foreign';
import { requires, root } from './helpers/requires';
import { tmpPath } from './helpers/tmp';

const REPO = path.join(__dirname, '..', '..');

describe('test harness', () => {
  it('a fixture run as another uid works from a checkout that uid cannot traverse', async function () {
    requires(this, root('running a child as another user'));
    const mode = fs.statSync(REPO).mode & 0o7777;
    fs.chmodSync(REPO, 0o700); // as a clone in `mktemp -d` or in root's home
    try {
      fs.chmodSync(path.dirname(tmpPath('x')), 0o1777);
      const old = runFixture('handoff-old', [tmpPath('control.sock'), 'http'], { uid: NOBODY, gid: NOBODY });
      await old.expect('serving');
      assert.equal(fs.statSync(`/proc/${old.pid}`).uid, NOBODY);
      old.send({ cmd: 'exit' });
      assert.equal((await old.exited).code, 0, old.stderr());
    } finally {
      fs.chmodSync(REPO, mode);
    }
  });

  it('a run whose failed test left a server open exits with a failing status soon after its last test', async () => {
    openToOthers();
    const spec = tmpPath('left-open.test.js');
    fs.writeFileSync(
      spec,
      "it('fails half-way', () => { require('node:net').createServer().listen(0, '127.0.0.1'); throw new Error('planted'); });\n",
    );
    const mocha = path.join(REPO, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const started = Date.now();
    const run = spawnJson(process.execPath, [mocha, '--no-config', '--require', path.join(__dirname, 'hooks.js'), spec]);
    const { code } = await run.exited;
    const took = Date.now() - started;
    assert.notEqual(code, 0);
    assert.match(run.stderr(), /held open by:\n( {2}.*\n)* {2}Server \{"address":"127\.0\.0\.1"/);
    assert.ok(took < 15_000, `exited ${took} ms after start`);
  });

  it('a run fails on a leaked socket file, grandchild or fd (in a callback test or a before hook)', async () => {
    openToOthers();
    const spec = tmpPath('planted.test.js');
    const helpers = path.join(__dirname, 'helpers');
    fs.writeFileSync(
      spec,
      `const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { tmpPath } = require(${JSON.stringify(path.join(helpers, 'tmp.js'))});
it('leaves a socket file', () => {
  execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', tmpPath('left.sock')]);
});
it('leaves a grandchild', () => {
  // Returns once the grandchild is sleep: a loaded machine could otherwise end the test before it exec'd.
  execFileSync('sh', ['-c', 'setsid sleep 31 >/dev/null 2>&1 & while [ "$(cat /proc/$!/comm 2>/dev/null)" != sleep ]; do :; done']);
});
it('leaks an fd in a callback-style test', (done) => {
  fs.openSync('/dev/null', 'r');
  setImmediate(done);
});
describe('a suite', () => {
  before(() => fs.openSync('/dev/null', 'r'));
  it('passes', () => {});
});
`,
    );
    const mocha = path.join(REPO, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const run = spawnJson(process.execPath, [mocha, '--no-config', '--require', path.join(__dirname, 'hooks.js'), spec]);
    const { code } = await run.exited;
    let out = '';
    for (;;) {
      try {
        out += `${String((await run.next(1000)).text)}\n`;
      } catch {
        break;
      }
    }
    assert.notEqual(code, 0);
    assert.match(out, /1 passing[\s\S]*4 failing/, out);
    assert.match(out, /test left 1 socket file\(s\): left\.sock/);
    assert.match(out, /test left 1 descendant process\(es\) running:\n\s+\d+: sleep 31/);
    assert.match(out, /leaks an fd in a callback-style test[\s\S]*test leaked 1 descriptor\(s\):\n\s+\d+ -> \/dev\/null/);
    // The before hook's fd, and the one the failed callback-style test leaked.
    assert.match(
      out,
      /"after all" hook[\s\S]*2 descriptor\(s\) open at the end of the run[\s\S]*:\n\s+\d+ -> \/dev\/null\n\s+\d+ -> \/dev\/null/,
    );
  });

  it('a missing prerequisite fails under CI=1 and otherwise skips, listed with its reason at the end', async () => {
    openToOthers();
    const spec = tmpPath('requires.test.js');
    fs.writeFileSync(
      spec,
      `const { requires } = require(${JSON.stringify(path.join(__dirname, 'helpers', 'requires.js'))});
it('needs a thing', function () { requires(this, 'a planted thing'); });
describe('a suite that needs another', () => {
  before(function () { requires(this, 'another planted thing'); });
  it('a', () => {});
  it('b', () => {});
});
it('needs nothing missing', function () { requires(this, undefined); });
`,
    );
    const mocha = path.join(REPO, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const run = async (ci: string | undefined): Promise<{ code: number | null; out: string }> => {
      const env = { ...process.env };
      delete env.CI;
      if (ci !== undefined) env.CI = ci;
      const child = spawnJson(process.execPath, [mocha, '--no-config', '--require', path.join(__dirname, 'hooks.js'), spec], { env });
      let out = '';
      const { code } = await child.exited;
      for (;;) {
        try {
          out += `${String((await child.next(1000)).text)}\n`;
        } catch {
          break;
        }
      }
      return { code, out };
    };
    const local = await run(undefined);
    assert.equal(local.code, 0, local.out);
    assert.match(local.out, /1 passing[\s\S]*3 pending/, local.out);
    assert.match(
      local.out,
      / {2}3 skipped \(a prerequisite is missing\):\n {4}needs a thing: needs a planted thing\n {4}a suite that needs another \(2 tests\): needs another planted thing\n/,
    );
    const ci = await run('1');
    assert.notEqual(ci.code, 0, ci.out);
    assert.match(ci.out, /1 passing[\s\S]*2 failing/, ci.out);
    assert.doesNotMatch(ci.out, /pending|skipped/);
    assert.match(ci.out, /needs a thing:\n\s+Error: a prerequisite is missing, and in CI \(CI=1\) that fails: a planted thing/);
    assert.match(ci.out, /"before all" hook[\s\S]*Error: a prerequisite is missing, and in CI \(CI=1\) that fails: another planted thing/);
  });
});
