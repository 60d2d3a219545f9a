// The traps of adoption: descriptors of the wrong kind (unbound, bound but not listening, a FIFO, a
// Unix socket where TCP is wanted...) are refused with ERR_FDPASS_* and left open for the caller.
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as http from 'node:http';
import * as os from 'node:os';
import {
  FdpassError,
  FdpassSystemError,
  adopt,
  closeFd,
  dupFd,
  type FdInfo,
  fdOf,
  inspect,
  listen,
  recvFds,
  socketPair,
  toDgram,
  toServer,
  toSocket,
} from 'fdpass';
import { spawnJson } from './helpers/children';
import { expectFdpassError, failure } from './helpers/errors';
import {
  assertOpen,
  bindUdp,
  closeDgram,
  closeServer,
  greeter,
  listenTcp,
  nextDatagram,
  portOf,
  sendDatagram,
  sock,
  socketsFromPython,
  tcpHello,
  tcpPair,
  withFds,
} from './helpers/sockets';
import { fifoFds, openFds, settle, without } from './helpers/fds';
import { tmpPath } from './helpers/tmp';

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

describe('traps: descriptors of the wrong kind are refused and left open', () => {
  it('an unbound TCP socket (made by python3): toServer and adopt refuse with ERR_FDPASS_UNBOUND', async () => {
    await withFds(await socketsFromPython(['tcp4', 'unix-stream']), async ([tcp, unix]) => {
      const s = sock(inspect(tcp!));
      assert.equal(s.domain, 'inet');
      assert.equal(s.type, 'stream');
      assert.deepEqual(s.local, { family: 'IPv4', address: '0.0.0.0', port: 0 });
      await expectFdpassError(
        toServer(tcp!),
        'ERR_FDPASS_UNBOUND',
        /not bound to an address; Node would bind it to a random port/,
        'toServer(tcp)',
      );
      assertOpen(tcp!, 'socket', 'toServer(unbound tcp)');
      await expectFdpassError(toServer(tcp!, http.createServer()), 'ERR_FDPASS_UNBOUND', undefined, 'toServer(tcp, http)');
      await expectFdpassError(adopt(tcp!), 'ERR_FDPASS_UNBOUND', undefined, 'adopt(tcp)');
      assertOpen(tcp!, 'socket', 'adopt(unbound tcp)');
      // Not connected either: toSocket refuses it as the wrong kind.
      await expectFdpassError(
        () => toSocket(tcp!),
        'ERR_FDPASS_WRONG_FD_KIND',
        /not a connected TCP or Unix stream socket/,
        'toSocket(tcp)',
      );
      assertOpen(tcp!, 'socket', 'toSocket(unbound tcp)');
      // An unbound Unix stream socket: the same.
      assert.equal(sock(inspect(unix!)).local?.family, 'unix');
      await expectFdpassError(toServer(unix!), 'ERR_FDPASS_UNBOUND', undefined, 'toServer(unix)');
      await expectFdpassError(adopt(unix!), 'ERR_FDPASS_UNBOUND', undefined, 'adopt(unix)');
      assertOpen(unix!, 'socket', 'unbound unix');
    });
  });

  it('an unbound UDP socket (made by python3): toDgram and adopt refuse with ERR_FDPASS_UNBOUND', async () => {
    await withFds(await socketsFromPython(['udp4']), async ([udp]) => {
      await expectFdpassError(toDgram(udp!), 'ERR_FDPASS_UNBOUND', /UDP socket that is not bound/, 'toDgram');
      await expectFdpassError(adopt(udp!), 'ERR_FDPASS_UNBOUND', undefined, 'adopt');
      assertOpen(udp!, 'socket', 'unbound udp');
    });
  });

  it('a bound TCP socket that does not listen yet (made by python3): toServer listens on its port', async () => {
    const [fd] = await socketsFromPython(['tcp4-bound']);
    const s = sock(inspect(fd!));
    assert.equal(s.listening, false);
    assert.ok(s.local?.family === 'IPv4' && s.local.port > 0);
    const port = s.local.port;
    const server = await toServer(fd!, greeter('bound then adopted'));
    assert.equal(portOf(server), port);
    assert.equal(sock(inspect(fd!)).listening, true);
    assert.equal(await tcpHello(port), 'bound then adopted');
    await closeServer(server);
  });

  it('toSocket on a SEQPACKET (and a Unix datagram) socket is ERR_FDPASS_WRONG_FD_KIND; the fd stays open', async () => {
    for (const type of ['seqpacket', 'dgram'] as const) {
      const [a, b] = socketPair({ type });
      const fd = dupFd(a.fd);
      await expectFdpassError(
        () => toSocket(fd),
        'ERR_FDPASS_WRONG_FD_KIND',
        new RegExp(`^fd ${fd} is an? unix ${type} socket, not a connected TCP or Unix stream socket$`),
        type,
      );
      await expectFdpassError(toServer(fd), 'ERR_FDPASS_WRONG_FD_KIND', /not a listening or bound TCP or Unix stream socket/, type);
      await expectFdpassError(toDgram(fd), 'ERR_FDPASS_WRONG_FD_KIND', /not a bound UDP socket/, type);
      await expectFdpassError(adopt(fd), 'ERR_FDPASS_WRONG_FD_KIND', /not a TCP, UDP or Unix stream socket/, type);
      assertOpen(fd, 'socket', type);
      closeFd(fd);
      // The channel whose socket was dup'd is untouched.
      await a.send({ data: 'fine' });
      assert.equal((await b.receive()).data.toString(), 'fine');
      await a.close();
      await b.close();
    }
  });

  it("WRONG_FD_KIND messages say 'a unix ... socket' (the article follows the sound, not the letter)", async () => {
    const [a, b] = socketPair();
    const fd = dupFd(a.fd);
    let message = '';
    try {
      toSocket(fd);
    } catch (err) {
      message = (err as Error).message;
    }
    closeFd(fd);
    await a.close();
    await b.close();
    // Fixed: wrongKind() in lib/adopt.ts used to pick "an" for any word starting with a vowel letter
    // ("an unix"); "unix" is pronounced "you-nix".
    assert.equal(message, `fd ${fd} is a unix seqpacket socket, not a connected TCP or Unix stream socket`);
  });

  it('the wrong socket kind for each adopter (UDP, TCP, listener, connected) is WRONG_FD_KIND', async () => {
    const udp = await bindUdp();
    const ufd = fdOf(udp);
    await expectFdpassError(
      () => toSocket(ufd),
      'ERR_FDPASS_WRONG_FD_KIND',
      /is an inet dgram socket, not a connected TCP/,
      'toSocket(udp)',
    );
    await expectFdpassError(toServer(ufd), 'ERR_FDPASS_WRONG_FD_KIND', /is an inet dgram socket/, 'toServer(udp)');
    assertOpen(ufd, 'socket', 'udp');
    // The dgram.Socket that owns it still works.
    const arrived = nextDatagram(udp);
    await sendDatagram('still bound', udp.address().port);
    assert.equal((await arrived).msg, 'still bound');
    await closeDgram(udp);

    const server = await listenTcp();
    const sfd = fdOf(server);
    await expectFdpassError(
      () => toSocket(sfd),
      'ERR_FDPASS_WRONG_FD_KIND',
      /is an inet stream socket \(listening\), not a connected/,
      'toSocket(listener)',
    );
    await expectFdpassError(toDgram(sfd), 'ERR_FDPASS_WRONG_FD_KIND', /not a bound UDP socket/, 'toDgram(listener)');
    const pair = await tcpPair();
    const cfd = fdOf(pair.client);
    await expectFdpassError(
      toServer(cfd),
      'ERR_FDPASS_WRONG_FD_KIND',
      /is an inet stream socket, not a listening or bound/,
      'toServer(connected)',
    );
    await expectFdpassError(toDgram(cfd), 'ERR_FDPASS_WRONG_FD_KIND', undefined, 'toDgram(connected)');
    assertOpen(sfd, 'socket', 'listener');
    assertOpen(cfd, 'socket', 'connected');
    // A listening seqpacket ChannelServer: not a stream.
    const cs = await listen(tmpPath('seq.sock'));
    const csfd = dupFd(cs.fd);
    await expectFdpassError(
      toServer(csfd),
      'ERR_FDPASS_WRONG_FD_KIND',
      /unix seqpacket socket \(listening\), not a listening or bound TCP/,
      'toServer(seqpacket listener)',
    );
    await expectFdpassError(adopt(csfd), 'ERR_FDPASS_WRONG_FD_KIND', undefined, 'adopt(seqpacket listener)');
    assertOpen(csfd, 'socket', 'seqpacket listener');
    closeFd(csfd);
    await cs.close();
    await pair.close();
    await closeServer(server);
  });

  it('a regular file and both pipe ends: every adopter refuses with WRONG_FD_KIND, the fd stays open', async () => {
    const p = tmpPath('plain.txt');
    fs.writeFileSync(p, 'plain');
    const file = fs.openSync(p, 'r');
    const [r, w] = fifoFds();
    const cases: Array<[number, FdInfo['kind'], RegExp]> = [
      [file, 'file', /is a file, not/],
      [r, 'pipe', /is a pipe, not/],
      [w, 'pipe', /is a pipe, not/],
    ];
    for (const [fd, kind, message] of cases) {
      await expectFdpassError(toServer(fd), 'ERR_FDPASS_WRONG_FD_KIND', message, `toServer(${kind})`);
      await expectFdpassError(toServer(fd, http.createServer()), 'ERR_FDPASS_WRONG_FD_KIND', message, `toServer(${kind}, http)`);
      await expectFdpassError(() => toSocket(fd), 'ERR_FDPASS_WRONG_FD_KIND', message, `toSocket(${kind})`);
      await expectFdpassError(toDgram(fd), 'ERR_FDPASS_WRONG_FD_KIND', message, `toDgram(${kind})`);
      await expectFdpassError(adopt(fd), 'ERR_FDPASS_WRONG_FD_KIND', message, `adopt(${kind})`);
      assertOpen(fd, kind, kind);
    }
    // Still usable by the caller.
    assert.equal(fs.readFileSync(file, 'utf8'), 'plain');
    fs.writeSync(w, 'through the pipe');
    const buf = Buffer.alloc(64);
    assert.equal(buf.toString('utf8', 0, fs.readSync(r, buf)), 'through the pipe');
    fs.closeSync(file);
    fs.closeSync(r);
    fs.closeSync(w);
  });

  it('fdOf on objects without a descriptor is ERR_FDPASS_NO_FD', async () => {
    const notListening = net.createServer();
    await expectFdpassError(() => fdOf(notListening), 'ERR_FDPASS_NO_FD', /has no descriptor/, 'server not listening');
    const notConnected = new net.Socket();
    await expectFdpassError(() => fdOf(notConnected), 'ERR_FDPASS_NO_FD', undefined, 'socket not connected');
    const notBound = dgram.createSocket('udp4');
    await expectFdpassError(() => fdOf(notBound), 'ERR_FDPASS_NO_FD', undefined, 'dgram not bound');
    await closeDgram(notBound);

    const server = await listenTcp();
    const fd = fdOf(server);
    assert.equal(sock(inspect(fd)).listening, true);
    await closeServer(server);
    await expectFdpassError(() => fdOf(server), 'ERR_FDPASS_NO_FD', undefined, 'server closed');
    const udp = await bindUdp();
    await closeDgram(udp);
    await expectFdpassError(() => fdOf(udp), 'ERR_FDPASS_NO_FD', undefined, 'dgram closed');
    const pair = await tcpPair();
    const client = pair.client;
    await pair.close();
    await expectFdpassError(() => fdOf(client), 'ERR_FDPASS_NO_FD', undefined, 'socket destroyed');
  });

  describe("a rejected adoption leaves the fd open and the caller's", () => {
    // The SO_REUSEADDR twin of a listener: listen() fails; closeFd then closes exactly that fd.
    it('a bound socket whose port a listener holds: toServer/adopt fail with EADDRINUSE, the fd stays open', async () => {
      const [listener, twin] = (await fromPython('twin')) as [number, number];
      const port = sock(inspect(twin)).local?.family === 'IPv4' ? (sock(inspect(twin)).local as { port: number }).port : -1;
      assert.ok(port > 0);
      assert.equal(sock(inspect(twin)).listening, false);
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
        assert.equal(sock(inspect(twin)).listening, false, what);
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

    // SYN_SENT to a loopback listener whose accept queue is full.
    it('adopt() on a TCP socket still connecting is ERR_FDPASS_WRONG_FD_KIND; the fd stays open', async () => {
      const [listener, filler, connecting] = (await fromPython('syn-sent')) as [number, number, number];
      const s = sock(inspect(connecting));
      assert.equal(s.connecting, true);
      assert.equal(s.connected, false);
      assert.equal(s.listening, false);
      assert.equal(sock(inspect(filler)).connecting, false);
      assert.equal(sock(inspect(filler)).connected, true);
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
      assert.equal(sock(inspect(connecting)).connecting, true, 'still the same socket, still connecting');
      closeFd(connecting);
      assert.deepEqual(openFds(), without(before, [connecting]));
      closeFd(filler);
      closeFd(listener);
      assert.deepEqual(openFds(), without(before, [connecting, filler, listener]));
    });

    it("an fd Node already owns: toDgram/toServer fail naming the adopter (EEXIST), Node's object works on", async () => {
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
  });
});
