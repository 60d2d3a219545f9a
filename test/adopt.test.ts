// Adoption within one process: inspect() says what a descriptor is; toServer/toSocket/toDgram/adopt turn
// one into a working Node object; fdOf goes back; SO_REUSEPORT listeners. And the traps: descriptors of
// the wrong kind are refused with ERR_FDPASS_* and left open for the caller.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  FdpassError,
  adopt,
  bindReusePort,
  closeFd,
  dupFd,
  fdOf,
  inspect,
  listen,
  listenReusePort,
  recvFds,
  socketPair,
  toDgram,
  toServer,
  toSocket,
  type Channel,
  type ChannelServer,
  type FdInfo,
  type SocketInfo,
} from 'fdpass';
import { spawnJson } from './helpers/children';
import { tmpPath } from './helpers/tmp';

// ---------------------------------------------------------------------------------------------------
// Helpers: every one of them closes what it opens, so the root hook's leak check holds.

const hasIPv6Loopback = Object.values(os.networkInterfaces()).some((list) =>
  (list ?? []).some((i) => i.family === 'IPv6' && i.address === '::1'),
);

function listenTcp(host = '127.0.0.1', server: net.Server = net.createServer()): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function portOf(x: net.Server | net.Socket | dgram.Socket): number {
  if (x instanceof net.Socket) return x.localPort!;
  return (x.address() as net.AddressInfo).port;
}

/** Closes a server; an http.Server also drops its idle keep-alive connections first. */
function closeServer(server: net.Server): Promise<void> {
  if (server instanceof http.Server) server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

function destroySocket(socket: net.Socket): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.destroy();
  });
}

function closeDgram(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

function bindUdp(type: 'udp4' | 'udp6' = 'udp4', host = type === 'udp4' ? '127.0.0.1' : '::1'): Promise<dgram.Socket> {
  const socket = dgram.createSocket(type);
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/** A connected TCP pair: `client` (ours) and `accepted` (the server's end). */
interface TcpPair {
  server: net.Server;
  client: net.Socket;
  accepted: net.Socket;
  close(): Promise<void>;
}

async function tcpPair(host = '127.0.0.1'): Promise<TcpPair> {
  const server = await listenTcp(host);
  const acceptedP = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(portOf(server), host);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  const accepted = await acceptedP;
  return {
    server,
    client,
    accepted,
    async close() {
      await destroySocket(client);
      await destroySocket(accepted);
      await closeServer(server);
    },
  };
}

/** Reads from `socket` until `n` bytes arrived. */
function readBytes(socket: net.Socket, n: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= n) {
        socket.off('data', onData);
        socket.off('error', reject);
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

function nextDatagram(socket: dgram.Socket, timeoutMs = 5000): Promise<{ msg: string; port: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no datagram arrived')), timeoutMs);
    socket.once('message', (msg, rinfo) => {
      clearTimeout(timer);
      resolve({ msg: msg.toString(), port: rinfo.port });
    });
  });
}

async function sendDatagram(text: string, port: number, host = '127.0.0.1'): Promise<void> {
  const sender = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => sender.send(text, port, host, (err) => (err ? reject(err) : resolve())));
  await closeDgram(sender);
}

/** One HTTP GET without keep-alive (no pooled socket outlives the test). */
function httpGet(port: number, urlPath: string, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => {
        // Resolve once the client socket is gone too.
        if (res.socket.destroyed) resolve(body);
        else res.socket.once('close', () => resolve(body));
      });
    });
    req.once('error', reject);
  });
}

/** A round trip: connect, read all the server says, until it closes. */
function hello(c: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      got += d;
    });
    c.once('error', reject);
    c.once('close', () => resolve(got));
  });
}

function tcpHello(port: number, host = '127.0.0.1'): Promise<string> {
  return hello(net.connect(port, host));
}

function unixHello(p: string): Promise<string> {
  return hello(net.connect(p));
}

/** A server that greets each connection with `name` and closes it. */
function greeter(name: string): net.Server {
  return net.createServer((s) => s.end(name));
}

