// The fast-path API (Channel#write + 'drain', writeMany, closeFds) and the batched receive path behind it.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import { closeFd, closeFds, dupFd, inspect, socketPair, MAX_FDS_PER_MESSAGE, type Message } from 'fdpass';
import { tmpPath } from './helpers/tmp';
import { closePair } from './helpers/sockets';
import { fifoFds } from './helpers/fds';

function openFile(name: string, text: string): number {
  const p = tmpPath(name);
  fs.writeFileSync(p, text);
  return fs.openSync(p, 'r');
}

function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

describe('Channel#write and closeFds', () => {
  for (const type of ['seqpacket', 'stream'] as const) {
    it(`${type}: write() returns true when the kernel takes the message; data and fds arrive`, async () => {
      const [a, b] = socketPair({ type });
      const fd = openFile('w.txt', 'written');
      assert.equal(a.write({ data: 'hello', fds: [fd] }), true);
      assert.equal(a.writableNeedDrain, false);
      fs.closeSync(fd); // the caller's copy is its own
      const m = await b.receive();
      assert.equal(m.data.toString(), 'hello');
      assert.equal(m.fds.length, 1);
      assert.equal(fs.readFileSync(m.fds[0]!, 'utf8'), 'written');
      closeFds(m.fds);
      await closePair(a, b);
    });

    it(`${type}: write() returns false once the socket is full, queues in order, and 'drain' follows`, async () => {
      const [a, b] = socketPair({ type });
      const fd = openFile('q.txt', 'queued');
      const payload = Buffer.alloc(16 * 1024, 7);
      const message = (i: number): { data: Buffer; fds: number[] } => {
        const data = Buffer.from(payload);
        data.writeUInt32BE(i, 0);
        return { data, fds: [fd] };
      };
      // Write until the kernel's buffer is full (nothing reads yet): the last write was queued.
      let written = 0;
      while (a.write(message(written++))) assert.ok(written < 100_000, 'the socket never filled');
      for (let extra = 0; extra < 3; extra++) {
        assert.equal(a.write(message(written++)), false, 'a write behind a queue is queued too');
      }
      assert.equal(a.writableNeedDrain, true);
      fs.closeSync(fd); // queued messages hold duplicates
      const drained = once(a, 'drain');
      let next = 0;
      let pending = Buffer.alloc(0);
      while (next < written) {
        const m = await b.receive();
        // A stream may split a write across reads; the fd comes with its first bytes.
        pending = Buffer.concat([pending, m.data]);
        if (m.fds.length > 0) assert.equal(inspect(m.fds[0]!).kind, 'file');
        closeFds(m.fds);
        while (pending.length >= payload.length) {
          assert.equal(pending.readUInt32BE(0), next, 'messages arrive in write order');
          pending = pending.subarray(payload.length);
          next++;
        }
      }
      await drained;
      assert.equal(a.writableNeedDrain, false);
      assert.equal(a.write({ data: 'after drain' }), true);
      assert.equal((await b.receive()).data.toString(), 'after drain');
      await closePair(a, b);
    });
  }

  // Once closed, write() throws and send() rejects, an empty stream message too.
  it('write() throws argument errors synchronously, and ERR_FDPASS_CLOSED once closed', async () => {
    const [a, b] = socketPair();
    assert.throws(() => a.write({ data: 'x', fds: 'nope' as unknown as number[] }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(
      () => a.write({ data: 'x', fds: [-1] }),
      (err: Error & { code: string }) => {
        assert.ok(err instanceof RangeError);
        assert.equal(err.code, 'ERR_OUT_OF_RANGE');
        assert.match(err.message, /message\.fds\[0\]/);
        return true;
      },
    );
    assert.throws(() => a.write({ data: 'x', fds: new Array<number>(MAX_FDS_PER_MESSAGE + 1).fill(0) }), RangeError);
    assert.throws(() => a.write({}), { code: 'ERR_INVALID_ARG_VALUE' }); // empty seqpacket message
    assert.throws(() => a.write(null as unknown as { data: string }), { code: 'ERR_INVALID_ARG_TYPE' });
    await a.close();
    assert.throws(() => a.write({ data: 'late' }), { code: 'ERR_FDPASS_CLOSED' });
    await b.close();
    // An empty stream message is a no-op while open, yet refused once closed like any other.
    const [c, d] = socketPair({ type: 'stream' });
    assert.equal(c.write({}), true);
    await c.send({});
    await c.close();
    assert.throws(() => c.write({}), { code: 'ERR_FDPASS_CLOSED' });
    await assert.rejects(c.send({}), { code: 'ERR_FDPASS_CLOSED' });
    await d.close();
  });

  it("write()'s callback: null once the kernel took the message, the error when a queued one failed", async () => {
    const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    const [a, b] = socketPair();
    const calls: Array<[number, Error | null]> = [];
    const note = (i: number) => (err: Error | null) => calls.push([i, err]);
    assert.equal(a.write({ data: 'at once' }, note(0)), true);
    assert.deepEqual(calls, [], 'never called before write() returns');
    await tick();
    assert.deepEqual(calls, [[0, null]]);
    // Queued ones are called back as the kernel takes them, in order.
    const data = Buffer.alloc(32 * 1024, 1);
    let n = 1;
    while (a.write({ data }, note(n++)));
    for (let extra = 0; extra < 3; extra++) assert.equal(a.write({ data }, note(n++)), false);
    await tick();
    assert.ok(calls.length < n, 'the queued ones are not called back before they leave');
    for (let received = 0; received < n; received++) await b.receive(); // the first one too
    await tick();
    assert.deepEqual(
      calls,
      Array.from({ length: n }, (_, i) => [i, null]),
    );
    // Not called when write() throws: the message never left.
    assert.throws(() => a.write({ data: 'x', fds: [-1] }, note(-1)), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => a.write({ data: 'not sent' }, 'nope' as unknown as () => void), { code: 'ERR_INVALID_ARG_TYPE' });
    a.write({ data: 'next' });
    assert.equal((await b.receive()).data.toString(), 'next', 'nothing was sent by the calls that threw');
    await tick();
    assert.equal(calls.length, n);
    await closePair(a, b);
    // The peer goes away with messages queued: each is called back with the channel's error.
    const [c, d] = socketPair();
    const failed: Array<Error | null> = [];
    c.on('error', () => {});
    while (c.write({ data })) {}
    for (let i = 0; i < 3; i++) c.write({ data }, (err) => failed.push(err));
    d.destroy();
    await new Promise((resolve) => c.once('close', resolve)); // not once(): it rejects on 'error'
    await tick();
    assert.equal(failed.length, 3);
    for (const err of failed) assert.ok(err instanceof Error && /^E[A-Z]+$/.test((err as Error & { code: string }).code), String(err));
  });

  it('close() waits for messages write() queued', async () => {
    const [a, b] = socketPair();
    const data = Buffer.alloc(32 * 1024, 1);
    let count = 0;
    while (a.write({ data })) count++;
    count++; // the one that was queued
    for (let i = 0; i < 3; i++, count++) a.write({ data });
    const closed = a.close();
    let received = 0;
    for await (const m of b) {
      assert.equal(m.data.length, data.length);
      received++;
    }
    await closed;
    assert.equal(received, count);
    await b.close();
  });

  it('closeFds closes every descriptor in one call, checks them all first, and reports EBADF', async () => {
    const fd = openFile('c.txt', 'x');
    assert.doesNotThrow(() => closeFds([]));
    const one = dupFd(fd);
    closeFds([one]);
    assert.equal(isOpen(one), false);

    const many = Array.from({ length: 300 }, () => dupFd(fd)); // more than one message's worth
    closeFds(many);
    for (const d of many) assert.equal(isOpen(d), false);

    const kept = [dupFd(fd), dupFd(fd)];
    assert.throws(
      () => closeFds([kept[0]!, 1.5, kept[1]!]),
      (err: Error & { code: string }) => {
        assert.ok(err instanceof RangeError);
        assert.match(err.message, /fds\[1\]/);
        return true;
      },
    );
    assert.throws(() => closeFds('3' as unknown as number[]), { code: 'ERR_INVALID_ARG_TYPE' });
    for (const d of kept) assert.equal(isOpen(d), true, 'nothing is closed when an entry is invalid');

    // A descriptor that is not open: the others are still closed, then EBADF is thrown.
    const gone = dupFd(fd);
    closeFd(gone);
    assert.throws(() => closeFds([kept[0]!, gone, kept[1]!]), { code: 'EBADF', syscall: 'close' });
    for (const d of kept) assert.equal(isOpen(d), false);
    fs.closeSync(fd);
  });

  it('closeFds closes runs of consecutive descriptors exactly: neighbours stay open, EBADF as close(2) gives it', async () => {
    const fd = openFile('r.txt', 'x');
    const dups = (n: number): number[] => Array.from({ length: n }, () => dupFd(fd)).sort((x, y) => x - y);
    // Runs and singles mixed: exactly those listed close.
    const ten = dups(10);
    const listed = [0, 1, 2, 4, 5, 7].map((i) => ten[i]!);
    closeFds([...listed].reverse()); // in any order
    for (const [i, d] of ten.entries()) assert.equal(isOpen(d), !listed.includes(d), `fd ${d} (index ${i})`);
    closeFds(ten.filter((d) => !listed.includes(d)));
    // One not open in the middle of a run: the others close, then EBADF.
    const run = dups(5);
    closeFd(run[2]!);
    assert.throws(() => closeFds(run), { code: 'EBADF', syscall: 'close' });
    for (const d of run) assert.equal(isOpen(d), false);
    // One listed twice: its second close fails, as with one close(2) each.
    const twice = dups(4);
    assert.throws(() => closeFds([...twice, twice[1]!]), { code: 'EBADF', syscall: 'close' });
    for (const d of twice) assert.equal(isOpen(d), false);
    // A whole message's worth received: all closed.
    const [a, b] = socketPair();
    const sent = dups(MAX_FDS_PER_MESSAGE);
    await a.send({ fds: sent });
    closeFds(sent);
    const got = (await b.receive()).fds;
    assert.equal(got.length, MAX_FDS_PER_MESSAGE);
    closeFds(got);
    for (const d of got) assert.equal(isOpen(d), false);
    await closePair(a, b);
    fs.closeSync(fd);
  });

  it('a burst arrives in batches: each message keeps its own bytes and fds after later reads', async () => {
    const [a, b] = socketPair({ maxMessageSize: 1024 });
    const fd = openFile('b.txt', 'batch');
    // Full-size messages and small ones, with 0..40 fds each, sent before anyone reads.
    for (let i = 0; i < 60; i++) {
      const size = i % 3 === 0 ? 1024 : 1 + i;
      const data = Buffer.alloc(size, i);
      a.write({ data, fds: new Array<number>(i % 41).fill(fd) }); // most queue: nothing reads yet
    }
    fs.closeSync(fd);
    const got: Message[] = [];
    for (let i = 0; i < 60; i++) got.push(await b.receive());
    // Checked only now, after every later batch reused the channel's read memory.
    got.forEach((m, i) => {
      const size = i % 3 === 0 ? 1024 : 1 + i;
      assert.equal(m.data.length, size, `message ${i} length`);
      assert.ok(
        m.data.every((byte) => byte === i),
        `message ${i} bytes`,
      );
      assert.equal(m.fds.length, i % 41, `message ${i} fd count`);
      assert.equal(new Set(m.fds).size, m.fds.length, 'each received fd is a descriptor of its own');
      for (const d of m.fds) assert.equal(inspect(d).kind, 'file');
      closeFds(m.fds);
    });
    await closePair(a, b);
  });

  it("'message' listeners get the same batched delivery; send() and write() mix in order", async () => {
    const [a, b] = socketPair();
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => {
      b.on('message', (m: Message) => {
        seen.push(m.data.toString());
        closeFds(m.fds);
        if (seen.length === 6) resolve();
      });
    });
    a.write({ data: '0' });
    void a.send({ data: '1', fds: [0] });
    a.write({ data: '2', fds: [0, 1] });
    await a.send({ data: '3' });
    a.write({ data: '4' });
    a.write({ data: '5', fds: [2] });
    await done;
    assert.deepEqual(seen, ['0', '1', '2', '3', '4', '5']);
    await closePair(a, b);
  });
});

describe('writeMany()', () => {
  for (const type of ['seqpacket', 'stream', 'dgram'] as const) {
    it(`${type}: 100 messages, 0 to 4 fds each, arrive in order with their own fds`, async () => {
      const [a, b] = socketPair({ type });
      const [r, w] = fifoFds();
      const messages = Array.from({ length: 100 }, (_, i) => ({
        data: `m${String(i).padStart(3, '0')};`,
        fds: Array.from({ length: i % 5 }, (_, k) => (k % 2 === 0 ? r : w)),
      }));
      const drained = a.writeMany(messages) ? Promise.resolve() : new Promise((resolve) => a.once('drain', resolve));
      fs.closeSync(r);
      fs.closeSync(w);
      let text = '';
      let fds = 0;
      for (let got = 0; type === 'stream' ? text.length < 500 : got < 100; got++) {
        const m = await b.receive();
        if (type !== 'stream') {
          assert.equal(m.data.toString(), messages[got]!.data, 'boundaries and order kept');
          assert.equal(m.fds.length, got % 5, `message ${got}: its own fds`);
        }
        for (const [k, fd] of m.fds.entries()) assert.equal(inspect(fd).kind, 'pipe', `fd ${k}`);
        text += m.data.toString();
        fds += m.fds.length;
        for (const fd of m.fds) closeFd(fd);
      }
      await drained;
      assert.equal(text, messages.map((m) => m.data).join(''));
      assert.equal(fds, 200);
      await closePair(a, b);
    });
  }

  it('a bad 41st message throws before any of the 40 before it is sent', async () => {
    const [a, b] = socketPair();
    const messages: Array<{ data: string; fds?: number[] }> = Array.from({ length: 40 }, (_, i) => ({ data: `m${i}` }));
    messages.push({ data: 'bad', fds: [-1] });
    assert.throws(() => a.writeMany(messages), { code: 'ERR_OUT_OF_RANGE', message: /messages\[40\]\.fds\[0\]/ });
    assert.throws(() => a.writeMany([{ data: 'ok' }, {}]), { code: 'ERR_INVALID_ARG_VALUE', message: /messages\[1\]/ });
    assert.throws(() => a.writeMany({} as never), { code: 'ERR_INVALID_ARG_TYPE' });
    await a.send({ data: 'first' });
    assert.equal((await b.receive()).data.toString(), 'first', 'nothing of the refused batches went out');
    await closePair(a, b);
    assert.throws(() => a.writeMany([{ data: 'late' }]), { code: 'ERR_FDPASS_CLOSED' });
  });
});
