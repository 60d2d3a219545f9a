// `fdpass run` that fails to start leaves nothing behind: no notify directory, control socket or
// listener socket file.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { APP, stopLeftovers, supervise } from './helpers/fdpass-run';
import { tmpPath } from './helpers/tmp';

describe('fdpass run: a failed start', function () {
  this.timeout(30_000);
  afterEach(stopLeftovers);

  // The supervisor's os.tmpdir(), where its notify directory goes, private to the test.
  function privateTmp(): NodeJS.ProcessEnv {
    const tmp = tmpPath('tmp');
    fs.mkdirSync(tmp);
    return { ...process.env, TMPDIR: tmp };
  }

  // No notify directory, control socket or listener file.
  it('--watch of a missing path exits 1 with the reason and leaves no file behind', async () => {
    const env = privateTmp();
    const sock = tmpPath('app.sock');
    const control = tmpPath('ctl');
    const missing = tmpPath('missing');
    const sup = supervise(['-l', `unix:${sock}`, '-l', 'http=127.0.0.1:0', '--control', control, '-w', missing], [process.execPath, APP], {
      env,
    });
    assert.equal((await sup.exited).code, 1);
    assert.equal(sup.stderr(), `fdpass: --watch ${missing}: no such file or directory\n`);
    assert.deepEqual(fs.readdirSync(env.TMPDIR!), [], 'notify directory left');
    assert.equal(fs.existsSync(sock), false, 'listener socket file left');
    assert.equal(fs.existsSync(control), false, 'control socket left');
  });

  it('a --control that cannot be bound exits 1, and the Unix listener file it had bound is removed', async () => {
    const env = privateTmp();
    const sock = tmpPath('app.sock');
    const control = tmpPath('no-such-dir/ctl');
    const sup = supervise(['-l', `unix:${sock}`, '--control', control], [process.execPath, APP], { env });
    assert.equal((await sup.exited).code, 1);
    assert.match(sup.stderr(), /^fdpass: bind ENOENT: /);
    assert.deepEqual(fs.readdirSync(env.TMPDIR!), [], 'notify directory left');
    assert.equal(fs.existsSync(sock), false, 'listener socket file left');
  });
});
