// LISTEN_FDS without systemd: descriptors passed by spawnActivated and systemd-socket-activate and
// taken by fdpass children (listenFds, adoptListenFds), malformed variables, a wrong LISTEN_PID.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { closeFd, dupFd, fdOf, inspect, spawnActivated, systemd } from 'fdpass';
import { exitedCleanly, runFixture, spawnJson, watchJson, fixturesDir, type Fixture } from './helpers/children';
import { saveEnv } from './helpers/env';
import { fifoFds } from './helpers/fds';
import { bindUdp, closeServer, greeter, listenTcp, portOf, udpAsk } from './helpers/sockets';
import { retryRefused } from './helpers/wait';
import { get } from './helpers/http';
import { freePort, line } from './helpers/net';

const APP = path.join(fixturesDir, 'systemd-app.js');

interface Took {
  pid: number;
  before: Record<string, string | undefined>;
  after: Record<string, string | undefined>;
  fds: Array<{ fd: number; name: string; kind: string; cloexec: boolean; socket?: { type: string; listening: boolean } }>;
  again: number;
  adopted: Array<{ name: string; kind: string; fd: number; ctor: string }>;
}

async function stopApp(app: Fixture): Promise<void> {
  app.send({ cmd: 'stop' });
  const stopped = await app.expect<{ fds: number; base: number; targets: unknown }>('stopped');
  assert.equal(stopped.fds, stopped.base, `child fds not back to baseline: ${JSON.stringify(stopped.targets)}`);
  await exitedCleanly(app);
}