/** Both ends of a FIFO, opened without a child ([read, write]). */
function fifoFds(): [number, number] {
  const p = tmpPath(`fifo-${Math.random().toString(36).slice(2)}`);
  execFileSync('mkfifo', [p]);
  const r = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const w = fs.openSync(p, fs.constants.O_WRONLY);
  return [r, w];
}

/** A descriptor is still open (and still the same kind of thing). */
function assertOpen(fd: number, kind: FdInfo['kind'], what: string): void {
  let info: FdInfo;
  try {
    info = inspect(fd);
  } catch (err) {
    assert.fail(`${what}: fd ${fd} was closed by the call that refused it (${(err as Error).message})`);
  }
  assert.equal(info.kind, kind, what);
}

async function expectFdpassError(p: Promise<unknown> | (() => unknown), code: string, message?: RegExp, what = ''): Promise<FdpassError> {
  let result: unknown;
  try {
    result = await (typeof p === 'function' ? p() : p);
  } catch (err) {
    assert.ok(err instanceof FdpassError, `${what}: expected an FdpassError, got ${String(err)}`);
    assert.equal(err.code, code, `${what}: ${err.message}`);
    if (message) assert.match(err.message, message, what);
    return err;
  }
  if (result instanceof net.Server) await closeServer(result);
  else if (result instanceof net.Socket) await destroySocket(result);
  else if (result instanceof dgram.Socket) await closeDgram(result);
  return assert.fail(`${what}: expected ${code}, but it succeeded`);
}

/**
 * Sockets Node cannot make: a python3 child creates them (unbound TCP/UDP/Unix, a bound TCP socket that
 * does not listen) and sends them over a Unix stream socket with socket.send_fds. Returns the fds (ours).
 */
const PY_SENDER = `
import socket, sys
made = []
for kind in sys.argv[2].split(','):
    if kind == 'tcp4':
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    elif kind == 'tcp6':
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    elif kind == 'tcp4-bound':
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(('127.0.0.1', 0))
    elif kind == 'udp4':
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    elif kind == 'udp6':
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    elif kind == 'unix-stream':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        raise SystemExit('unknown kind ' + kind)
    made.append(s)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(sys.argv[1])
socket.send_fds(c, [b'sockets'], [s.fileno() for s in made])
c.close()
`;

async function socketsFromPython(kinds: string[]): Promise<number[]> {
  const p = tmpPath('python.sock');
  const ac = new AbortController();
  // recvFds listens synchronously, before its first await: the child can connect right away.
  const received = recvFds(p, { type: 'stream', timeout: 15000, signal: ac.signal });
  const child = spawnJson('python3', ['-c', PY_SENDER, p, kinds.join(',')]);
  void child.exited.then((e) => {
    if (e.code !== 0) ac.abort();
  });
  let m: Awaited<ReturnType<typeof recvFds>>;
  try {
    m = await received;
  } catch (err) {
    const e = await child.exited;
    throw new Error(`python3 did not send its sockets (exit ${String(e.code)}): ${child.stderr()} / ${(err as Error).message}`);
  }
  const exit = await child.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, child.stderr());
  assert.equal(m.data.toString(), 'sockets');
  assert.equal(m.fds.length, kinds.length);
  return m.fds;
}

/** Runs `fn` with the fds, closing every one still open afterwards (whatever happened). */
async function withFds(fds: number[], fn: (fds: number[]) => Promise<void>): Promise<void> {
  try {
    await fn(fds);
  } finally {
    for (const fd of fds) {
      try {
        closeFd(fd);
      } catch {
        // adopted (and closed by its Node object) or already closed by the test
      }
    }
  }
}

function sock(info: FdInfo): SocketInfo {
  assert.equal(info.kind, 'socket');
  assert.ok(info.socket, 'a socket has socket info');
  return info.socket;
}

// ---------------------------------------------------------------------------------------------------

