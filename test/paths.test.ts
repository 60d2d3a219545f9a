// sendFd/sendFds and recvFd on a socket path: one deadline bounds connect, send and close, and what
// the sender opened is closed; the one-shot recvFd(path) takes one message and closes every other
// connection at once. Each test checks the descriptor maps of every process involved.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { FdpassError, bindDgram, closeFd, connect, inspect, listen, recvFd, sendFd, type Channel } from 'fdpass';
import { runFixture } from './helpers/children';
import { failure } from './helpers/errors';
import { newFds, openFds, settle } from './helpers/fds';
import { tmpPath } from './helpers/tmp';
import { within } from './helpers/wait';

describe('sendFd / recvFd on a socket path', () => {
  describe('sendFd to a path: one deadline for connect, send and close', () => {
    async function fullDgramReceiver(p: string): Promise<Channel> {
      const receiver = await bindDgram(p); // never reads: no 'message' listener, no receive()
      // Until the receiver's queue is full: one sender may first run out of its own send buffer
      // (net.unix.max_dgram_qlen is 10 by default, 512 where systemd's sysctl.d ran), so add senders
      // until a new one cannot send a single datagram.
      const fillers: Channel[] = [];
      for (let sent = -1; sent !== 0 && fillers.length < 64;) {
        const filler = await connect(p, { type: 'dgram' });
        fillers.push(filler);
        for (sent = 0; filler.write({ data: 'fill' }); sent++);
      }
      for (const f of fillers) f.destroy(); // each one's queued message is dropped
      return receiver;
    }

    for (const type of ['dgram', 'stream'] as const) {
      for (const how of ['timeout', 'signal'] as const) {
        // It rejects with ERR_FDPASS_TIMEOUT or ERR_FDPASS_ABORTED; the caller's fd stays open.
        it(`${type}: ${how} stops a send to a receiver that never reads; the sender closes what it opened`, async () => {
          const p = tmpPath(`${type}.sock`);
          let server: Awaited<ReturnType<typeof listen>> | undefined;
          let receiver: Channel | undefined;
          const accepted: Channel[] = [];
          if (type === 'dgram') {
            receiver = await fullDgramReceiver(p);
          } else {
            server = await listen(p, { type: 'stream' });
            server.on('connection', (c: Channel) => accepted.push(c)); // accepted, never read
          }
          fs.writeFileSync(tmpPath('file'), 'payload');
          const file = fs.openSync(tmpPath('file'), 'r');
          await settle();
          const before = openFds();
          // Stream: bigger than both socket buffers, so most of it waits in the sender's queue.
          const data = type === 'stream' ? Buffer.alloc(4 * 1024 * 1024, 1) : Buffer.from('one datagram');
          const ac = new AbortController();
          const sending = sendFd(p, file, data, how === 'timeout' ? { type, timeout: 300 } : { type, signal: ac.signal });
          if (how === 'signal') setTimeout(() => ac.abort(), 300);
          const r = await within(sending, 5000);
          assert.notEqual(r, 'pending', 'sendFd was still pending 5 s later');
          assert.ok(r !== 'pending' && 'error' in r, 'sendFd resolved');
          assert.ok(r.error instanceof FdpassError, String(r.error));
          assert.equal(r.error.code, how === 'timeout' ? 'ERR_FDPASS_TIMEOUT' : 'ERR_FDPASS_ABORTED');
          assert.equal(r.error.message, how === 'timeout' ? `sendFds to '${p}' timed out after 300 ms` : `sendFds to '${p}' was aborted`);
          await settle();
          // The sender holds nothing more than before: no socket, no duplicate of `file`. (The stream
          // receiver's accepted connection is the receiver's, in the same process here.)
          assert.equal(accepted.length, type === 'stream' ? 1 : 0);
          const expected = new Map(before);
          for (const c of accepted) expected.set(c.fd, fs.readlinkSync(`/proc/self/fd/${c.fd}`));
          assert.deepEqual(openFds(), expected);
          assert.equal(inspect(file).kind, 'file', "the caller's fd is still open");
          fs.closeSync(file);
          for (const c of accepted) await c.close();
          await server?.close();
          await receiver?.close();
        });
      }
    }

    it('an AbortSignal already aborted rejects before connecting: the receiver sees no connection', async () => {
      const p = tmpPath('seq.sock');
      const server = await listen(p);
      let connections = 0;
      server.on('connection', (c: Channel) => {
        connections++;
        c.destroy();
      });
      const before = openFds();
      const err = await failure(sendFd(p, 0, 'x', { signal: AbortSignal.abort() }));
      assert.equal(err.code, 'ERR_FDPASS_ABORTED');
      await settle();
      assert.deepEqual(openFds(), before);
      assert.equal(connections, 0);
      await server.close();
    });
  });

  describe('recvFd(path) is one-shot: one message, every other connection closed at once', () => {
    /** Holds this thread (and its event loop) until `cond()`: connections then queue up unaccepted. */
    function holdLoopUntil(cond: () => boolean, ms: number): void {
      const cell = new Int32Array(new SharedArrayBuffer(4));
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
        Atomics.wait(cell, 0, 0, 5);
      }
    }

    async function round(i: number, sameBatch: boolean): Promise<void> {
      const p = tmpPath(`race-${i}.sock`);
      const senders = [0, 1].map((k) => {
        const file = tmpPath(`file-${i}-${k}`);
        fs.writeFileSync(file, `content of sender ${k}`);
        return runFixture('race-sender', [p, file, `sender ${k}`, tmpPath(`done-${i}-${k}`)]);
      });
      const ready = await Promise.all(senders.map((s) => s.expect<{ before: number }>('ready')));
      const before = openFds();
      const received = recvFd(p, { timeout: 10000 }); // listens before its first await
      for (const s of senders) s.send({ cmd: 'go' });
      // Both senders connect and send while this loop is held, so both connections are accepted
      // in one batch; without holding, they race the one-shot server as they come.
      if (sameBatch) holdLoopUntil(() => [0, 1].every((k) => fs.existsSync(tmpPath(`done-${i}-${k}`))), 10000);
      const { fd, data } = await received;
      await settle();
      // The receiver holds exactly the received fd: the listener and both connections are closed.
      assert.deepEqual(newFds(before, openFds()), [`${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`], `round ${i}`);
      assert.deepEqual(
        [...before.keys()].filter((n) => !fs.existsSync(`/proc/self/fd/${n}`)),
        [],
        `round ${i}: nothing of ours was closed`,
      );
      const k = Number(/^sender ([01])$/.exec(data.toString())?.[1]);
      assert.ok(k === 0 || k === 1, data.toString());
      assert.equal(fs.readFileSync(`/proc/self/fd/${fd}`, 'utf8'), `content of sender ${k}`, 'the fd came with its own message');
      closeFd(fd);
      const results = await Promise.all(
        senders.map((s) => s.expect<{ sent: boolean; code?: string; before: number; after: number }>('done')),
      );
      assert.equal(results[k]!.sent, true, `round ${i}: the sender whose message arrived resolved`);
      const other = results[1 - k]!;
      if (sameBatch) {
        // Its message was already in the socket when the receiver refused the connection.
        assert.equal(other.sent, true, `round ${i}: ${JSON.stringify(other)}`);
      } else if (!other.sent) {
        assert.ok(['ENOENT', 'ECONNREFUSED', 'EPIPE', 'ECONNRESET', 'ERR_FDPASS_CLOSED'].includes(other.code ?? ''), JSON.stringify(other));
      }
      for (const [n, r] of results.entries()) {
        assert.equal(r.after, r.before, `sender ${n}: its descriptors are back to what it held before sending`);
        assert.equal(r.before, ready[n]!.before);
      }
      for (const s of senders) {
        s.proc.stdin?.end(); // its stdin reader is what keeps it alive
        assert.deepEqual(await s.exited, { code: 0, signal: null });
      }
    }

    // The senders run in two processes.
    it('two senders accepted in one batch (4 rounds): one message, the other connection closed at once', async function () {
      this.timeout(60000);
      for (let i = 0; i < 4; i++) await round(i, true);
    });

    it('two senders racing freely (4 rounds): one message; the other is refused or fails, never left open', async function () {
      this.timeout(60000);
      for (let i = 0; i < 4; i++) await round(i, false);
    });
  });
});
