// systemd's protocols without systemd: exact notify datagrams read by an fdpass datagram endpoint
// that the test binds as NOTIFY_SOCKET (path and abstract), the fd store's FDSTORE=1 datagrams with
// working descriptors, the watchdog, and libsystemd's own clients (python3-systemd) as peers both
// ways. (LISTEN_FDS taken by fdpass children: systemd-listen-fds.test.ts.)
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  bindDgram,
  closeFd,
  closeFds,
  fdOf,
  inspect,
  notify,
  removeStoredFds,
  spawnActivated,
  storeFds,
  systemd,
  toServer,
  type Channel,
  type Message,
} from 'fdpass';
import { exitedCleanly, runFixture, spawnJson, watchJson } from './helpers/children';
import { saveEnv } from './helpers/env';
import { fifoFds } from './helpers/fds';
import { bindUdp, closeServer, greeter, listenTcp, portOf, udpAsk } from './helpers/sockets';
import { python3Systemd, requires } from './helpers/requires';
import { tmpPath } from './helpers/tmp';
import { line } from './helpers/net';

// Only .ts files are compiled into .test-out: the Python fixture runs from its source path.
const PEER = path.join(__dirname, '..', '..', 'test', 'fixtures', 'systemd_peer.py');
const PYTHON = '/usr/bin/python3';

/** A NOTIFY_SOCKET bound by fdpass (a path in the test's directory, or an abstract name). */
async function notifySocket(kind: 'path' | 'abstract'): Promise<{ address: string; channel: Channel }> {
  const address = kind === 'path' ? tmpPath('notify') : `@fdpass-test-notify-${randomBytes(6).toString('hex')}`;
  return { address, channel: await bindDgram(address) };
}

function text(m: Message): string {
  return m.data.toString('utf8');
}

/** Runs fn with NOTIFY_SOCKET set to `value` (or unset), restoring it afterwards. */
async function withNotifySocket<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.NOTIFY_SOCKET;
  if (value === undefined) delete process.env.NOTIFY_SOCKET;
  else process.env.NOTIFY_SOCKET = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  }
}