describe('systemd: listenFds in a child', () => {
  // One instance for two is refused and closes what it took.
  it('adoptListenFds: a function serves several listeners of one name', async () => {
    const a = await listenTcp('127.0.0.1', greeter('original\n'));
    const b = await listenTcp('127.0.0.1', greeter('original\n'));
    try {
      const taken = () => [dupFd(fdOf(a)), dupFd(fdOf(b))].map((fd) => ({ fd, name: 'web', info: inspect(fd) }));
      const made: net.Server[] = [];
      const adopted = await systemd.adoptListenFds({
        fds: taken(),
        servers: {
          web: () => {
            const s = net.createServer((c) => c.end('made\n'));
            made.push(s);
            return s;
          },
        },
      });
      assert.deepEqual(
        adopted.map((x) => x.kind),
        ['server', 'server'],
      );
      assert.equal(made.length, 2);
      assert.ok(adopted.every((x) => x.kind === 'server' && made.includes(x.server)));
      await Promise.all(made.map(closeServer));
      const fds = taken();
      await assert.rejects(systemd.adoptListenFds({ fds, servers: { web: net.createServer() } }), { code: 'ERR_INVALID_ARG_VALUE' });
      for (const f of fds) assert.throws(() => inspect(f.fd), { code: 'EBADF' });
    } finally {
      await closeServer(a);
      await closeServer(b);
    }
  });

  it('LISTEN_FDS over RLIMIT_NOFILE throws ERR_FDPASS_SYSTEMD_ENV before allocating per fd', () => {
    // In a child with a small heap: before, 2000000000 names were allocated until the heap ran out.
    const script =
      'try { require(process.argv[1]).systemd.listenFds(); console.log("took"); } ' +
      'catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }';
    const r = spawnSync(
      '/bin/sh',
      ['-c', 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, '--max-old-space-size=64', '-e', script, require.resolve('fdpass')],
      {
        env: { ...process.env, LISTEN_FDS: '2000000000', LISTEN_FDNAMES: undefined },
        encoding: 'utf8',
        timeout: 15_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { code: string; message: string };
    assert.equal(out.code, 'ERR_FDPASS_SYSTEMD_ENV');
    assert.match(out.message, /LISTEN_FDS is too large: 2000000000 .*RLIMIT_NOFILE/);
  });

  it('malformed LISTEN_FDS or LISTEN_FDNAMES throw ERR_FDPASS_SYSTEMD_ENV and take nothing', () => {
    const restoreEnv = saveEnv('LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES');
    try {
      process.env.LISTEN_PID = String(process.pid);
      process.env.LISTEN_FDS = 'two';
      delete process.env.LISTEN_FDNAMES;
      assert.throws(() => systemd.listenFds(), { name: 'FdpassError', code: 'ERR_FDPASS_SYSTEMD_ENV' });
      process.env.LISTEN_FDS = '2';
      process.env.LISTEN_FDNAMES = 'only-one';
      assert.throws(() => systemd.listenFds(), { code: 'ERR_FDPASS_SYSTEMD_ENV', message: /1 name\(s\) for 2/ });
      process.env.LISTEN_PID = 'me';
      assert.throws(() => systemd.listenFds(), { code: 'ERR_FDPASS_SYSTEMD_ENV' });
      // Not this process: nothing taken, nothing thrown, the variables stay.
      process.env.LISTEN_PID = String(process.ppid);
      assert.deepEqual(systemd.listenFds(), []);
      assert.equal(process.env.LISTEN_FDS, '2');
      assert.throws(() => systemd.listenFds({ unsetEnvironment: 'no' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
    } finally {
      restoreEnv();
    }
  });

  // Only the sockets that can be are wrapped.
  it('spawnActivated: a listener, a UDP socket, a FIFO and a connected socket arrive by name', async () => {
    const web = await listenTcp('127.0.0.1', greeter('original\n'));
    const udp = await bindUdp();
    const [r, w] = fifoFds();
    const peer = await listenTcp('127.0.0.1', greeter('original\n'));
    const conn = net.connect(portOf(peer), '127.0.0.1');
    await new Promise((resolve) => conn.once('connect', resolve));
    try {
      const app = watchJson(
        spawnActivated(
          process.execPath,
          [APP, 'listen'],
          [
            { fd: web, name: 'web' },
            { fd: udp, name: 'udp' },
            { fd: r, name: 'fifo' },
            { fd: fdOf(conn), name: 'conn' },
          ],
          { stdio: 'pipe' },
        ),
      );
      const took = await app.expect<Took>('took');
      assert.equal(took.pid, app.pid, 'exec keeps the pid: LISTEN_PID is the child');
      assert.deepEqual(took.before, { LISTEN_PID: String(app.pid), LISTEN_FDS: '4', LISTEN_FDNAMES: 'web:udp:fifo:conn' });
      assert.deepEqual(took.after, {}, 'unset by default'); // (JSON drops undefined values)
      assert.deepEqual(
        took.fds.map((f) => [f.fd, f.name, f.kind, f.cloexec]),
        [
          [3, 'web', 'socket', true],
          [4, 'udp', 'socket', true],
          [5, 'fifo', 'pipe', true],
          [6, 'conn', 'socket', true],
        ],
      );
      assert.equal(took.again, 0, 'a second call hands out nothing');
      assert.deepEqual(
        took.adopted.map((a) => [a.name, a.kind, a.ctor]),
        [
          ['web', 'server', 'Server'],
          ['udp', 'dgram', 'Socket'],
          ['fifo', 'fd', 'number'],
          ['conn', 'fd', 'number'],
        ],
      );
      // Ours are closed: only the child's copies serve now.
      const [webPort, udpPort] = [portOf(web), portOf(udp)];
      await closeServer(web);
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      assert.equal(await get(webPort), `web ${app.pid}`);
      assert.equal(await udpAsk(udpPort, 'hi'), `udp ${app.pid}`);
      await stopApp(app);
    } finally {
      if (web.listening) await closeServer(web);
      conn.destroy();
      await closeServer(peer);
      closeFd(r);
      closeFd(w);
    }
  });

  it('with unsetEnvironment: false the variables stay, and a second call still hands out nothing', async () => {
    const web = await listenTcp('127.0.0.1', greeter('original\n'));
    try {
      const app = watchJson(spawnActivated(process.execPath, [APP, 'listen', 'keep'], [{ fd: web }], { stdio: 'pipe' }));
      const took = await app.expect<Took>('took');
      assert.deepEqual(took.after, took.before);
      assert.deepEqual(
        took.fds.map((f) => f.name),
        ['unknown'],
      );
      assert.equal(took.again, 0);
      await stopApp(app);
    } finally {
      await closeServer(web);
    }
  });

  it('a wrong LISTEN_PID takes nothing and leaves the variables and descriptors alone', async () => {
    const web = await listenTcp('127.0.0.1', greeter('original\n'));
    try {
      const env = { ...process.env, LISTEN_PID: String(process.pid), LISTEN_FDS: '1', LISTEN_FDNAMES: 'web' };
      const app = runFixture('systemd-app', ['listen'], { env, stdio: ['pipe', 'pipe', 'pipe', fdOf(web)] });
      const took = await app.expect<Took>('took');
      assert.deepEqual(took.fds, []);
      assert.deepEqual(took.after, { LISTEN_PID: String(process.pid), LISTEN_FDS: '1', LISTEN_FDNAMES: 'web' });
      app.send({ cmd: 'stop' });
      const stopped = await app.expect<{ fds: number; base: number; targets: Record<string, string> }>('stopped');
      // fd 3 is still there, untouched (not taken, so not closed either).
      assert.match(stopped.targets['3'] ?? '', /^socket:/);
      await exitedCleanly(app);
    } finally {
      await closeServer(web);
    }
  });

  // It starts the child on the first connection.
  it('systemd-socket-activate --fdname=web:admin starts an fdpass child that serves both by name', async () => {
    const ports = [await freePort(), await freePort()];
    const app = spawnJson('systemd-socket-activate', [
      '-l',
      `127.0.0.1:${ports[0]}`,
      '-l',
      `127.0.0.1:${ports[1]}`,
      '--fdname=web:admin',
      process.execPath,
      APP,
      'listen',
    ]);
    // It binds, then waits for a connection before it runs the child (in its own process: same pid).
    const body = await retryRefused(() => get(ports[0]!), 5000);
    assert.equal(body, `web ${app.pid}`);
    const took = await app.expect<Took>('took');
    assert.deepEqual(
      took.fds.map((f) => [f.name, f.kind, f.socket?.listening]),
      [
        ['web', 'socket', true],
        ['admin', 'socket', true],
      ],
    );
    assert.deepEqual(
      took.adopted.map((a) => [a.name, a.kind]),
      [
        ['web', 'server'],
        ['admin', 'server'],
      ],
    );
    assert.equal(await line(ports[1]!), `admin ${app.pid}`);
    await stopApp(app);
  });
});
