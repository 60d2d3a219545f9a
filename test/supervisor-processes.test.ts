// `fdpass run` stops every process a generation started, also those that left its process group
// (setsid): as a child subreaper it inherits them when their parent exits.
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { processState, type Fixture } from './helpers/children';
import { APP, logged, stop, stopLeftovers, supervise } from './helpers/fdpass-run';
import { waitFor } from './helpers/wait';

// A server in a session of its own (setsid), serving on the generation's listener (fd 3); it prints
// its pid and generation on the supervisor's stdout. The generation's main process is the usual app.
const ESCAPEE = `
const s = require('node:net').createServer((c) => c.end('escapee ' + process.pid));
s.listen({ fd: 3 }, () => console.log(JSON.stringify({ event: 'escapee', gen: process.env.FDPASS_GENERATION, pid: process.pid })));
`;
const COMMAND = ['/bin/sh', '-c', 'setsid "$0" -e "$ESCAPEE" & exec "$0" "$1"', process.execPath, APP];

const escapees: number[] = [];

// The escapee's line and the app's 'ready' come in either order (two processes starting at once).
async function started(sup: Fixture): Promise<{ escapee: { pid: number; gen: string }; port: number }> {
  let escapee: { pid: number; gen: string } | undefined;
  let port: number | undefined;
  while (escapee === undefined || port === undefined) {
    const m = await sup.next<{ event?: string; pid: number; gen: string; port: number }>();
    if (m.event === 'escapee') escapee = { pid: m.pid, gen: m.gen };
    else if (m.event === 'ready') port = m.port;
  }
  return { escapee, port };
}

function alive(pid: number): boolean {
  return ![undefined, 'Z'].includes(processState(pid));
}

/** Resolves when nothing accepts on the port any more (a refused connection). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(false);
    });
    c.once('error', () => resolve(true));
  });
}

describe('fdpass run: processes that leave the process group', function () {
  this.timeout(60_000);
  afterEach(async () => {
    await stopLeftovers();
    for (const pid of escapees.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL'); // only when the test failed
      } catch {
        // gone
      }
    }
  });

  // None is left alive or holding the listener.
  it('a setsid server of the generation is stopped with fdpass run', async () => {
    const sup = supervise(['-l', 'http=127.0.0.1:0'], COMMAND, { env: { ...process.env, ESCAPEE } });
    const { escapee, port } = await started(sup);
    escapees.push(escapee.pid);
    assert.notEqual(processState(escapee.pid), undefined);
    sup.proc.kill('SIGTERM');
    // Its stdout closes only once no process of it holds the pipe, the escapee included.
    const ended = await Promise.race([sup.exited, new Promise<undefined>((r) => setTimeout(r, 10_000))]);
    assert.equal(ended?.code, 0, `fdpass run did not end, or the setsid server (pid ${escapee.pid}) holds its stdout`);
    assert.equal(alive(escapee.pid), false, `the setsid server (pid ${escapee.pid}) still runs`);
    assert.equal(await refused(port), true, 'something still accepts on the listener');
  });

  it("after a reload the old generation's setsid server is stopped, the new one's is not", async () => {
    const sup = supervise(['-l', 'http=127.0.0.1:0'], COMMAND, { env: { ...process.env, ESCAPEE } });
    const { escapee: first, port } = await started(sup);
    escapees.push(first.pid);
    // The app says 'ready' as it notifies: a SIGHUP before the supervisor has read READY=1 is refused.
    await logged(sup, /generation 1 \(pid \d+\) is ready/);
    sup.proc.kill('SIGHUP');
    const second = await sup.expect<{ pid: number; gen: string }>('escapee');
    escapees.push(second.pid);
    assert.deepEqual([first.gen, second.gen], ['1', '2']);
    await logged(sup, /generation 1 \(pid \d+\) exited/);
    await waitFor(`the old generation's setsid server (pid ${first.pid}) to be stopped`, () => !alive(first.pid), 5000);
    assert.equal(alive(second.pid), true, "the new generation's setsid server was stopped");
    assert.equal(await stop(sup), 0);
    assert.equal(alive(second.pid), false, `the setsid server (pid ${second.pid}) still runs`);
    assert.equal(await refused(port), true, 'something still accepts on the listener');
  });

  it('SIGKILL of fdpass run: the lifeline stops the setsid server of a generation too', async () => {
    const sup = supervise(['-l', 'http=127.0.0.1:0', '--stop-timeout', '5'], COMMAND, { env: { ...process.env, ESCAPEE } });
    const { escapee, port } = await started(sup);
    escapees.push(escapee.pid);
    sup.proc.kill('SIGKILL');
    await waitFor(`the setsid server (pid ${escapee.pid}) to be stopped`, () => !alive(escapee.pid), 10_000);
    // The generation itself drains after the lifeline's stop signal (SIGKILL after --stop-timeout 5).
    for (const end = Date.now() + 10_000; Date.now() < end && !(await refused(port));) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await refused(port), true, 'something still accepts on the listener');
    assert.equal((await sup.exited).signal, 'SIGKILL');
  });
});
