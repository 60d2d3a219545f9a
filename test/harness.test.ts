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
});
