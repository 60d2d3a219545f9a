// Adoption within one process: toServer/toSocket/toDgram/adopt turn a descriptor into a working Node
// object; fdOf goes back. (What a descriptor is: inspect.test.ts; refusals: adopt-traps.test.ts.)
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as http from 'node:http';
import {
  adopt,
  type Channel,
  type ChannelServer,
  closeFd,
  dupFd,
  fdOf,
  inspect,
  listen,
  socketPair,
  toDgram,
  toServer,
  toSocket,
} from 'fdpass';
import {
  bindUdp,
  closeDgram,
  closeServer,
  destroySocket,
  greeter,
  listenTcp,
  nextDatagram,
  portOf,
  readBytes,
  sendDatagram,
  sock,
  tcpHello,
  tcpPair,
  unixHello,
} from './helpers/sockets';
import { get } from './helpers/http';
import { tmpPath } from './helpers/tmp';
import { spawnJson } from './helpers/children';
import { waitFor, within } from './helpers/wait';

describe('toServer / toSocket / toDgram / adopt', () => {
  it('toServer on a dup of a listener serves HTTP after the original closed', async () => {
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
    assert.equal(await get(port, '/hello'), 'adopted GET /hello');
    assert.equal(await get(port, '/again'), 'adopted GET /again');
    await closeServer(adopted);
    assert.throws(() => inspect(fd), { code: 'EBADF' }, 'closing the server closed the fd');
  });

  it('toServer without a server resolves a new net.Server that shares the accept queue', async () => {
    const original = await listenTcp('127.0.0.1', greeter('original'));
    const adopted = await toServer(dupFd(fdOf(original)));
    assert.ok(adopted instanceof net.Server);
    assert.ok(!(adopted instanceof http.Server));
    assert.equal(portOf(adopted), portOf(original));
    // One socket, not a second one bound to the same port.
    assert.equal(fs.readlinkSync(`/proc/self/fd/${fdOf(adopted)}`), fs.readlinkSync(`/proc/self/fd/${fdOf(original)}`));
    const accepted = new Set<number>();
    adopted.on('connection', (s) => {
      accepted.add(s.remotePort!);
      s.on('error', () => {}); // the early clients below are gone: their answer may meet a reset
      s.end('adopted');
    });
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(await tcpHello(portOf(original)));
    for (const a of answers) assert.ok(a === 'original' || a === 'adopted', a);
    // 8 connections the kernel queues while this process accepts nothing (a blocking child connects
    // them), then the original closes before it could accept one: the adopted server accepts them
    // all, from the one queue.
    const client = `const net = require('node:net'); let n = 0; const ports = [];
      for (let i = 0; i < 8; i++) { const s = net.connect(${portOf(original)}, '127.0.0.1', () => { ports.push(s.localPort); if (++n === 8) { console.log(JSON.stringify(ports)); process.exit(0); } }); }`;
    const queued = JSON.parse(spawnSync(process.execPath, ['-e', client], { encoding: 'utf8', timeout: 10_000 }).stdout) as number[];
    accepted.clear();
    const closed = closeServer(original); // closes its descriptor now, synchronously
    await waitFor('the adopted server to accept the queued connections', () => queued.every((p) => accepted.has(p)));
    await closed;
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
    await new Promise<void>((resolve, reject) =>
      u.send('answer', peer.address().port, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
    );
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
    fs.unlinkSync(kept); // a Server adopted from an fd does not know its path

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
    fs.unlinkSync(kept); // a Server adopted from an fd does not know its path
  });

  // Node's bind({ fd: 0 }) would bind a new socket on a random port.
  it('toDgram(0) adopts the UDP socket on fd 0', async () => {
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
