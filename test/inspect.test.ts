// inspect(): what a descriptor is (file, directory, character device, FIFO, socket) and, for sockets,
// domain, type, listening state and addresses.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fdOf, inspect, listen, socketPair } from 'fdpass';
import { bindUdp, closeDgram, closeServer, listenTcp, portOf, sock, tcpPair } from './helpers/sockets';
import { fifoFds } from './helpers/fds';
import { tmpPath } from './helpers/tmp';

/** FD_CLOEXEC as the kernel reports it: O_CLOEXEC (02000000) in /proc/self/fdinfo's octal flags. */
function cloexecOf(fd: number): boolean {
  const flags = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))![1]!;
  return (Number.parseInt(flags, 8) & 0o2000000) !== 0;
}

// ---------------------------------------------------------------------------------------------------

describe('inspect', () => {
  it('a regular file, a directory and /dev/null: kind, flags, no socket info', () => {
    const p = tmpPath('file.txt');
    fs.writeFileSync(p, 'x');
    const fd = fs.openSync(p, 'r');
    const info = inspect(fd);
    assert.deepEqual(info, { fd, kind: 'file', cloexec: cloexecOf(fd), nonblocking: false });
    assert.equal(info.cloexec, true, 'Node opens files O_CLOEXEC');
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
      assert.deepEqual(
        sock(info),
        { domain: 'unix', type, protocol: 0, listening: false, connected: true, connecting: false, local: unnamed, peer: unnamed },
        type,
      );
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
