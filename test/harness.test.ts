// The test harness itself (hooks.ts, helpers/): what it promises holds where CI runs it, in a
// checkout others cannot read and on a run that fails.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runFixture, spawnJson } from './helpers/children';
import { NOBODY, openToOthers } from './helpers/foreign';
import { tmpPath } from './helpers/tmp';

const REPO = path.join(__dirname, '..', '..');

describe('test harness', () => {
  it('a fixture run as another uid works from a checkout that uid cannot traverse', async function () {
    if (process.getuid?.() !== 0) this.skip(); // running a child as another user needs root
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

  it('a run fails on a socket file, a grandchild, a callback-style test leaking an fd and a before hook leaking one', async () => {
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
  execFileSync('sh', ['-c', 'setsid sleep 31 >/dev/null 2>&1 &']);
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
});
