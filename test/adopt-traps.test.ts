// The traps of adoption: descriptors of the wrong kind (unbound, bound but not listening, a FIFO, a
// Unix socket where TCP is wanted...) are refused with ERR_FDPASS_* and left open for the caller.
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as http from 'node:http';
import { adopt, closeFd, dupFd, type FdInfo, fdOf, inspect, listen, socketPair, toDgram, toServer, toSocket } from 'fdpass';
import { expectFdpassError } from './helpers/errors';
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
import { fifoFds } from './helpers/fds';
import { tmpPath } from './helpers/tmp';

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

  it('toSocket/toServer on a UDP socket, toDgram on TCP, toSocket on a listener, toServer on a connected socket: WRONG_FD_KIND', async () => {
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
