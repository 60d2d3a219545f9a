// Issue 9, "every descriptor has one owner on every path": an adopter that refuses leaves the fd open
// and the caller's; sendFd/sendFds to a path are bounded by timeout/signal and close what they opened;
// the one-shot recvFd(path) refuses extra connections at once; listenReusePort/bindReusePort accept
// host '' and scoped IPv6 addresses. Each test checks the descriptor maps of every process involved.
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as os from 'node:os';
import {
  FdpassError,
  FdpassSystemError,
  adopt,
  bindDgram,
  bindReusePort,
  closeFd,
  connect,
  dupFd,
  fdOf,
  inspect,
  listen,
  listenReusePort,
  recvFd,
  recvFds,
  sendFd,
  toDgram,
  toServer,
  toSocket,
  type Channel,
  type SocketInfo,
} from 'fdpass';
import { runFixture, spawnJson } from './helpers/children';
import { newFds, openFds, settle } from './helpers/fds';
import { failure } from './helpers/errors';
import { closeDgram, closeServer, greeter, tcpHello } from './helpers/sockets';
import { ipv6Loopback, requires } from './helpers/requires';
import { tmpPath } from './helpers/tmp';

// ---------------------------------------------------------------------------------------------------
// Helpers

function sock(fd: number): SocketInfo {
  const info = inspect(fd);
  assert.ok(info.socket, `fd ${fd} is a socket`);
  return info.socket;
}

/** The map `before` without `gone`: what should be open after closing exactly those fds. */
function without(before: Map<number, string>, gone: number[]): Map<number, string> {
  const m = new Map(before);
  for (const fd of gone) m.delete(fd);
  return m;
}

/** Settles with the promise's outcome, or 'pending' if it has not settled after `ms` (old code hung). */
function within<T>(p: Promise<T>, ms: number): Promise<{ value: T } | { error: Error & { code?: string } } | 'pending'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('pending'), ms);
    p.then(
      (value) => {
        clearTimeout(timer);
        resolve({ value });
      },
      (error: Error & { code?: string }) => {
        clearTimeout(timer);
        resolve({ error });
      },
    );
  });
}

/**
 * TCP sockets in states Node cannot make, made by a python3 child and sent here (socket.send_fds):
 * 'twin': [a listener, a bound non-listening SO_REUSEADDR twin on its port];
 * 'syn-sent': [a listener with backlog 0, the connection filling its accept queue, a socket whose
 * connect() is stuck in SYN_SENT because the listener drops SYNs while its queue is full].
 */
const PY_MAKER = `
import select, socket, sys, time
kind = sys.argv[2]
def reusable():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s
if kind == 'twin':
    listener, twin = reusable(), reusable()
    listener.bind(('127.0.0.1', 0))
    twin.bind(listener.getsockname())
    listener.listen(8)
    made = [listener, twin]
elif kind == 'syn-sent':
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    if not select.select([listener], [], [], 5)[0]:
        raise SystemExit('the accept queue never filled')
    for attempt in range(50):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(listener.getsockname())
        except BlockingIOError:
            pass
        time.sleep(0.02)
        if c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 2:  # TCP_SYN_SENT
            break
        c.close()
    else:
        raise SystemExit('no SYN_SENT socket')
    made = [listener, filler, c]
else:
    raise SystemExit('unknown kind ' + kind)
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.connect(sys.argv[1])
socket.send_fds(u, [kind.encode()], [s.fileno() for s in made])
u.close()
`;

async function fromPython(kind: 'twin' | 'syn-sent'): Promise<number[]> {
  const p = tmpPath('python.sock');
  const received = recvFds(p, { type: 'stream', timeout: 15000 });
  const child = spawnJson('python3', ['-c', PY_MAKER, p, kind]);
  const exit = await child.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, child.stderr());
  const m = await received;
  assert.equal(m.data.toString(), kind);
  return m.fds;
}

// ---------------------------------------------------------------------------------------------------

