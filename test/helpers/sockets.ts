// Node sockets for tests, each closed by what opens it so the root hooks' leak check holds: TCP/UDP
// listeners and pairs, one-line greetings, datagrams, HTTP, FIFOs, and the sockets Node cannot make
// (unbound, bound-not-listening) made by a python3 child and sent over.
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import * as net from 'node:net';
import { closeFd, inspect, recvFds, type Channel, type ChannelServer, type FdInfo, type SocketInfo } from 'fdpass';
import { spawnJson } from './children';
import { tmpPath } from './tmp';

export function listenTcp(host = '127.0.0.1', server: net.Server = net.createServer()): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

export function portOf(x: net.Server | net.Socket | dgram.Socket): number {
  if (x instanceof net.Socket) return x.localPort!;
  return (x.address() as net.AddressInfo).port;
}

/** Closes a server; an http.Server also drops its idle keep-alive connections first. */
export function closeServer(server: net.Server): Promise<void> {
  if (server instanceof http.Server) server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

export function destroySocket(socket: net.Socket): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.destroy();
  });
}

export function closeDgram(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

export function bindUdp(type: 'udp4' | 'udp6' = 'udp4', host = type === 'udp4' ? '127.0.0.1' : '::1'): Promise<dgram.Socket> {
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
export interface TcpPair {
  server: net.Server;
  client: net.Socket;
  accepted: net.Socket;
  close(): Promise<void>;
}

export async function tcpPair(host = '127.0.0.1'): Promise<TcpPair> {
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
export function readBytes(socket: net.Socket, n: number): Promise<string> {
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

export function nextDatagram(socket: dgram.Socket, timeoutMs = 5000): Promise<{ msg: string; port: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no datagram arrived')), timeoutMs);
    socket.once('message', (msg, rinfo) => {
      clearTimeout(timer);
      resolve({ msg: msg.toString(), port: rinfo.port });
    });
  });
}

export async function sendDatagram(text: string, port: number, host = '127.0.0.1'): Promise<void> {
  const sender = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => sender.send(text, port, host, (err) => (err ? reject(err) : resolve())));
  await closeDgram(sender);
}

/** A round trip: connect, read all the server says, until it closes. */
export function hello(c: net.Socket): Promise<string> {
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

export function tcpHello(port: number, host = '127.0.0.1'): Promise<string> {
  return hello(net.connect(port, host));
}

export function unixHello(p: string): Promise<string> {
  return hello(net.connect(p));
}

/** A server that greets each connection with `name` and closes it. */
export function greeter(name: string): net.Server {
  return net.createServer((s) => s.end(name));
}

/** A descriptor is still open (and still the same kind of thing). */
export function assertOpen(fd: number, kind: FdInfo['kind'], what: string): void {
  let info: FdInfo;
  try {
    info = inspect(fd);
  } catch (err) {
    assert.fail(`${what}: fd ${fd} was closed by the call that refused it (${(err as Error).message})`);
  }
  assert.equal(info.kind, kind, what);
}

/**
 * Sockets Node cannot make: a python3 child creates them (unbound TCP/UDP/Unix, a bound TCP socket that
 * does not listen) and sends them over a Unix stream socket with socket.send_fds. Returns the fds (ours).
 */
export const PY_SENDER = `
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

export async function socketsFromPython(kinds: string[]): Promise<number[]> {
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
export async function withFds(fds: number[], fn: (fds: number[]) => Promise<void>): Promise<void> {
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

export function sock(info: FdInfo): SocketInfo {
  assert.equal(info.kind, 'socket');
  assert.ok(info.socket, 'a socket has socket info');
  return info.socket;
}

/** Closes both ends of a channel pair. */
export async function closePair(a: Channel, b: Channel): Promise<void> {
  await a.close();
  await b.close();
}

/** The next channel a ChannelServer accepts. */
export function nextConnection(server: ChannelServer): Promise<Channel> {
  return new Promise((resolve) => server.once('connection', resolve));
}

/** Sends one UDP datagram to 127.0.0.1:port and resolves with the answer. */
export async function udpAsk(port: number, what: string): Promise<string> {
  const s = dgram.createSocket('udp4');
  try {
    return await new Promise<string>((resolve, reject) => {
      s.once('message', (m) => resolve(m.toString()));
      s.once('error', reject);
      s.send(what, port, '127.0.0.1');
    });
  } finally {
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
