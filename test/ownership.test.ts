// Issue 9, "every descriptor has one owner on every path": a throwing handler, a half-built poller, a
// socket of the wrong kind, a datagram sender that `allow` refuses, a half-closed stream. Each test
// checks the descriptors of every process involved before and after.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeFd, dupFd, inspect, listen, openChannel, socketPair, type Channel } from 'fdpass';
import { runFixture, spawnJson } from './helpers/children';
import { openFds, newFds, settle } from './helpers/fds';
import { tmpPath } from './helpers/tmp';

/** Fails with the descriptors this process gained (or lost) since `before`. */
async function assertFdsBack(before: Map<number, string>, what: string): Promise<void> {
  await settle();
  const now = openFds();
  assert.deepEqual(newFds(before, now), [], `${what}: this process holds new descriptors`);
  assert.deepEqual(newFds(now, before), [], `${what}: descriptors of this process were closed`);
}

interface Targets {
  before: Record<string, string>;
  afterTargets: Record<string, string>;
  countBefore: number;
  after: number;
}

/** The child's descriptors are back where they were. */
function assertChildFdsBack(r: Targets, what: string): void {
  assert.deepEqual(r.afterTargets, r.before, `${what}: the child's descriptors differ from its baseline`);
  assert.equal(r.after, r.countBefore);
}

describe('ownership (issue 9)', () => {
  describe('a throwing handler loses nothing of its batch', () => {
    it("listen(): a 'connection' handler that throws on the first of 10 simultaneous connections: all 10 get a Channel, the throw reaches 'uncaughtException', no fd is left bare", async () => {
      const child = runFixture('throwing-handlers', ['connection', tmpPath('throw.sock')]);
      const r = await child.expect<Targets & { connections: number; uncaught: string[]; clientsSawEof: number; held: number }>('done');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.equal(r.connections, 10, "every accepted socket reached a 'connection' handler");
      assert.deepEqual(r.uncaught, ['handler failed on the first connection']);
      assert.equal(r.held, r.countBefore + 1 + 2 * 10, 'listener + both ends of 10 connections while open');
      assert.equal(r.clientsSawEof, 10, "each client saw the server's close: none was left served by nobody");
      assertChildFdsBack(r, 'after closing every channel');
    });

    it("a 'message' handler that throws on the first of 3 fd-carrying messages and an EOF read in one batch: 2 and 3 still arrive, then 'end' and 'close'; the throw reaches 'uncaughtException'", async () => {
      const child = runFixture('throwing-handlers', ['message']);
      const r = await child.expect<Targets & { events: string[]; uncaught: string[]; sawClose: boolean }>('done');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.deepEqual(r.events, ['message m0', 'message m1', 'message m2', 'end', 'close']);
      assert.deepEqual(r.uncaught, ['handler failed on the first message']);
      assert.equal(r.sawClose, true);
      assertChildFdsBack(r, 'after closing the fds of every message');
    });
  });

  describe('openChannel() takes only what can be a channel', () => {
    it('a listening socket, an unconnected seqpacket socket and an unbound datagram socket throw ERR_FDPASS_WRONG_FD_KIND and stay the caller\'s; a bound datagram socket is a channel', async () => {
      const before = openFds();
      const server = await listen(tmpPath('listening.sock'));
      // A copy of the listening socket that no poller watches (as an inherited one would be).
      const listening = dupFd(server.fd);
      assert.throws(() => openChannel(listening), { code: 'ERR_FDPASS_WRONG_FD_KIND', message: /listening/ });
      assert.equal(inspect(listening).socket?.listening, true, 'the caller still owns the listening socket');
      closeFd(listening);
      await server.close();

      // Python makes the sockets Node cannot: unconnected, unbound, bound-only.
      const got = await listen(tmpPath('from-python.sock'), { type: 'stream' });
      const bound = tmpPath('bound-dgram.sock');
      const script = [
        'import socket, sys',
        's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1])',
        'a = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)',
        'b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
        'c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.bind(sys.argv[2])',
        "socket.send_fds(s, [b'x'], [a.fileno(), b.fileno(), c.fileno()])",
        's.recv(1)',
      ].join('\n');
      const connection = once(got, 'connection') as Promise<[Channel]>;
      const py = spawnJson('python3', ['-c', script, got.path, bound]);
      const [ch] = await connection;
      const m = await ch.receive();
      const [unconnected, unbound, boundFd] = m.fds as [number, number, number];
      assert.throws(() => openChannel(unconnected), { code: 'ERR_FDPASS_WRONG_FD_KIND', message: /not connected/ });
      assert.throws(() => openChannel(unbound), { code: 'ERR_FDPASS_WRONG_FD_KIND', message: /neither connected nor bound/ });
      assert.equal(inspect(unconnected).kind, 'socket', 'the caller still owns the unconnected socket');
      assert.equal(inspect(unbound).kind, 'socket', 'the caller still owns the unbound socket');
      closeFd(unconnected);
      closeFd(unbound);
      const receiver = openChannel(boundFd);
      assert.equal(receiver.type, 'dgram');
      await receiver.close();
      await ch.close();
      await got.close();
      assert.deepEqual(await py.exited, { code: 0, signal: null }, py.stderr());
      await assertFdsBack(before, 'after every refused socket was closed by its owner');
    });
  });

  describe('a closed channel refuses every send', () => {
    it("stream: write({}) throws and send({}) rejects with ERR_FDPASS_CLOSED once closed, like any other message", async () => {
      const before = openFds();
      const [a, b] = socketPair({ type: 'stream' });
      assert.equal(a.write({}), true, 'an empty stream write is a no-op while open');
      await a.send({});
      await a.close();
      assert.throws(() => a.write({}), { code: 'ERR_FDPASS_CLOSED' });
      await assert.rejects(a.send({}), { code: 'ERR_FDPASS_CLOSED' });
      await b.close();
      await assertFdsBack(before, 'after both ends closed');
    });
  });
});
