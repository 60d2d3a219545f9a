// IPv6 (::1): inspect, adoption and SO_REUSEPORT over the IPv6 loopback, and an unbound IPv6 socket
// refused. Skipped with its reason on a machine without ::1 (helpers/requires.ts: in CI it fails).
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import { adopt, bindReusePort, dupFd, fdOf, inspect, listenReusePort, toDgram, toServer, toSocket } from 'fdpass';
import { expectFdpassError } from './helpers/errors';
import {
  assertOpen,
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
  socketsFromPython,
  tcpHello,
  tcpPair,
  withFds,
} from './helpers/sockets';
import { get } from './helpers/http';
import { ipv6Loopback, requires } from './helpers/requires';

describe('IPv6 (::1)', () => {
  before(function () {
    requires(this, ipv6Loopback());
  });

  it('inspect reports inet6 and IPv6 addresses; toServer on a dup serves HTTP over ::1', async () => {
    const original = await listenTcp('::1');
    const info = sock(inspect(fdOf(original)));
    assert.equal(info.domain, 'inet6');
    assert.deepEqual(info.local, { family: 'IPv6', address: '::1', port: portOf(original) });
    const fd = dupFd(fdOf(original));
    await closeServer(original);
    const server = await toServer(
      fd,
      http.createServer((_req, res) => {
        res.setHeader('connection', 'close');
        res.end('v6');
      }),
    );
    assert.equal(await get(portOf(server), '/', '::1'), 'v6');
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