describe('inspect', () => {
  it('a regular file, a directory and /dev/null: kind, flags, no socket info', () => {
    const p = tmpPath('file.txt');
    fs.writeFileSync(p, 'x');
    const fd = fs.openSync(p, 'r');
    const info = inspect(fd);
    assert.deepEqual(info, { fd, kind: 'file', cloexec: info.cloexec, nonblocking: false });
    assert.equal(info.socket, undefined);
    fs.closeSync(fd);

    const dir = fs.openSync(path.dirname(p), 'r');
    assert.equal(inspect(dir).kind, 'directory');
    fs.closeSync(dir);

    const nul = fs.openSync('/dev/null', 'r');
    assert.equal(inspect(nul).kind, 'char');
    fs.closeSync(nul);
  });

  it('both ends of a FIFO are pipes (the O_NONBLOCK end says so)', () => {
    const [r, w] = fifoFds();
    const ri = inspect(r);
    const wi = inspect(w);
    assert.equal(ri.kind, 'pipe');
    assert.equal(wi.kind, 'pipe');
    assert.equal(ri.nonblocking, true);
    assert.equal(wi.nonblocking, false);
    assert.equal(ri.socket, undefined);
    fs.closeSync(r);
    fs.closeSync(w);
  });

  it('a listening TCP socket (fdOf(server)): inet stream, listening, its local address, no peer', async () => {
    const server = await listenTcp();
    const fd = fdOf(server);
    const info = inspect(fd);
    assert.equal(info.fd, fd);
    assert.equal(info.cloexec, true);
    assert.deepEqual(sock(info), {
      domain: 'inet',
      type: 'stream',
      protocol: 6, // IPPROTO_TCP
      listening: true,
      connected: false,
      connecting: false,
      local: { family: 'IPv4', address: '127.0.0.1', port: portOf(server) },
      peer: undefined,
    });
    await closeServer(server);
  });

  it('a connected TCP socket, both ends: connected, not listening, local and peer addresses cross-match', async () => {
    const pair = await tcpPair();
    const c = sock(inspect(fdOf(pair.client)));
    const a = sock(inspect(fdOf(pair.accepted)));
    for (const s of [c, a]) {
      assert.equal(s.domain, 'inet');
      assert.equal(s.type, 'stream');
      assert.equal(s.listening, false);
      assert.equal(s.connected, true);
    }
    assert.deepEqual(c.local, { family: 'IPv4', address: '127.0.0.1', port: pair.client.localPort });
    assert.deepEqual(c.peer, { family: 'IPv4', address: '127.0.0.1', port: portOf(pair.server) });
    assert.deepEqual(a.local, c.peer);
    assert.deepEqual(a.peer, c.local);
    await pair.close();
  });

  it('a bound UDP socket (fdOf(dgram socket)): inet dgram, not listening, not connected, its port', async () => {
    const u = await bindUdp();
    const s = sock(inspect(fdOf(u)));
    assert.deepEqual(s, {
      domain: 'inet',
      type: 'dgram',
      protocol: 17, // IPPROTO_UDP
      listening: false,
      connected: false,
      connecting: false,
      local: { family: 'IPv4', address: '127.0.0.1', port: u.address().port },
      peer: undefined,
    });
    await closeDgram(u);
  });

  it('Unix socket pair ends (channel.fd) of each kind: unix, connected, unnamed addresses', async () => {
    for (const type of ['seqpacket', 'stream', 'dgram'] as const) {
      const [a, b] = socketPair({ type });
      const info = inspect(a.fd);
      assert.equal(info.nonblocking, true, type);
      assert.equal(info.cloexec, true, type);
      const unnamed = { family: 'unix', path: '', abstract: false, unnamed: true };
      assert.deepEqual(sock(info), { domain: 'unix', type, protocol: 0, listening: false, connected: true, connecting: false, local: unnamed, peer: unnamed }, type);
      // inspect() only looks: the channel still works.
      await a.send({ data: 'after inspect' });
      assert.equal((await b.receive()).data.toString(), 'after inspect', type);
      await a.close();
      await b.close();
    }
  });

  it('a listening Unix socket reports its path; an abstract one its name', async () => {
    const p = tmpPath('named.sock');
    const server = await listen(p, { type: 'stream' });
    assert.deepEqual(sock(inspect(server.fd)), {
      domain: 'unix',
      type: 'stream',
      protocol: 0,
      listening: true,
      connected: false,
      connecting: false,
      local: { family: 'unix', path: p, abstract: false, unnamed: false },
      peer: undefined,
    });
    await server.close();
    const name = `fdpass-adopt-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const abstract = await listen(`@${name}`);
    const s = sock(inspect(abstract.fd));
    assert.equal(s.type, 'seqpacket');
    assert.deepEqual(s.local, { family: 'unix', path: name, abstract: true, unnamed: false });
    await abstract.close();
  });
});

describe('toServer / toSocket / toDgram / adopt', () => {
  it('toServer(dupFd(fdOf(server)), http.createServer()) serves a real HTTP request after the original closed', async () => {
    const original = await listenTcp();
    const port = portOf(original);
    const fd = dupFd(fdOf(original));
    assert.notEqual(fd, fdOf(original));
    await closeServer(original); // the dup keeps the socket listening
    const httpServer = http.createServer((req, res) => {
      res.setHeader('connection', 'close');
      res.end(`adopted ${req.method!} ${req.url!}`);
    });
    const adopted = await toServer(fd, httpServer);
    assert.equal(adopted, httpServer, 'resolves with the server it was given');
    assert.equal(adopted.listening, true);
    assert.equal(portOf(adopted), port);
    assert.equal(fdOf(adopted), fd, 'the server owns the descriptor it was given');
    assert.equal(await httpGet(port, '/hello'), 'adopted GET /hello');
    assert.equal(await httpGet(port, '/again'), 'adopted GET /again');
    await closeServer(adopted);
    assert.throws(() => inspect(fd), { code: 'EBADF' }, 'closing the server closed the fd');
  });

  it('toServer without a server resolves a new listening net.Server sharing the queue; once the original closes it serves alone', async () => {
    const original = await listenTcp('127.0.0.1', greeter('original'));
    const adopted = await toServer(dupFd(fdOf(original)));
    assert.ok(adopted instanceof net.Server);
    assert.ok(!(adopted instanceof http.Server));
    assert.equal(portOf(adopted), portOf(original));
    adopted.on('connection', (s) => s.end('adopted'));
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(await tcpHello(portOf(original)));
    for (const a of answers) assert.ok(a === 'original' || a === 'adopted', a);
    await closeServer(original);
    assert.equal(await tcpHello(portOf(adopted)), 'adopted', 'the adopted server serves alone');
    await closeServer(adopted);
  });

  it('toSocket on a dup of a connected TCP socket: writes and reads go through it', async () => {
    const pair = await tcpPair();
    const fd = dupFd(fdOf(pair.client));
    await destroySocket(pair.client); // the connection lives on in the dup (no FIN: another fd holds it)
    const socket = toSocket(fd);
    assert.ok(socket instanceof net.Socket);
    assert.equal(socket.remotePort, portOf(pair.server));
    assert.equal(socket.remoteAddress, '127.0.0.1');
    const atServer = readBytes(pair.accepted, 4);
    socket.write('ping');
    assert.equal(await atServer, 'ping');
    const atAdopted = readBytes(socket, 4);
    pair.accepted.write('pong');
    assert.equal(await atAdopted, 'pong');
    await destroySocket(socket);
    await pair.close();
  });

  it('toSocket on a dup of a Unix stream socket pair end talks to the channel at the other end', async () => {
    const [a, b] = socketPair({ type: 'stream' });
    const socket = toSocket(dupFd(a.fd));
    socket.write('through net.Socket');
    const m = await b.receive();
    assert.equal(m.data.toString(), 'through net.Socket');
    await destroySocket(socket);
    await a.close();
    await b.close();
  });

  it('toDgram on a dup of a bound UDP socket receives (and answers) a datagram', async () => {
    const original = await bindUdp();
    const port = original.address().port;
    const fd = dupFd(fdOf(original));
    await closeDgram(original);
    const u = await toDgram(fd);
    assert.ok(u instanceof dgram.Socket);
    assert.deepEqual(u.address(), { address: '127.0.0.1', family: 'IPv4', port });
    const arrived = nextDatagram(u);
    await sendDatagram('to the adopted socket', port);
    assert.equal((await arrived).msg, 'to the adopted socket');
    // It can send too: an answer to a second socket.
    const peer = await bindUdp();
    const answer = nextDatagram(peer);
    await new Promise<void>((resolve, reject) => u.send('answer', peer.address().port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
    assert.equal((await answer).msg, 'answer');
    assert.equal((await answer).port, port);
    await closeDgram(peer);
    await closeDgram(u);
  });

  it('adopt() picks the right kind each time', async () => {
    // Listening TCP -> net.Server
    const tcpServer = await listenTcp();
    const s = await adopt(dupFd(fdOf(tcpServer)));
    assert.ok(s instanceof net.Server, 'a listening TCP socket becomes a net.Server');
    assert.equal((s as net.Server).listening, true);
    assert.equal(portOf(s as net.Server), portOf(tcpServer));
    (s as net.Server).on('connection', (c) => c.end('from adopt'));
    await closeServer(tcpServer);
    assert.equal(await tcpHello(portOf(s as net.Server)), 'from adopt');
    await closeServer(s as net.Server);

    // Connected TCP -> net.Socket
    const pair = await tcpPair();
    const c = await adopt(dupFd(fdOf(pair.client)));
    assert.ok(c instanceof net.Socket, 'a connected TCP socket becomes a net.Socket');
    const got = readBytes(pair.accepted, 2);
    (c as net.Socket).write('hi');
    assert.equal(await got, 'hi');
    await destroySocket(c as net.Socket);
    await pair.close();

    // Bound UDP -> dgram.Socket
    const udp = await bindUdp();
    const d = await adopt(dupFd(fdOf(udp)));
    assert.ok(d instanceof dgram.Socket, 'a bound UDP socket becomes a dgram.Socket');
    await closeDgram(udp);
    const arrived = nextDatagram(d as dgram.Socket);
    await sendDatagram('dgram via adopt', (d as dgram.Socket).address().port);
    assert.equal((await arrived).msg, 'dgram via adopt');
    await closeDgram(d as dgram.Socket);

    // Listening Unix stream -> net.Server (a pipe server)
    const p = tmpPath('adopt-unix.sock');
    const unixServer: ChannelServer = await listen(p, { type: 'stream' });
    const us = await adopt(dupFd(unixServer.fd));
    assert.ok(us instanceof net.Server, 'a listening Unix stream socket becomes a net.Server');
    (us as net.Server).on('connection', (conn) => conn.end('unix'));
    const kept = tmpPath('adopt-unix-kept.sock');
    fs.renameSync(p, kept); // so that closing the ChannelServer leaves the file (it removes only its own path)
    await unixServer.close();
    assert.equal(sock(inspect(fdOf(us as net.Server))).listening, true);
    assert.equal(await unixHello(kept), 'unix');
    await closeServer(us as net.Server);

    // Connected Unix stream (socket pair end) -> net.Socket
    const [a, b]: Channel[] = socketPair({ type: 'stream' });
    const us2 = await adopt(dupFd(a.fd));
    assert.ok(us2 instanceof net.Socket, 'a connected Unix stream socket becomes a net.Socket');
    await destroySocket(us2 as net.Socket);
    await a.close();
    await b.close();
  });

  it('a Unix stream listener adopted by toServer serves net.connect(path)', async () => {
    const p = tmpPath('served.sock');
    const channelServer = await listen(p, { type: 'stream' });
    const fd = dupFd(channelServer.fd);
    const server = await toServer(fd, greeter('over unix'));
    // Both now accept from one queue: stop the channel server without removing the file.
    const kept = tmpPath('kept.sock');
    fs.renameSync(p, kept); // (ChannelServer.close() removes the file only if it is still its own at that path)
    await channelServer.close();
    assert.equal(await unixHello(kept), 'over unix');
    await closeServer(server);
  });
});

describe('traps: descriptors of the wrong kind are refused and left open', () => {
  it('an unbound TCP socket (made by python3): toServer and adopt refuse with ERR_FDPASS_UNBOUND', async () => {
    await withFds(await socketsFromPython(['tcp4', 'unix-stream']), async ([tcp, unix]) => {
      const s = sock(inspect(tcp!));
      assert.equal(s.domain, 'inet');
      assert.equal(s.type, 'stream');
      assert.deepEqual(s.local, { family: 'IPv4', address: '0.0.0.0', port: 0 });
      await expectFdpassError(toServer(tcp!), 'ERR_FDPASS_UNBOUND', /not bound to an address; Node would bind it to a random port/, 'toServer(tcp)');
      assertOpen(tcp!, 'socket', 'toServer(unbound tcp)');
      await expectFdpassError(toServer(tcp!, http.createServer()), 'ERR_FDPASS_UNBOUND', undefined, 'toServer(tcp, http)');
      await expectFdpassError(adopt(tcp!), 'ERR_FDPASS_UNBOUND', undefined, 'adopt(tcp)');
      assertOpen(tcp!, 'socket', 'adopt(unbound tcp)');
      // Not connected either: toSocket refuses it as the wrong kind.
      await expectFdpassError(() => toSocket(tcp!), 'ERR_FDPASS_WRONG_FD_KIND', /not a connected TCP or Unix stream socket/, 'toSocket(tcp)');
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
      await expectFdpassError(() => toSocket(fd), 'ERR_FDPASS_WRONG_FD_KIND', new RegExp(`^fd ${fd} is an? unix ${type} socket, not a connected TCP or Unix stream socket$`), type);
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

  it('toSocket/toServer on a UDP socket, toDgram on TCP, toSocket on a listener, toServer on a connected socket: WRONG_FD_KIND', async () => {
    const udp = await bindUdp();
    const ufd = fdOf(udp);
    await expectFdpassError(() => toSocket(ufd), 'ERR_FDPASS_WRONG_FD_KIND', /is an inet dgram socket, not a connected TCP/, 'toSocket(udp)');
    await expectFdpassError(toServer(ufd), 'ERR_FDPASS_WRONG_FD_KIND', /is an inet dgram socket/, 'toServer(udp)');
    assertOpen(ufd, 'socket', 'udp');
    // The dgram.Socket that owns it still works.
    const arrived = nextDatagram(udp);
    await sendDatagram('still bound', udp.address().port);
    assert.equal((await arrived).msg, 'still bound');
    await closeDgram(udp);

    const server = await listenTcp();
    const sfd = fdOf(server);
    await expectFdpassError(() => toSocket(sfd), 'ERR_FDPASS_WRONG_FD_KIND', /is an inet stream socket \(listening\), not a connected/, 'toSocket(listener)');
    await expectFdpassError(toDgram(sfd), 'ERR_FDPASS_WRONG_FD_KIND', /not a bound UDP socket/, 'toDgram(listener)');
    const pair = await tcpPair();
    const cfd = fdOf(pair.client);
    await expectFdpassError(toServer(cfd), 'ERR_FDPASS_WRONG_FD_KIND', /is an inet stream socket, not a listening or bound/, 'toServer(connected)');
    await expectFdpassError(toDgram(cfd), 'ERR_FDPASS_WRONG_FD_KIND', undefined, 'toDgram(connected)');
    assertOpen(sfd, 'socket', 'listener');
    assertOpen(cfd, 'socket', 'connected');
    // A listening seqpacket ChannelServer: not a stream.
    const cs = await listen(tmpPath('seq.sock'));
    const csfd = dupFd(cs.fd);
    await expectFdpassError(toServer(csfd), 'ERR_FDPASS_WRONG_FD_KIND', /unix seqpacket socket \(listening\), not a listening or bound TCP/, 'toServer(seqpacket listener)');
    await expectFdpassError(adopt(csfd), 'ERR_FDPASS_WRONG_FD_KIND', undefined, 'adopt(seqpacket listener)');
    assertOpen(csfd, 'socket', 'seqpacket listener');
    closeFd(csfd);
    await cs.close();
    await pair.close();
    await closeServer(server);
  });

  it('a regular file and both ends of a pipe: every adopter refuses with WRONG_FD_KIND, no abort, the fd stays open', async () => {
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
});

describe('SO_REUSEPORT', () => {
  it('listenReusePort twice on one port in one process: both listen and connections are served', async () => {
    const first = await listenReusePort({ port: 0, host: '127.0.0.1', server: greeter('first') });
    const port = portOf(first);
    const second = await listenReusePort({ port, host: '127.0.0.1', server: greeter('second') });
    assert.equal(portOf(second), port);
    for (const s of [first, second]) {
      assert.equal(s.listening, true);
      const info = sock(inspect(fdOf(s)));
      assert.equal(info.listening, true);
      assert.deepEqual(info.local, { family: 'IPv4', address: '127.0.0.1', port });
    }
    assert.notEqual(fdOf(first), fdOf(second), 'two sockets, not one shared');
    for (let i = 0; i < 8; i++) {
      const answer = await tcpHello(port);
      assert.ok(answer === 'first' || answer === 'second', answer);
    }
    await closeServer(first);
    assert.equal(await tcpHello(port), 'second', 'the second serves alone once the first closed');
    await closeServer(second);
  });

  it('listenReusePort adopts into an http.Server that serves', async () => {
    const server = http.createServer((req, res) => {
      res.setHeader('connection', 'close');
      res.end(`reuseport ${req.url!}`);
    });
    const s = await listenReusePort({ port: 0, host: '127.0.0.1', server });
    assert.equal(s, server);
    assert.equal(await httpGet(portOf(s), '/x'), 'reuseport /x');
    await closeServer(s);
  });

  it('listenReusePort without host listens on every address (dual-stack ::, or 0.0.0.0) and accepts 127.0.0.1', async () => {
    const s = await listenReusePort({ port: 0, server: greeter('any') });
    const info = sock(inspect(fdOf(s)));
    if (info.domain === 'inet6') assert.deepEqual(info.local, { family: 'IPv6', address: '::', port: portOf(s) });
    else assert.deepEqual(info.local, { family: 'IPv4', address: '0.0.0.0', port: portOf(s) });
    assert.equal(await tcpHello(portOf(s)), 'any');
    await closeServer(s);
  });

  it('bindReusePort twice for udp4 on one port: both bound, a datagram reaches one of them', async () => {
    const first = await bindReusePort({ port: 0, host: '127.0.0.1', type: 'udp4' });
    const port = first.address().port;
    const second = await bindReusePort({ port, host: '127.0.0.1', type: 'udp4' });
    assert.equal(second.address().port, port);
    assert.notEqual(fdOf(first), fdOf(second));
    for (const u of [first, second]) {
      const info = sock(inspect(fdOf(u)));
      assert.equal(info.type, 'dgram');
      assert.deepEqual(info.local, { family: 'IPv4', address: '127.0.0.1', port });
    }
    const arrived = Promise.race([
      nextDatagram(first).then((d) => `first:${d.msg}`),
      nextDatagram(second).then((d) => `second:${d.msg}`),
    ]);
    await sendDatagram('hello reuseport', port);
    const got = await arrived;
    assert.match(got, /^(first|second):hello reuseport$/);
    first.removeAllListeners('message');
    second.removeAllListeners('message');
    await closeDgram(first);
    await closeDgram(second);
  });
});

if (hasIPv6Loopback) {
  describe('IPv6 (::1)', () => {
    it('inspect reports inet6 and IPv6 addresses; toServer on a dup serves HTTP over ::1', async () => {
      const original = await listenTcp('::1');
      const info = sock(inspect(fdOf(original)));
      assert.equal(info.domain, 'inet6');
      assert.deepEqual(info.local, { family: 'IPv6', address: '::1', port: portOf(original) });
      const fd = dupFd(fdOf(original));
      await closeServer(original);
      const server = await toServer(fd, http.createServer((_req, res) => {
        res.setHeader('connection', 'close');
        res.end('v6');
      }));
      assert.equal(await httpGet(portOf(server), '/', '::1'), 'v6');
      await closeServer(server);
    });

    it('toSocket on a dup of a connected TCP socket over ::1', async () => {
      const pair = await tcpPair('::1');
      const s = sock(inspect(fdOf(pair.client)));
      assert.equal(s.domain, 'inet6');
      assert.deepEqual(s.peer, { family: 'IPv6', address: '::1', port: portOf(pair.server) });
      const fd = dupFd(fdOf(pair.client));
      await destroySocket(pair.client);
      const socket = toSocket(fd);
      const got = readBytes(pair.accepted, 2);
      socket.write('v6');
      assert.equal(await got, 'v6');
      await destroySocket(socket);
      await pair.close();
    });

    it('toDgram and adopt on a dup of a bound udp6 socket receive a datagram', async () => {
      const original = await bindUdp('udp6', '::1');
      const port = original.address().port;
      assert.equal(sock(inspect(fdOf(original))).domain, 'inet6');
      const d1 = await toDgram(dupFd(fdOf(original)));
      assert.deepEqual(d1.address(), { address: '::1', family: 'IPv6', port });
      const d2 = await adopt(dupFd(fdOf(original)));
      assert.ok(d2 instanceof dgram.Socket);
      await closeDgram(original);
      await closeDgram(d2);
      const arrived = nextDatagram(d1);
      await sendDatagram('over v6', port, '::1');
      assert.equal((await arrived).msg, 'over v6');
      await closeDgram(d1);
    });

    it('listenReusePort and bindReusePort twice on ::1', async () => {
      const a = await listenReusePort({ port: 0, host: '::1', server: greeter('a6') });
      const b = await listenReusePort({ port: portOf(a), host: '::1', server: greeter('b6') });
      assert.equal(sock(inspect(fdOf(b))).domain, 'inet6');
      const answer = await tcpHello(portOf(a), '::1');
      assert.ok(answer === 'a6' || answer === 'b6', answer);
      await closeServer(a);
      await closeServer(b);
      const u1 = await bindReusePort({ port: 0, host: '::1', type: 'udp6' });
      const u2 = await bindReusePort({ port: u1.address().port, host: '::1', type: 'udp6' });
      assert.deepEqual(sock(inspect(fdOf(u2))).local, { family: 'IPv6', address: '::1', port: u1.address().port });
      await closeDgram(u1);
      await closeDgram(u2);
    });

    it('an unbound IPv6 TCP socket (made by python3) is ERR_FDPASS_UNBOUND', async () => {
      await withFds(await socketsFromPython(['tcp6', 'udp6']), async ([tcp, udp]) => {
        assert.equal(sock(inspect(tcp!)).domain, 'inet6');
        assert.deepEqual(sock(inspect(tcp!)).local, { family: 'IPv6', address: '::', port: 0 });
        await expectFdpassError(toServer(tcp!), 'ERR_FDPASS_UNBOUND', undefined, 'toServer(tcp6)');
        await expectFdpassError(toDgram(udp!), 'ERR_FDPASS_UNBOUND', undefined, 'toDgram(udp6)');
        assertOpen(tcp!, 'socket', 'tcp6');
        assertOpen(udp!, 'socket', 'udp6');
      });
    });
  });
} else {
  describe('IPv6 (::1)', () => {
    it('is not tested: this machine has no IPv6 loopback (::1 missing from os.networkInterfaces())', function () {
      this.skip();
    });
  });
}