describe('issue 9: every descriptor has one owner on every path', () => {
  describe("a rejected adoption leaves the fd open and the caller's", () => {
    it('toServer/adopt on a bound socket whose port a listener holds (SO_REUSEADDR twin): listen EADDRINUSE naming toServer; the fd stays open and closeFd closes exactly it', async () => {
      const [listener, twin] = (await fromPython('twin')) as [number, number];
      const port = sock(twin).local?.family === 'IPv4' ? (sock(twin).local as { port: number }).port : -1;
      assert.ok(port > 0);
      assert.equal(sock(twin).listening, false);
      const before = openFds();
      for (const [what, attempt] of [
        ['toServer(fd)', () => toServer(twin)],
        ['toServer(fd, http)', () => toServer(twin, http.createServer())],
        ['adopt(fd)', () => adopt(twin)],
      ] as const) {
        const err = await failure(attempt);
        assert.ok(err instanceof FdpassSystemError, `${what}: ${String(err)}`);
        assert.equal(err.code, 'EADDRINUSE', what);
        assert.equal(err.errno, -os.constants.errno.EADDRINUSE, what);
        assert.equal(err.syscall, 'listen', what);
        assert.equal(err.address, '127.0.0.1', what);
        assert.equal(err.port, port, what);
        assert.equal(err.message, `toServer(fd ${twin}): listen EADDRINUSE: address already in use 127.0.0.1:${port}`, what);
        // Still open, still the same unlistening socket: nothing was closed or opened.
        assert.deepEqual(openFds(), before, what);
        assert.equal(sock(twin).listening, false, what);
      }
      // The documented cleanup closes exactly that descriptor.
      closeFd(twin);
      assert.deepEqual(openFds(), without(before, [twin]));
      // The listener it shadowed is untouched: adopted, it serves.
      const server = await toServer(listener, greeter('the listener'));
      assert.equal(fdOf(server), listener);
      assert.equal(await tcpHello(port, '127.0.0.1'), 'the listener');
      await closeServer(server);
      await settle();
      assert.deepEqual(openFds(), without(before, [twin, listener]));
    });

    it('adopt() on a TCP socket still connecting (SYN_SENT to a loopback listener whose accept queue is full) is ERR_FDPASS_WRONG_FD_KIND; the fd stays open', async () => {
      const [listener, filler, connecting] = (await fromPython('syn-sent')) as [number, number, number];
      const s = sock(connecting);
      assert.equal(s.connecting, true);
      assert.equal(s.connected, false);
      assert.equal(s.listening, false);
      assert.equal(sock(filler).connecting, false);
      assert.equal(sock(filler).connected, true);
      const before = openFds();
      const err = await failure(adopt(connecting));
      assert.ok(err instanceof FdpassError, String(err));
      assert.equal(err.code, 'ERR_FDPASS_WRONG_FD_KIND');
      assert.equal(
        err.message,
        `fd ${connecting} is a TCP socket still connecting: neither listening nor connected yet (adopt it with toSocket once connected)`,
      );
      const e2 = await failure(toServer(connecting));
      assert.equal(e2.code, 'ERR_FDPASS_WRONG_FD_KIND');
      assert.match(e2.message, /is an inet stream socket \(still connecting\), not a listening or bound TCP/);
      const e3 = await failure(() => toSocket(connecting));
      assert.equal(e3.code, 'ERR_FDPASS_WRONG_FD_KIND');
      assert.match(e3.message, /\(still connecting\), not a connected TCP/);
      assert.deepEqual(openFds(), before);
      assert.equal(sock(connecting).connecting, true, 'still the same socket, still connecting');
      closeFd(connecting);
      assert.deepEqual(openFds(), without(before, [connecting]));
      closeFd(filler);
      closeFd(listener);
      assert.deepEqual(openFds(), without(before, [connecting, filler, listener]));
    });

    it("toDgram/toServer on a descriptor Node already owns (open EEXIST): the error names the adopter, Node's object keeps it and works", async () => {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
      const server = await new Promise<net.Server>((resolve) => {
        const s = greeter('owner');
        s.listen(0, '127.0.0.1', () => resolve(s));
      });
      const before = openFds();
      const ufd = fdOf(udp);
      const e1 = await failure(toDgram(ufd));
      assert.equal(e1.code, 'EEXIST');
      assert.equal((e1 as { syscall?: string }).syscall, 'open');
      assert.match(e1.message, new RegExp(`^toDgram\\(fd ${ufd}\\): open EEXIST`));
      const sfd = fdOf(server);
      const e2 = await failure(toServer(sfd));
      assert.equal(e2.code, 'EEXIST');
      assert.match(e2.message, new RegExp(`^toServer\\(fd ${sfd}\\): listen EEXIST`));
      await settle();
      assert.deepEqual(openFds(), before);
      assert.equal(fdOf(udp), ufd);
      const port = (server.address() as net.AddressInfo).port;
      assert.equal(await tcpHello(port, '127.0.0.1'), 'owner');
      const arrived = new Promise<string>((resolve) => udp.once('message', (m) => resolve(m.toString())));
      const sender = dgram.createSocket('udp4');
      await new Promise<void>((resolve, reject) =>
        sender.send('still mine', udp.address().port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
      );
      assert.equal(await arrived, 'still mine');
      await closeDgram(sender);
      await closeDgram(udp);
      await closeServer(server);
    });

    it("toDgram(0) adopts the UDP socket on fd 0 (Node's bind({ fd: 0 }) would bind a new socket on a random port)", async () => {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
      const port = udp.address().port;
      const script = `
        const f = require(${JSON.stringify(require.resolve('fdpass'))});
        const fs = require('fs');
        const count = () => fs.readdirSync('/proc/self/fd').length - 1;
        (async () => {
          void process.stdout;
          const before = count();
          const s = await f.toDgram(0);
          let zero = 'open';
          try { f.inspect(0); } catch (e) { zero = e.code; }
          const m = await new Promise((resolve) => s.once('message', (d) => resolve(d.toString())));
          const holding = count();
          await new Promise((resolve) => s.close(resolve));
          console.log(JSON.stringify({ event: 'done', zero, m, before, holding, after: count() }));
        })().catch((e) => { console.log(JSON.stringify({ event: 'error', message: e.message })); process.exitCode = 1; });
      `;
      const fd = dupFd(fdOf(udp));
      const child = spawnJson(process.execPath, ['-e', script], { stdio: [fd, 'pipe', 'pipe'] });
      closeFd(fd);
      await closeDgram(udp); // the child's copy is now the only one bound to the port
      // Datagrams reach the child only if it adopted the very socket bound to `port`.
      const sender = dgram.createSocket('udp4');
      const done = child.expect<{ zero: string; m: string; before: number; holding: number; after: number }>('done');
      let result: { zero: string; m: string; before: number; holding: number; after: number } | undefined;
      for (let i = 0; i < 100 && result === undefined; i++) {
        await new Promise<void>((resolve, reject) => sender.send('to fd 0', port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
        const r = await within(done, 50);
        if (r !== 'pending') {
          if ('error' in r) throw r.error;
          result = r.value;
        }
      }
      await closeDgram(sender);
      assert.ok(result, `the child never got a datagram on port ${port}: ${child.stderr()}`);
      assert.equal(result.m, 'to fd 0');
      assert.equal(result.zero, 'EBADF', 'fd 0 was closed once its duplicate was adopted');
      // fd 0 moved to another number: the count stays; closing the socket drops it.
      assert.equal(result.holding, result.before);
      assert.equal(result.after, result.before - 1);
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    });
  });

  describe('sendFd to a path: one deadline for connect, send and close', () => {
    async function fullDgramReceiver(p: string): Promise<Channel> {
      const receiver = await bindDgram(p); // never reads: no 'message' listener, no receive()
      // Until the receiver's queue is full: one sender may first run out of its own send buffer
      // (net.unix.max_dgram_qlen is 10 by default, 512 where systemd's sysctl.d ran), so add senders
      // until a new one cannot send a single datagram.
      const fillers: Channel[] = [];
      for (let sent = -1; sent !== 0 && fillers.length < 64;) {
        const filler = await connect(p, { type: 'dgram' });
        fillers.push(filler);
        for (sent = 0; filler.write({ data: 'fill' }); sent++);
      }
      for (const f of fillers) f.destroy(); // each one's queued message is dropped
      return receiver;
    }

    for (const type of ['dgram', 'stream'] as const) {
      for (const how of ['timeout', 'signal'] as const) {
        it(`${type}: a receiver that never reads; ${how} rejects with ${how === 'timeout' ? 'ERR_FDPASS_TIMEOUT' : 'ERR_FDPASS_ABORTED'}, the sender's socket and duplicate are closed, its fd stays open`, async () => {
          const p = tmpPath(`${type}.sock`);
          let server: Awaited<ReturnType<typeof listen>> | undefined;
          let receiver: Channel | undefined;
          const accepted: Channel[] = [];
          if (type === 'dgram') {
            receiver = await fullDgramReceiver(p);
          } else {
            server = await listen(p, { type: 'stream' });
            server.on('connection', (c: Channel) => accepted.push(c)); // accepted, never read
          }
          fs.writeFileSync(tmpPath('file'), 'payload');
          const file = fs.openSync(tmpPath('file'), 'r');
          await settle();
          const before = openFds();
          // Stream: bigger than both socket buffers, so most of it waits in the sender's queue.
          const data = type === 'stream' ? Buffer.alloc(4 * 1024 * 1024, 1) : Buffer.from('one datagram');
          const ac = new AbortController();
          const sending = sendFd(p, file, data, how === 'timeout' ? { type, timeout: 300 } : { type, signal: ac.signal });
          if (how === 'signal') setTimeout(() => ac.abort(), 300);
          const r = await within(sending, 5000);
          assert.notEqual(r, 'pending', 'sendFd was still pending 5 s later');
          assert.ok(r !== 'pending' && 'error' in r, 'sendFd resolved');
          assert.ok(r.error instanceof FdpassError, String(r.error));
          assert.equal(r.error.code, how === 'timeout' ? 'ERR_FDPASS_TIMEOUT' : 'ERR_FDPASS_ABORTED');
          assert.equal(r.error.message, how === 'timeout' ? `sendFds to '${p}' timed out after 300 ms` : `sendFds to '${p}' was aborted`);
          await settle();
          // The sender holds nothing more than before: no socket, no duplicate of `file`. (The stream
          // receiver's accepted connection is the receiver's, in the same process here.)
          assert.equal(accepted.length, type === 'stream' ? 1 : 0);
          const expected = new Map(before);
          for (const c of accepted) expected.set(c.fd, fs.readlinkSync(`/proc/self/fd/${c.fd}`));
          assert.deepEqual(openFds(), expected);
          assert.equal(inspect(file).kind, 'file', "the caller's fd is still open");
          fs.closeSync(file);
          for (const c of accepted) await c.close();
          await server?.close();
          await receiver?.close();
        });
      }
    }

    it('an AbortSignal already aborted rejects before connecting: the receiver sees no connection', async () => {
      const p = tmpPath('seq.sock');
      const server = await listen(p);
      let connections = 0;
      server.on('connection', (c: Channel) => {
        connections++;
        c.destroy();
      });
      const before = openFds();
      const err = await failure(sendFd(p, 0, 'x', { signal: AbortSignal.abort() }));
      assert.equal(err.code, 'ERR_FDPASS_ABORTED');
      await settle();
      assert.deepEqual(openFds(), before);
      assert.equal(connections, 0);
      await server.close();
    });
  });

  describe('recvFd(path) is one-shot: one message, every other connection closed at once', () => {
    /** Holds this thread (and its event loop) until `cond()`: connections then queue up unaccepted. */
    function holdLoopUntil(cond: () => boolean, ms: number): void {
      const cell = new Int32Array(new SharedArrayBuffer(4));
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
        Atomics.wait(cell, 0, 0, 5);
      }
    }

    async function round(i: number, sameBatch: boolean): Promise<void> {
      const p = tmpPath(`race-${i}.sock`);
      const senders = [0, 1].map((k) => {
        const file = tmpPath(`file-${i}-${k}`);
        fs.writeFileSync(file, `content of sender ${k}`);
        return runFixture('race-sender', [p, file, `sender ${k}`, tmpPath(`done-${i}-${k}`)]);
      });
      const ready = await Promise.all(senders.map((s) => s.expect<{ before: number }>('ready')));
      const before = openFds();
      const received = recvFd(p, { timeout: 10000 }); // listens before its first await
      for (const s of senders) s.send({ cmd: 'go' });
      // Both senders connect and send while this loop is held, so both connections are accepted
      // in one batch; without holding, they race the one-shot server as they come.
      if (sameBatch) holdLoopUntil(() => [0, 1].every((k) => fs.existsSync(tmpPath(`done-${i}-${k}`))), 10000);
      const { fd, data } = await received;
      await settle();
      // The receiver holds exactly the received fd: the listener and both connections are closed.
      assert.deepEqual(newFds(before, openFds()), [`${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`], `round ${i}`);
      assert.deepEqual(
        [...before.keys()].filter((n) => !fs.existsSync(`/proc/self/fd/${n}`)),
        [],
        `round ${i}: nothing of ours was closed`,
      );
      const k = Number(/^sender ([01])$/.exec(data.toString())?.[1]);
      assert.ok(k === 0 || k === 1, data.toString());
      assert.equal(fs.readFileSync(`/proc/self/fd/${fd}`, 'utf8'), `content of sender ${k}`, 'the fd came with its own message');
      closeFd(fd);
      const results = await Promise.all(
        senders.map((s) => s.expect<{ sent: boolean; code?: string; before: number; after: number }>('done')),
      );
      assert.equal(results[k]!.sent, true, `round ${i}: the sender whose message arrived resolved`);
      const other = results[1 - k]!;
      if (sameBatch) {
        // Its message was already in the socket when the receiver refused the connection.
        assert.equal(other.sent, true, `round ${i}: ${JSON.stringify(other)}`);
      } else if (!other.sent) {
        assert.ok(['ENOENT', 'ECONNREFUSED', 'EPIPE', 'ECONNRESET', 'ERR_FDPASS_CLOSED'].includes(other.code ?? ''), JSON.stringify(other));
      }
      for (const [n, r] of results.entries()) {
        assert.equal(r.after, r.before, `sender ${n}: its descriptors are back to what it held before sending`);
        assert.equal(r.before, ready[n]!.before);
      }
      for (const s of senders) {
        s.proc.stdin?.end(); // its stdin reader is what keeps it alive
        assert.deepEqual(await s.exited, { code: 0, signal: null });
      }
    }

    it('two senders in two processes, accepted in one batch (4 rounds): one message, the other connection closed at once', async function () {
      this.timeout(60000);
      for (let i = 0; i < 4; i++) await round(i, true);
    });

    it('two senders racing freely (4 rounds): one message; the other is refused or fails, never left open', async function () {
      this.timeout(60000);
      for (let i = 0; i < 4; i++) await round(i, false);
    });
  });

  describe("listenReusePort / bindReusePort: host '' and scoped IPv6", () => {
    it("host '' means every address, as in Node's listen({ host: '' }); no DEP0118 warning", async () => {
      const warnings: Error[] = [];
      const onWarning = (w: Error): void => {
        warnings.push(w);
      };
      process.on('warning', onWarning);
      try {
        const server = await listenReusePort({ port: 0, host: '', server: greeter('every address') });
        const a = server.address() as net.AddressInfo;
        assert.ok(a.address === '::' || a.address === '0.0.0.0', a.address);
        assert.equal(await tcpHello(a.port, '127.0.0.1'), 'every address');
        await closeServer(server);
        const udp = await bindReusePort({ port: 0, host: '', type: 'udp4' });
        assert.equal(udp.address().address, '0.0.0.0');
        await closeDgram(udp);
        await settle();
      } finally {
        process.off('warning', onWarning);
      }
      assert.deepEqual(
        warnings.map((w) => w.message),
        [],
      );
    });

    it("'::1%lo' and '::1%<index of lo>' listen on ::1 and a client connects through loopback; udp6 too", async function () {
      requires(this, ipv6Loopback());
      const index = Number(fs.readFileSync('/sys/class/net/lo/ifindex', 'utf8'));
      for (const host of ['::1%lo', `::1%${index}`]) {
        const server = await listenReusePort({ port: 0, host, server: greeter(host) });
        const a = server.address() as net.AddressInfo;
        assert.equal(a.address, '::1');
        assert.equal(await tcpHello(a.port, '::1'), host);
        await closeServer(server);
      }
      const udp = await bindReusePort({ port: 0, host: '::1%lo', type: 'udp6' });
      assert.equal(udp.address().address, '::1');
      const arrived = new Promise<string>((resolve) => udp.once('message', (m) => resolve(m.toString())));
      const sender = dgram.createSocket('udp6');
      await new Promise<void>((resolve, reject) => sender.send('scoped', udp.address().port, '::1', (e) => (e ? reject(e) : resolve())));
      assert.equal(await arrived, 'scoped');
      await closeDgram(sender);
      await closeDgram(udp);
    });

    it('a scope naming no interface is ERR_INVALID_ARG_VALUE naming options.host; nothing stays open', async () => {
      const before = openFds();
      for (const host of ['::1%nosuch0', 'fe80::1%nosuch0', '::1%0']) {
        const e1 = await failure(listenReusePort({ port: 0, host }));
        assert.ok(e1 instanceof TypeError, `${host}: ${String(e1)}`);
        assert.equal(e1.code, 'ERR_INVALID_ARG_VALUE');
        assert.equal(e1.message, `The argument 'options.host' names a network interface that does not exist (ENODEV). Received '${host}'`);
        const e2 = await failure(bindReusePort({ port: 0, host, type: 'udp6' }));
        assert.equal(e2.code, 'ERR_INVALID_ARG_VALUE', host);
      }
      await settle();
      assert.deepEqual(openFds(), before);
    });
  });
});
