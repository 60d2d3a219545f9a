// `fdpass run` and the fd store (FDSTORE=1, as systemd's): what a generation stores goes to the next
// ones by name, bounded by --fd-store-max and by what exec(2) can pass in LISTEN_FDNAMES.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { APP, logged, reloadCmd, stop, stopLeftovers, supervise } from './helpers/fdpass-run';
import { python3Systemd, requires } from './helpers/requires';
import { tmpPath } from './helpers/tmp';

/** Linux's MAX_ARG_STRLEN: one environment string, NUL included (4 KiB pages). */
const MAX_ARG_STRLEN = 131_072;

describe('fdpass run: the fd store', function () {
  this.timeout(60_000);
  afterEach(stopLeftovers);
  // Stored with fdpass storeFds, bounded by --fd-store-max.
  it('FDSTORE=1 fds go to the next generations by name; FDSTOREREMOVE=1 drops them', async () => {
    const control = tmpPath('ctl');
    const plan = tmpPath('plan.json');
    const state1 = tmpPath('state');
    const extra = tmpPath('extra');
    fs.writeFileSync(state1, 'state of generation 1');
    fs.writeFileSync(extra, 'extra');
    fs.writeFileSync(plan, JSON.stringify({ 1: 'fdstore', 2: 'fdstore', 3: 'fdstore-remove', 4: 'fdstore' }));
    const env = { ...process.env, STORE_FILE: state1, EXTRA_FILE: extra };
    const sup = supervise(
      ['-l', 'http=127.0.0.1:0', '--control', control, '--fd-store-max', '1'],
      [process.execPath, APP, `plan:${plan}`],
      { env },
    );
    const g1 = await sup.expect<{ stored: unknown[] }>('stored');
    assert.deepEqual(g1.stored, []);
    await sup.expect('ready');
    await logged(sup, /generation 1 \(pid \d+\): stored 1 fd\(s\) named 'state' \(fd store: 1 of 1\)/);
    await logged(
      sup,
      /generation 1 \(pid \d+\): stored 0 fd\(s\) named 'extra' \(fd store: 1 of 1\); 1 refused: the fd store is full \(--fd-store-max 1\)/,
    );
    assert.equal((await reloadCmd(control)).code, 0);
    const started2 = await sup.expect<{ gen: string; fds: number[]; names: string }>('started');
    assert.deepEqual([started2.gen, started2.fds, started2.names], ['2', [3, 4], 'http:state']);
    const g2 = await sup.expect<{ stored: unknown[] }>('stored');
    assert.deepEqual(g2.stored, [{ name: 'state', contents: 'state of generation 1' }]);
    // Generation 2 stores the same file again: kept once.
    await logged(sup, /generation 2 \(pid \d+\): stored 0 fd\(s\) named 'state' \(fd store: 1 of 1\); 1 already stored/);
    assert.equal((await reloadCmd(control)).code, 0);
    const started3 = await sup.expect<{ gen: string; names: string }>('started');
    assert.deepEqual([started3.gen, started3.names], ['3', 'http:state']);
    await logged(sup, /generation 3 \(pid \d+\): removed 1 fd\(s\) named 'state' from the fd store \(FDSTOREREMOVE=1\)/);
    assert.equal((await reloadCmd(control)).code, 0);
    const started4 = await sup.expect<{ gen: string; fds: number[]; names: string }>('started');
    assert.deepEqual([started4.gen, started4.fds, started4.names], ['4', [3], 'http']);
    assert.equal(await stop(sup), 0);
  });

  // The default --fd-store-max is 0.
  it('python3-systemd notify(fds=[...]) is refused and logged by default', async function () {
    requires(this, python3Systemd());
    const script = [
      'import json, os, signal, sys, time, systemd.daemon as d',
      'signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))', // before READY=1: a stop may follow at once
      "names = os.environ.get('LISTEN_FDNAMES', '')",
      'fds = d.listen_fds()',
      "got = [os.pread(fd, 64, 0).decode() for fd, n in zip(fds, names.split(':')) if n == 'py']",
      "print(json.dumps({'event': 'py', 'names': names, 'got': got}), flush=True)",
      'f = os.open(sys.argv[1], os.O_RDONLY)',
      "d.notify('FDSTORE=1\\nFDNAME=py', fds=[f])",
      "d.notify('READY=1')",
      'time.sleep(60)',
    ].join('\n');
    const file = tmpPath('py-state');
    fs.writeFileSync(file, 'from python');
    const on = supervise(['-l', 'http=127.0.0.1:0', '--fd-store-max', '4'], ['/usr/bin/python3', '-c', script, file]);
    assert.deepEqual(await on.expect('py'), { event: 'py', names: 'http', got: [] });
    await logged(on, /generation 1 \(pid \d+\): stored 1 fd\(s\) named 'py' \(fd store: 1 of 4\)/);
    await logged(on, /generation 1 \(pid \d+\) is ready/);
    on.proc.kill('SIGHUP');
    assert.deepEqual(await on.expect('py'), { event: 'py', names: 'http:py', got: ['from python'] });
    await logged(on, /reload done/);
    assert.equal(await stop(on), 0);
    const off = supervise(['-l', 'http=127.0.0.1:0'], ['/usr/bin/python3', '-c', script, file]);
    await logged(off, /generation 1 \(pid \d+\): FDSTORE=1 refused: the fd store is off \(--fd-store-max 0\); 1 fd\(s\) closed/);
    await logged(off, /generation 1 \(pid \d+\) is ready/);
    off.proc.kill('SIGHUP');
    assert.deepEqual(await off.expect('py'), { event: 'py', names: 'http', got: [] });
    await logged(off, /reload done/);
    assert.equal(await stop(off), 0);
  });

  // The limit is what fits in LISTEN_FDNAMES; the next generation gets the rest.
  it('FDSTORE=1 beyond what exec(2) can pass is refused and logged', async function () {
    requires(this, python3Systemd());
    // Generation 1 stores 3 x 200 pipes, each batch under a 255-character name: 600 x 256 bytes of
    // LISTEN_FDNAMES, more than one environment string may hold (a spawn would fail with E2BIG).
    const script = [
      'import json, os, signal, sys, time, systemd.daemon as d',
      'signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))',
      "gen = os.environ['FDPASS_GENERATION']",
      "names = os.environ.get('LISTEN_FDNAMES', '')",
      "print(json.dumps({'event': 'started', 'gen': gen, 'names': names, 'fds': len(d.listen_fds())}), flush=True)",
      "if gen == '1':",
      "    for c in 'abc':",
      '        fds = []',
      '        for i in range(200):',
      '            r, w = os.pipe()',
      '            os.close(w)',
      '            fds.append(r)',
      "        d.notify('FDSTORE=1\\nFDNAME=' + c * 255, fds=fds)",
      '        for f in fds: os.close(f)',
      "d.notify('READY=1')",
      'time.sleep(60)',
    ].join('\n');
    const sup = supervise(['-l', 'http=127.0.0.1:0', '--fd-store-max', '4096'], ['/usr/bin/python3', '-c', script]);
    await sup.expect('started');
    await logged(sup, /generation 1 \(pid \d+\) is ready/);
    assert.match(sup.stderr(), /stored 200 fd\(s\) named 'a{255}' \(fd store: 200 of 4096\)\n/);
    assert.match(sup.stderr(), /stored 200 fd\(s\) named 'b{255}' \(fd store: 400 of 4096\)\n/);
    const m =
      /stored (\d+) fd\(s\) named 'c{255}' \(fd store: (\d+) of 4096\); (\d+) refused: exec\(2\) could not pass them to the next generation \(room for \d+ bytes of names in LISTEN_FDNAMES\)/.exec(
        sup.stderr(),
      );
    assert.ok(m, sup.stderr().slice(-2000));
    const [kept, total, refused] = [Number(m[1]), Number(m[2]), Number(m[3])];
    assert.equal(kept + refused, 200);
    sup.proc.kill('SIGHUP');
    const g2 = await sup.expect<{ gen: string; names: string; fds: number }>('started');
    assert.equal(g2.gen, '2');
    assert.equal(g2.fds, 1 + total);
    const bytes = Buffer.byteLength(`LISTEN_FDNAMES=${g2.names}`) + 1;
    assert.ok(bytes <= MAX_ARG_STRLEN, `LISTEN_FDNAMES takes ${bytes} bytes`);
    assert.ok(bytes + 256 > MAX_ARG_STRLEN, `room for another name was refused (${bytes} bytes)`);
    await logged(sup, /reload done: generation 2/);
    assert.equal(await stop(sup), 0);
  });
});
