// Bad messages and bind requests: oversized payloads, too many fds, sends on closed or half-closed
// channels, fds that cannot be sent (SO_REUSEPORT binds that must fail: reuseport.test.ts). Each a clear error with
// code/errno/syscall (or an ERR_FDPASS_* code), and the channel or process lives on.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as util from 'node:util';
import { MAX_FDS_PER_MESSAGE, recvFd, recvFds, sendFd, sendFds, socketPair } from 'fdpass';
import { assertArgError, assertFdpassError, assertSystemError, failure } from './helpers/errors';
import * as path from 'node:path';
import { fixturesDir, spawnJson } from './helpers/children';
import { newFds, openFds, settle } from './helpers/fds';
import { NOBODY } from './helpers/foreign';
import { requires, root } from './helpers/requires';
import { tmpPath } from './helpers/tmp';

describe('errors: messages and sends', () => {
  describe('messages', () => {
    it('254 descriptors are a RangeError before any syscall, and no descriptor leaks', async () => {
      const [a, b] = socketPair();
      const fds = new Array<number>(MAX_FDS_PER_MESSAGE + 1).fill(0);
      assert.equal(fds.length, 254);
      const p = tmpPath('nobody-here.sock');
      const before = openFds();
      const calls: Array<[string, () => unknown, RegExp]> = [
        [
          'channel.send',
          () => a.send({ data: 'x', fds }),
          /"message\.fds\.length" is out of range\. It must be <= 253 \(SCM_MAX_FD\)\. Received 254/,
        ],
        ['sendFds(channel)', () => sendFds(a, fds, 'x'), /"fds\.length" is out of range\. It must be <= 253 \(SCM_MAX_FD\)\. Received 254/],
        // The path form checks before it connects: no one listens at p, yet the answer is the RangeError.
        ['sendFds(path)', () => sendFds(p, fds, 'x'), /"fds\.length".*Received 254/],
        ['channel.send (stream)', () => a.send({ fds: new Array<number>(1000).fill(1) }), /Received 1000/],
      ];
      for (const [what, call, message] of calls) {
        const err = await failure(call, what);
        assertArgError(err, RangeError, 'ERR_OUT_OF_RANGE', message, what);
      }
      await settle();
      assert.deepEqual(newFds(before, openFds()), [], 'no descriptor leaked');
      assert.equal(openFds().size, before.size);
      // Nothing was sent.
      await assert.rejects(b.receive({ timeout: 50 }), { code: 'ERR_FDPASS_TIMEOUT' });
      await a.close();
      await b.close();
    });

    // It would read as end-of-file.
    it('a seqpacket message with neither data nor fds is ERR_INVALID_ARG_VALUE', async () => {
      const [a, b] = socketPair({ type: 'seqpacket' });
      for (const msg of [{}, { data: '' }, { data: Buffer.alloc(0), fds: [] }, { data: null }, { data: new Uint8Array(0) }]) {
        const err = await failure(() => a.send(msg), util.inspect(msg));
        assertArgError(err, TypeError, 'ERR_INVALID_ARG_VALUE', /^The argument 'message' must carry data or fds on a seqpacket channel\./);
      }
      const err = await failure(() => sendFds(a, []));
      assertArgError(err, TypeError, 'ERR_INVALID_ARG_VALUE', /must carry data or fds on a seqpacket channel/);
      // The channel was not closed by the refusal, and the peer saw no end-of-file.
      await a.send({ data: 'after' });
      assert.equal((await b.receive()).data.toString(), 'after');
      assert.equal(b.closed, false);
      await a.close();
      await b.close();
    });

    it('recvFd on a message without a descriptor is ERR_FDPASS_NO_FD', async () => {
      const [a, b] = socketPair();
      await a.send({ data: 'no fd here' });
      const err = await failure(() => recvFd(b));
      assertFdpassError(err, 'ERR_FDPASS_NO_FD', /carried no descriptor/);
      // The path form: a sender connects and sends data only.
      const p = tmpPath('nofd.sock');
      const received = recvFd(p, { timeout: 10000 });
      await sendFds(p, [], 'data only');
      assertFdpassError(await failure(() => received), 'ERR_FDPASS_NO_FD');
      assert.ok(!fs.existsSync(p), 'the path form removes its socket');
      await a.close();
      await b.close();
    });

    it('recvFd on a message with 2 descriptors is ERR_FDPASS_TOO_MANY_FDS and closes both', async () => {
      const [a, b] = socketPair();
      const f1 = fs.openSync('/dev/null', 'r');
      const f2 = fs.openSync('/dev/zero', 'r');
      await a.send({ data: 'two', fds: [f1, f2] });
      fs.closeSync(f1);
      fs.closeSync(f2);
      const before = openFds();
      const err = await failure(() => recvFd(b));
      assertFdpassError(err, 'ERR_FDPASS_TOO_MANY_FDS', /carried 2 descriptors, expected 1 \(use recvFds\)/);
      assert.deepEqual(newFds(before, openFds()), [], 'both received descriptors were closed');
      assert.equal(openFds().size, before.size);

      // The path form as well.
      const p = tmpPath('twofds.sock');
      const g1 = fs.openSync('/dev/null', 'r');
      const g2 = fs.openSync('/dev/zero', 'r');
      const before2 = openFds();
      const received = recvFd(p, { timeout: 10000 });
      await sendFds(p, [g1, g2], 'two');
      assertFdpassError(await failure(() => received), 'ERR_FDPASS_TOO_MANY_FDS');
      await settle();
      assert.deepEqual(newFds(before2, openFds()), [], 'path form: both closed, and the server and channel too');
      fs.closeSync(g1);
      fs.closeSync(g2);
      await a.close();
      await b.close();
    });

    it('sends over a closed channel are ERR_FDPASS_CLOSED; over one whose peer left, EPIPE', async () => {
      const [a, b] = socketPair();
      await a.close();
      assertFdpassError(await failure(() => sendFd(a, 0, 'x')), 'ERR_FDPASS_CLOSED', /closed/);
      assertFdpassError(await failure(() => sendFd(a, 0)), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => sendFds(a, [0, 1], 'x')), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => a.send({ data: 'x' })), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => recvFd(a)), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => recvFds(a)), 'ERR_FDPASS_CLOSED');
      assert.equal(a.fd, -1);
      await b.close();

      const [c, d] = socketPair();
      c.destroy();
      assertFdpassError(await failure(() => sendFd(c, 0, 'x')), 'ERR_FDPASS_CLOSED');
      await d.close();

      // The peer closed and this side has not read the end-of-file yet: sendmsg reports EPIPE.
      const [e, f] = socketPair();
      await f.close();
      assertSystemError(await failure(() => sendFd(e, 0, 'x')), 'EPIPE', 'sendmsg');
      // Once the end-of-file is seen, fdpass's own ERR_FDPASS_CLOSED.
      assertFdpassError(await failure(() => e.receive()), 'ERR_FDPASS_CLOSED', /peer closed/);
      assertFdpassError(await failure(() => sendFd(e, 0, 'x')), 'ERR_FDPASS_CLOSED');
      await e.close();
    });
  });

  describe('descriptors in flight past the limit', () => {
    it('ETOOMANYREFS (which libuv does not name) has its code and text, not UNKNOWN', async function () {
      requires(this, root('running a child as another user, without CAP_SYS_RESOURCE'));
      // prlimit lowers the child's limit; as nobody, its descriptors in flight count against it.
      const fixture = path.join(fixturesDir, 'inflight-limit.js');
      const child = spawnJson('prlimit', ['--nofile=64', process.execPath, fixture], { uid: NOBODY, gid: NOBODY });
      const r = await child.expect<{ code: string; errno: number; syscall: string; message: string; sent: number }>('refused');
      assert.equal((await child.exited).code, 0, child.stderr());
      assert.deepEqual([r.code, r.errno, r.syscall], ['ETOOMANYREFS', -109, 'sendmsg']);
      assert.match(r.message, /^sendmsg ETOOMANYREFS: too many references: descriptors in flight beyond RLIMIT_NOFILE$/);
      assert.ok(r.sent > 0 && r.sent < 100_000, `refused after ${r.sent} messages`);
    });
  });
});
