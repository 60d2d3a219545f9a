// Channels on their failure paths: a throwing handler, a half-built poller, a socket of the wrong
// kind. Each test checks the descriptors of every process involved before and after.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { closeFd, dupFd, inspect, listen, openChannel, socketPair, type Channel } from 'fdpass';
import { runFixture, spawnJson } from './helpers/children';
import { assertFdsBack, openFds, settle } from './helpers/fds';
import { leavesSocketFiles, tmpPath } from './helpers/tmp';

// The addon as lib/ loads it: the Poller constructor is driven directly to force each failure path.
// biome-ignore lint/suspicious/noExplicitAny: the raw binding, called with wrong arguments on purpose
const { binding } = require(path.join(__dirname, '..', '..', 'dist', 'native.js')) as { binding: any };

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

describe('Channel on failure paths: every descriptor keeps one owner', () => {
  describe('a throwing handler loses nothing of its batch', () => {
    // The throw reaches 'uncaughtException'; no accepted fd is left without an owner.
    it("a 'connection' handler that throws on the first of 10 connections: all 10 get a Channel", async () => {
      const child = runFixture('throwing-handlers', ['connection', tmpPath('throw.sock')]);
      const r = await child.expect<Targets & { connections: number; uncaught: string[]; clientsSawEof: number; held: number }>('done');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.equal(r.connections, 10, "every accepted socket reached a 'connection' handler");
      assert.deepEqual(r.uncaught, ['handler failed on the first connection']);
      assert.equal(r.held, r.countBefore + 1 + 2 * 10, 'listener + both ends of 10 connections while open');
      assert.equal(r.clientsSawEof, 10, "each client saw the server's close: none was left served by nobody");
      assertChildFdsBack(r, 'after closing every channel');
    });

    // One batch: 3 fd-carrying messages and an EOF read; the throw reaches 'uncaughtException'.
    it("a 'message' handler that throws on the first of a batch: the rest, 'end' and 'close' still come", async () => {
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
    // They throw ERR_FDPASS_WRONG_FD_KIND and stay the caller's; a bound datagram socket is a channel.
    it('openChannel refuses listening, unconnected and unbound sockets and leaves them open', async () => {
      leavesSocketFiles(/^bound-dgram\.sock$/, "a Python peer binds it and exits; only a binder removes a datagram socket's path");
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

  describe('the Poller constructor never closes the fd when it throws; its caller does', () => {
    const O_PATH = 0o10000000; // Linux; Node's fs.constants lacks it
    const noop = (): void => {};
    const make = (fd: number, overrides: Partial<Record<'readBuffer' | 'readInfo' | 'sendFds' | 'readTaken', unknown>> = {}): unknown =>
      new binding.ChannelPoller(
        fd,
        binding.constants.SOCK_SEQPACKET,
        1024,
        noop,
        noop,
        noop,
        'readBuffer' in overrides ? overrides.readBuffer : new Uint8Array(1024),
        'readInfo' in overrides ? overrides.readInfo : new Int32Array(binding.ChannelPoller.READ_INFO_LENGTH),
        'sendFds' in overrides ? overrides.sendFds : new Int32Array(253),
        'readTaken' in overrides ? overrides.readTaken : new Int32Array(1),
      );

    // Bad readBuffer/readInfo/sendFds/readTaken, an fd fcntl refuses (O_PATH), a regular file (uv_poll_init EPERM).
    it('a Poller constructor that throws leaves the fd open, for every way it can fail', async () => {
      const before = openFds();
      const [a, b] = socketPair();
      const sock = dupFd(a.fd);
      const bad: Array<[string, Record<string, unknown>, string]> = [
        ['readBuffer', { readBuffer: new Uint8Array(10) }, 'ERR_OUT_OF_RANGE'],
        ['readInfo', { readInfo: new Uint8Array(10) }, 'ERR_INVALID_ARG_TYPE'],
        ['sendFds', { sendFds: new Int32Array(3) }, 'ERR_OUT_OF_RANGE'],
        ['readTaken', { readTaken: undefined }, 'ERR_INVALID_ARG_TYPE'],
      ];
      for (const [what, overrides, code] of bad) {
        assert.throws(() => make(sock, overrides), { code }, what);
        assert.equal(inspect(sock).kind, 'socket', `after a bad ${what} the fd is still open`);
      }
      const file = tmpPath('regular.txt');
      fs.writeFileSync(file, 'x');
      const opath = fs.openSync(file, O_PATH);
      assert.throws(() => make(opath), { code: 'EBADF', syscall: 'fcntl' });
      fs.fstatSync(opath); // still open
      const regular = fs.openSync(file, 'r');
      assert.throws(() => make(regular), { code: 'EPERM', syscall: 'uv_poll_init' });
      fs.fstatSync(regular); // still open: the caller closes it, once
      fs.closeSync(regular);
      fs.closeSync(opath);
      closeFd(sock);
      await a.close();
      await b.close();
      await assertFdsBack(before, 'after the caller closed each fd once');
    });

    it('openChannel() on the fd of a reading channel throws EEXIST; that channel works on', async () => {
      const before = openFds();
      const [a, b] = socketPair();
      const pending = b.receive();
      await settle();
      assert.throws(() => openChannel(b.fd), { code: 'EEXIST', syscall: 'uv_poll_init' });
      await a.send({ data: 'still here' });
      assert.equal((await pending).data.toString(), 'still here');
      await a.close();
      await b.close();
      await assertFdsBack(before, 'after both ends closed');
    });
  });
});
