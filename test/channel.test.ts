// Channel behaviour within one process, over socket pairs of every kind.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { socketPair, inspect, closeFd, MAX_FDS_PER_MESSAGE, type Message } from 'fdpass';
import { tmpPath } from './helpers/tmp';
import { fifoFds } from './helpers/fds';
import { closePair } from './helpers/sockets';

describe('Channel over a socket pair', () => {
  for (const type of ['seqpacket', 'stream', 'dgram'] as const) {
    it(`${type}: sends data with a descriptor; the receiver gets a working CLOEXEC copy`, async () => {
      const [a, b] = socketPair({ type });
      const file = tmpPath('file.txt');
      fs.writeFileSync(file, 'hello from a file');
      const fd = fs.openSync(file, 'r');
      await a.send({ data: 'payload', fds: [fd] });
      fs.closeSync(fd); // the sender's copy is its own
      const m = await b.receive();
      assert.equal(m.data.toString(), 'payload');
      assert.equal(m.fds.length, 1);
      const info = inspect(m.fds[0]!);
      assert.equal(info.kind, 'file');
      assert.equal(info.cloexec, true);
      assert.equal(fs.readFileSync(m.fds[0]!, 'utf8'), 'hello from a file');
      closeFd(m.fds[0]!);
      await closePair(a, b);
    });
  }

  it('an fd-only message arrives (seqpacket: empty data; stream: one padding byte)', async () => {
    for (const type of ['seqpacket', 'stream', 'dgram'] as const) {
      const [a, b] = socketPair({ type });
      await a.send({ fds: [0] });
      const m = await b.receive();
      assert.equal(m.fds.length, 1, type);
      assert.equal(m.data.length, type === 'stream' ? 1 : 0, type);
      closeFd(m.fds[0]!);
      await closePair(a, b);
    }
  });

  // 254 (a RangeError before any syscall) is errors-messages.test.ts's, for every way to send.
  it('253 descriptors in one message arrive in order', async () => {
    const [a, b] = socketPair();
    const fds: number[] = [];
    for (let i = 0; i < MAX_FDS_PER_MESSAGE; i++) {
      const p = tmpPath(`f${i}`);
      fs.writeFileSync(p, String(i));
      fds.push(fs.openSync(p, 'r'));
    }
    await a.send({ data: 'many', fds });
    for (const fd of fds) fs.closeSync(fd);
    const m = await b.receive();
    assert.equal(m.fds.length, 253);
    m.fds.forEach((fd, i) => {
      assert.equal(fs.readFileSync(fd, 'utf8'), String(i));
      closeFd(fd);
    });
    await closePair(a, b);
  });

  it('a message that waits for EAGAIN holds duplicates: the caller may close its fds at once', async () => {
    const [a, b] = socketPair();
    // Fill the socket buffer without reading so that later sends queue in fdpass.
    const big = Buffer.alloc(32 * 1024, 1);
    const sends: Promise<void>[] = [];
    const [r, w] = fifoFds();
    for (let i = 0; i < 64; i++) sends.push(a.send({ data: big, fds: [r, w] }));
    const queued = sends.length;
    fs.closeSync(r);
    fs.closeSync(w);
    let received = 0;
    for (; received < queued; received++) {
      const m = await b.receive();
      assert.equal(m.data.length, big.length);
      assert.equal(m.fds.length, 2);
      assert.equal(inspect(m.fds[0]!).kind, 'pipe');
      for (const fd of m.fds) closeFd(fd);
    }
    await Promise.all(sends);
    assert.equal(received, 64);
    await closePair(a, b);
  });

  it('close() waits for queued messages to go out, then closes; the peer reads them all, then EOF', async () => {
    const [a, b] = socketPair();
    const big = Buffer.alloc(32 * 1024, 2);
    const sends = Array.from({ length: 40 }, (_, i) => a.send({ data: Buffer.concat([Buffer.from(`${i}:`), big]), fds: [0] }));
    let closed = false;
    const closing = a.close().then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, 'close() waits while messages are queued');
    let n = 0;
    for await (const m of b) {
      assert.ok(m.data.toString().startsWith(`${n}:`));
      assert.equal(m.fds.length, 1);
      closeFd(m.fds[0]!);
      n++;
    }
    assert.equal(n, 40);
    await Promise.all(sends);
    await closing;
    assert.equal(a.closed, true);
    await b.close();
  });

  it("delivers 'message' events and for-await iteration; flow control stops reading without consumers", async () => {
    const [a, b] = socketPair();
    for (let i = 0; i < 5; i++) await a.send({ data: String(i) });
    const seen: string[] = [];
    await new Promise<void>((resolve) => {
      const onMessage = (m: Message): void => {
        seen.push(m.data.toString());
        if (seen.length === 3) {
          b.off('message', onMessage);
          resolve();
        }
      };
      b.on('message', onMessage);
    });
    assert.deepEqual(seen, ['0', '1', '2']);
    const rest: string[] = [];
    await a.close();
    for await (const m of b) rest.push(m.data.toString());
    assert.deepEqual(rest, ['3', '4']);
    await b.close();
  });

  it('stream chunks keep fds with the write that carried them', async () => {
    const [a, b] = socketPair({ type: 'stream' });
    await a.send({ data: 'one', fds: [0] });
    await a.send({ data: 'two', fds: [1, 2] });
    const m1 = await b.receive();
    const m2 = await b.receive();
    assert.equal(m1.data.toString(), 'one');
    assert.equal(m1.fds.length, 1);
    assert.equal(m2.data.toString(), 'two');
    assert.equal(m2.fds.length, 2);
    for (const fd of [...m1.fds, ...m2.fds]) closeFd(fd);
    await closePair(a, b);
  });

  it('peer credentials name this process', async () => {
    const [a, b] = socketPair();
    assert.deepEqual(a.peer, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    await closePair(a, b);
  });

  it('closing with unread messages closes their descriptors', async () => {
    const [a, b] = socketPair();
    const before = fs.readdirSync('/proc/self/fd').length;
    await a.send({ data: 'x', fds: [0, 1, 2] });
    await a.send({ data: 'y', fds: [0] });
    const first = b.receive(); // reads the batch; the second message waits in the inbox
    const m = await first;
    for (const fd of m.fds) closeFd(fd);
    await b.close();
    await a.close();
    assert.equal(fs.readdirSync('/proc/self/fd').length, before - 2);
  });

  it('after the peer closes, receive() and send() reject with ERR_FDPASS_CLOSED', async () => {
    const [a, b] = socketPair();
    await a.close();
    await assert.rejects(b.receive(), { code: 'ERR_FDPASS_CLOSED' });
    await assert.rejects(b.send({ data: 'x' }), { code: 'ERR_FDPASS_CLOSED' });
    await b.close();
  });

  it('receive() honours timeout and AbortSignal without consuming a message', async () => {
    const [a, b] = socketPair();
    await assert.rejects(b.receive({ timeout: 20 }), { code: 'ERR_FDPASS_TIMEOUT' });
    const ac = new AbortController();
    const p = b.receive({ signal: ac.signal });
    ac.abort();
    await assert.rejects(p, { code: 'ERR_FDPASS_ABORTED' });
    await a.send({ data: 'still here' });
    assert.equal((await b.receive()).data.toString(), 'still here');
    await closePair(a, b);
  });
});
