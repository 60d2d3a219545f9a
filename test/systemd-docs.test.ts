// The apps of docs/systemd.md, run as systemd would run them but without systemd: a datagram socket
// bound here stands in as NOTIFY_SOCKET (it reads every notification and keeps the stored
// descriptors), and a restart passes those back as LISTEN_FDS (spawnActivated). The units themselves,
// under a real systemd: systemd-pid1.test.ts.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { bindDgram, closeFds, spawnActivated, type Channel, type Message } from 'fdpass';
import { processState, spawnJson, watchJson, type Fixture } from './helpers/children';
import { docScenario } from './helpers/docs';
import { get } from './helpers/http';
import { freePort } from './helpers/net';
import { tmpPath } from './helpers/tmp';
import { waitFor } from './helpers/wait';

// The next notification: its text and the descriptors that came with it (the caller's to close).
async function notification(upstream: Channel): Promise<{ text: string; fds: number[] }> {
  const m: Message = await upstream.receive({ timeout: 15_000 });
  return { text: m.data.toString(), fds: m.fds };
}

// A process's exit (not its stdout's end: a successor may hold the same pipe).
function exitOf(f: Fixture): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (f.proc.exitCode !== null || f.proc.signalCode !== null) return Promise.resolve({ code: f.proc.exitCode, signal: f.proc.signalCode });
  return new Promise((resolve) => f.proc.once('exit', (code, signal) => resolve({ code, signal })));
}

// The NOTIFY_SOCKET stand-in, bound in a scenario's directory, and the environment that names it and
// a free PORT. (The scenarios are named literally at docScenario(): docs.test.ts finds them there.)
async function underStandIn(dir: string): Promise<{ port: number; upstream: Channel; env: NodeJS.ProcessEnv }> {
  const port = await freePort();
  const notifyPath = path.join(dir, 'notify.sock');
  const upstream = await bindDgram(notifyPath, { allow: () => true });
  return { port, upstream, env: { ...process.env, NOTIFY_SOCKET: notifyPath, PORT: String(port) } };
}

describe('systemd guide: its apps under a stand-in NOTIFY_SOCKET', () => {
  it('fd-store: the first start stores its listener, a restart given it as LISTEN_FDS serves the same socket', async () => {
    const dir = tmpPath('fd-store');
    const app = docScenario('fd-store', dir)['store-server.mjs']!;
    const { port, upstream, env } = await underStandIn(dir);
    const stored: number[] = [];
    try {
      const first = spawnJson(process.execPath, [app], { env });
      const store = await notification(upstream);
      stored.push(...store.fds);
      assert.equal(store.text, 'FDSTORE=1\nFDNAME=web');
      assert.equal(store.fds.length, 1);
      assert.deepEqual(await notification(upstream), { text: 'READY=1\nSTATUS=serving', fds: [] });
      assert.equal(await get(port), 'hello\n');
      first.proc.kill('SIGTERM');
      assert.deepEqual(await notification(upstream), { text: 'STOPPING=1', fds: [] });
      assert.deepEqual(await first.exited, { code: 0, signal: null }, first.stderr());

      // No process runs: a connection waits in the stored socket's backlog.
      const waiting = get(port);
      const again = watchJson(
        spawnActivated(process.execPath, [app], [{ fd: stored[0]!, name: 'web' }], { env, stdio: ['pipe', 'pipe', 'pipe'] }),
      );
      assert.deepEqual(await notification(upstream), { text: 'READY=1\nSTATUS=serving', fds: [] }, 'nothing stored again');
      assert.equal(await waiting, 'hello\n');
      assert.equal(await get(port), 'hello\n');
      again.proc.kill('SIGTERM');
      assert.deepEqual(await notification(upstream), { text: 'STOPPING=1', fds: [] });
      assert.deepEqual(await again.exited, { code: 0, signal: null }, again.stderr());
    } finally {
      closeFds(stored);
      await upstream.close();
    }
  });

  it('exec-reload: SIGHUP starts a successor that serves; RELOADING=1, then MAINPID= it and READY=1', async () => {
    const dir = tmpPath('exec-reload');
    const app = docScenario('exec-reload', dir)['reload-server.mjs']!;
    const { port, upstream, env } = await underStandIn(dir);
    let successor: number | undefined;
    try {
      const old = spawnJson(process.execPath, [app], { env });
      assert.equal((await notification(upstream)).text, 'READY=1');
      assert.equal(await get(port), `hello from ${old.pid}\n`);
      old.proc.kill('SIGHUP'); // what ExecReload=/bin/kill -HUP $MAINPID sends
      const texts: string[] = [];
      while (!texts.some((t) => /^READY=1$/m.test(t))) texts.push((await notification(upstream)).text);
      assert.match(texts[0]!, /^RELOADING=1\nMONOTONIC_USEC=\d+/);
      const mainPid = /^MAINPID=(\d+)$/m.exec(texts.join('\n'));
      assert.ok(mainPid, `no MAINPID= in ${JSON.stringify(texts)}`);
      successor = Number(mainPid[1]);
      assert.notEqual(successor, old.pid);
      assert.equal(await get(port), `hello from ${successor}\n`);
      assert.deepEqual(await exitOf(old), { code: 0, signal: null }, 'the old process drained and exited');
      process.kill(successor, 'SIGTERM');
      await old.exited; // the successor held the same stdout until it exited
      await waitFor('the successor to exit', () => processState(successor!) === undefined);
      successor = undefined;
    } finally {
      if (successor !== undefined && processState(successor) !== undefined) process.kill(successor, 'SIGKILL');
      await upstream.close();
    }
  });
});