describe('systemd: notify', () => {
  for (const kind of ['path', 'abstract'] as const) {
    // READY=1, MAINPID=, STATUS=, several fields at once.
    it(`sends exact datagrams to a ${kind} NOTIFY_SOCKET`, async () => {
      const { address, channel } = await notifySocket(kind);
      try {
        await withNotifySocket(address, async () => {
          assert.equal(await notify({ ready: true }), true);
          assert.equal(text(await channel.receive()), 'READY=1');
          assert.equal(await notify({ mainPid: 4242 }), true);
          assert.equal(text(await channel.receive()), 'MAINPID=4242');
          await notify({ status: 'serving on :8080 (2 listeners)' });
          assert.equal(text(await channel.receive()), 'STATUS=serving on :8080 (2 listeners)');
          await notify({
            mainPid: 77,
            ready: true,
            status: 'up',
            stopping: true,
            errno: 5,
            extendTimeoutUsec: 3_000_000,
            watchdog: true,
            watchdogUsec: 9,
            fields: { CUSTOM_1: 'x', N: 2 },
          });
          assert.equal(
            text(await channel.receive()),
            'MAINPID=77\nREADY=1\nSTOPPING=1\nSTATUS=up\nERRNO=5\nEXTEND_TIMEOUT_USEC=3000000\nWATCHDOG=1\nWATCHDOG_USEC=9\nCUSTOM_1=x\nN=2',
          );
          await notify({ watchdog: 'trigger' });
          assert.equal(text(await channel.receive()), 'WATCHDOG=trigger');
          // The socket can also be given directly.
          await withNotifySocket(undefined, () => notify({ ready: true }, { socket: address }));
          assert.equal(text(await channel.receive()), 'READY=1');
        });
      } finally {
        await channel.close();
      }
    });
  }

  it('RELOADING=1 carries MONOTONIC_USEC= of CLOCK_MONOTONIC (systemd 253+ Type=notify-reload)', async () => {
    const { address, channel } = await notifySocket('path');
    try {
      const before = process.hrtime.bigint() / 1000n;
      await notify({ reloading: true }, { socket: address });
      const after = process.hrtime.bigint() / 1000n;
      const m = /^RELOADING=1\nMONOTONIC_USEC=([0-9]+)$/.exec(text(await channel.receive()));
      assert.ok(m, 'RELOADING=1 then MONOTONIC_USEC=');
      const usec = BigInt(m[1]!);
      assert.ok(usec >= before && usec <= after, `${usec} not within [${before}, ${after}]`);
      // The same clock as /proc/uptime's source? CLOCK_MONOTONIC excludes suspend; check it is of the right magnitude.
      const uptime = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      assert.ok(Number(usec) / 1e6 <= uptime + 1, 'MONOTONIC_USEC is CLOCK_MONOTONIC (not wall-clock time)');
    } finally {
      await channel.close();
    }
  });

  // A newline in a value, a bad field name, an empty state, empty fds.
  it('refuses bad fields, states and fds with ERR_INVALID_ARG_VALUE and sends nothing for them', async () => {
    const { address, channel } = await notifySocket('path');
    try {
      const opts = { socket: address };
      await assert.rejects(notify({ status: 'two\nlines' }, opts), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(notify({ fields: { X: 'a\nREADY=1' } }, opts), { code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(notify({ fields: { 'bad=name': 'v' } }, opts), { code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(notify({ mainPid: 0 }, opts), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      await assert.rejects(notify({ ready: 'yes' as unknown as boolean }, opts), { code: 'ERR_INVALID_ARG_TYPE' });
      await assert.rejects(notify({}, opts), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(storeFds('has:colon', [0], opts), { code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(storeFds('web', [], opts), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      // A value of the right type that is not allowed (empty) is a VALUE error, as Node's own.
      assert.throws(() => spawnActivated('', [], []), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => spawnActivated(42 as unknown as string, [], []), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      // Nothing of the refused calls went out: the next datagram is this one.
      await notify({ status: 'after' }, opts);
      assert.equal(text(await channel.receive()), 'STATUS=after');
    } finally {
      await channel.close();
    }
  });

  it('without NOTIFY_SOCKET resolves false, and NODE_DEBUG=fdpass says why', async () => {
    assert.equal(await withNotifySocket(undefined, () => notify({ ready: true })), false);
    assert.equal(await withNotifySocket(undefined, () => storeFds('web', [0])), false);
    assert.equal(await withNotifySocket('', () => removeStoredFds('web')), false);
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_DEBUG: 'fdpass' };
    delete env.NOTIFY_SOCKET;
    const r = spawnSync(process.execPath, ['-e', "require('fdpass').notify({ ready: true }).then((v) => console.log(v))"], {
      env,
      encoding: 'utf8',
      cwd: path.join(__dirname, '..', '..'),
    });
    assert.equal(r.stdout.trim(), 'false', r.stderr);
    assert.match(r.stderr, /FDPASS \d+: notify: NOTIFY_SOCKET is not set/);
  });

  it('a NOTIFY_SOCKET nobody listens on rejects with the system error', async () => {
    await assert.rejects(notify({ ready: true }, { socket: tmpPath('nobody') }), { code: 'ENOENT', syscall: 'connect' });
  });
});

describe('systemd: the fd store datagrams', () => {
  it('storeFds sends FDSTORE=1\\nFDNAME=web with working descriptors; removeStoredFds FDSTOREREMOVE=1', async () => {
    const { address, channel } = await notifySocket('abstract');
    const server = await listenTcp('127.0.0.1', greeter('original\n'));
    try {
      await withNotifySocket(address, async () => {
        assert.equal(await storeFds('web', [server]), true);
        const m = await channel.receive();
        assert.equal(text(m), 'FDSTORE=1\nFDNAME=web');
        assert.equal(m.fds.length, 1);
        // What arrived is the listener itself: close ours, and the received copy serves the port.
        const port = portOf(server);
        await closeServer(server);
        const adopted = await toServer(m.fds[0]!);
        adopted.on('connection', (s) => s.end('stored\n'));
        assert.equal(await line(port), 'stored');
        await closeServer(adopted);

        await storeFds('web', [0], { poll: false });
        const m2 = await channel.receive();
        assert.equal(text(m2), 'FDSTORE=1\nFDNAME=web\nFDPOLL=0');
        closeFds(m2.fds);

        assert.equal(await removeStoredFds('web'), true);
        const r = await channel.receive();
        assert.equal(text(r), 'FDSTOREREMOVE=1\nFDNAME=web');
        assert.deepEqual(r.fds, []);
      });
    } finally {
      if (server.listening) await closeServer(server);
      await channel.close();
    }
  });

  it('more than 253 descriptors under one name go in several datagrams (SCM_MAX_FD)', async () => {
    const { address, channel } = await notifySocket('path');
    const [r, w] = fifoFds();
    try {
      const many = Array.from({ length: 300 }, () => r);
      assert.equal(await storeFds('many', many, { socket: address }), true);
      const a = await channel.receive();
      const b = await channel.receive();
      assert.deepEqual([text(a), text(b)], ['FDSTORE=1\nFDNAME=many', 'FDSTORE=1\nFDNAME=many']);
      assert.deepEqual([a.fds.length, b.fds.length], [253, 47]);
      for (const fd of [...a.fds, ...b.fds]) assert.equal(inspect(fd).kind, 'pipe');
      closeFds(a.fds);
      closeFds(b.fds);
    } finally {
      closeFd(r);
      closeFd(w);
      await channel.close();
    }
  });
});

describe('systemd: the watchdog', () => {
  it('pings WATCHDOG=1 at half of WATCHDOG_USEC, stops cleanly, and its timer keeps no process alive', async () => {
    const { address, channel } = await notifySocket('path');
    const pings: number[] = [];
    channel.on('message', (m: Message) => {
      assert.equal(text(m), 'WATCHDOG=1');
      pings.push(Date.now());
    });
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: address, WATCHDOG_USEC: '200000' };
      delete env.WATCHDOG_PID;
      const app = runFixture('systemd-app', ['watchdog'], { env });
      const started = await app.expect<{ intervalUsec: number; running: boolean }>('watchdog');
      assert.deepEqual(started, { event: 'watchdog', intervalUsec: 200000, running: true });
      const t0 = Date.now();
      while (pings.length < 6 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 20));
      const window = Date.now() - t0;
      // Every 100 ms: timers never fire early, so at most one ping per 100 ms (plus the first at once);
      // and never a gap as long as WATCHDOG_USEC, after which systemd would have killed the service.
      assert.ok(pings.length <= Math.floor(window / 100) + 2, `${pings.length} pings in ${window} ms`);
      const gaps = pings.slice(1).map((t, i) => t - pings[i]!);
      assert.ok(pings.length >= 6 && Math.max(...gaps) < 200, `${pings.length} pings in ${window} ms, gaps ${gaps.join(', ')} ms`);
      app.send({ cmd: 'stop' });
      assert.deepEqual(await app.expect('stopped'), { event: 'stopped', running: false });
      await exitedCleanly(app); // it ended by itself: the unref'd timer did not hold it
      const count = pings.length;
      await new Promise((r) => setTimeout(r, 250));
      assert.equal(pings.length, count, 'no ping after stop()');
    } finally {
      await channel.close();
    }
  });

  it('WATCHDOG_USEC beyond what a Node timer holds (2^31-1 ms) pings once, not every millisecond', async () => {
    const { address, channel } = await notifySocket('path');
    let pings = 0;
    channel.on('message', () => pings++);
    const restoreEnv = saveEnv('WATCHDOG_USEC', 'WATCHDOG_PID');
    process.env.WATCHDOG_USEC = String(2 ** 32 * 1000); // half of it: 2^31 s, far over 2^31-1 ms
    delete process.env.WATCHDOG_PID;
    const dog = systemd.startWatchdog({ socket: address });
    try {
      assert.ok(dog);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(pings, 1, 'only the ping at start');
    } finally {
      await dog?.stop();
      await channel.close();
      restoreEnv();
    }
  });

  it('WATCHDOG_PID of another process: not for us, nothing is sent', async () => {
    const restoreEnv = saveEnv('WATCHDOG_USEC', 'WATCHDOG_PID');
    process.env.WATCHDOG_USEC = '100000';
    process.env.WATCHDOG_PID = String(process.ppid);
    try {
      assert.equal(systemd.watchdogInterval(), null);
      assert.equal(systemd.startWatchdog({ socket: tmpPath('none') }), null);
      process.env.WATCHDOG_PID = String(process.pid);
      assert.equal(systemd.watchdogInterval(), 100000);
      process.env.WATCHDOG_USEC = 'soon';
      assert.throws(() => systemd.watchdogInterval(), { code: 'ERR_FDPASS_SYSTEMD_ENV' });
    } finally {
      restoreEnv();
    }
  });
});

describe('systemd: libsystemd clients (python3-systemd) as peers', () => {
  before(function () {
    requires(this, python3Systemd());
  });

  it('sd_listen_fds in Python finds what spawnActivated passed, by name, and serves on it', async () => {
    const web = await listenTcp('127.0.0.1', greeter('original\n'));
    const udp = await bindUdp();
    try {
      const py = watchJson(
        spawnActivated(
          PYTHON,
          [PEER, 'listen'],
          [
            { fd: web, name: 'web' },
            { fd: udp, name: 'udp' },
          ],
          { stdio: 'pipe' },
        ),
      );
      const fds = await py.expect<{
        pid: number;
        fds: number[];
        names: Record<string, string>;
        env: Record<string, string>;
        after: unknown;
      }>('fds');
      assert.deepEqual(fds.fds, [3, 4]);
      assert.deepEqual(fds.names, { 3: 'web', 4: 'udp' });
      assert.deepEqual(fds.env, { LISTEN_PID: String(py.pid), LISTEN_FDS: '2', LISTEN_FDNAMES: 'web:udp' });
      const [webPort, udpPort] = [portOf(web), portOf(udp)];
      await closeServer(web);
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      assert.equal(await line(webPort), 'py web');
      assert.equal(await udpAsk(udpPort, 'hi'), 'py udp');
      await py.expect('done');
      await exitedCleanly(py);
    } finally {
      if (web.listening) await closeServer(web);
    }
  });

  it('sd_listen_fds in Python takes nothing when LISTEN_PID is not its own', async () => {
    const web = await listenTcp('127.0.0.1', greeter('original\n'));
    try {
      const env = { ...process.env, LISTEN_PID: String(process.pid), LISTEN_FDS: '1', LISTEN_FDNAMES: 'web' };
      const py = spawnJson(PYTHON, [PEER, 'listen'], { env, stdio: ['pipe', 'pipe', 'pipe', fdOf(web)] });
      const fds = await py.expect<{ fds: number[] }>('fds');
      assert.deepEqual(fds.fds, []);
      await py.expect('done');
      await exitedCleanly(py);
    } finally {
      await closeServer(web);
    }
  });

  for (const kind of ['path', 'abstract'] as const) {
    // READY=1, STATUS= and FDSTORE=1 with a working fd.
    it(`sd_notify from Python reaches the fdpass endpoint (${kind})`, async () => {
      const { address, channel } = await notifySocket(kind);
      try {
        const token = randomBytes(6).toString('hex');
        const py = spawnJson(PYTHON, [PEER, 'notify', token], { env: { ...process.env, NOTIFY_SOCKET: address } });
        const sent = await py.expect<{ ready: boolean; stored: boolean }>('sent');
        assert.deepEqual([sent.ready, sent.stored], [true, true]);
        await exitedCleanly(py);
        const ready = await channel.receive();
        assert.equal(text(ready), `READY=1\nSTATUS=${token}`);
        assert.deepEqual(ready.fds, []);
        const stored = await channel.receive();
        assert.equal(text(stored), 'FDSTORE=1\nFDNAME=py');
        assert.equal(stored.fds.length, 1);
        assert.equal(inspect(stored.fds[0]!).kind, 'pipe');
        const buf = Buffer.alloc(64);
        const n = fs.readSync(stored.fds[0]!, buf);
        assert.equal(buf.subarray(0, n).toString(), token);
        closeFds(stored.fds);
      } finally {
        await channel.close();
      }
    });
  }
});
