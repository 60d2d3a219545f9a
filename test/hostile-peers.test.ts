// Hostile peers of our own uid, as raw sockets that send exactly the bytes they choose: descriptors
// sent to a receiver that wants fewer; oversized, truncated and out-of-order hand-off messages in
// both directions; a stream message left half-written; a taker that never says hello; an old process
// that never answers. The rule for each: a clear error or refusal, the serving side goes on serving,
// and no descriptor is left open (the root hooks check this process; a serving child, by /proc).
// (Other uids: hostile-uid.test.ts. Malformed take() replies and hellos: handoff-failures.test.ts.
// MSG_CTRUNC: process.test.ts, and here for a read batch at the receiver's descriptor limit. A new
// process that hangs after taking: handoff.test.ts.)
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { once } from 'node:events';
import {
  bindDgram,
  handoff,
  listen,
  connect,
  fdOf,
  recvFd,
  socketPair,
  HANDOFF_PROTOCOL_VERSION,
  type Channel,
  type ChannelServer,
  type ListenOptions,
} from 'fdpass';
import { runFixture, spawnJson, type Fixture } from './helpers/children';
import { holdsFile, openFds, settle } from './helpers/fds';
import { markerFile } from './helpers/foreign';
import { get } from './helpers/http';
import { tmpPath } from './helpers/tmp';
import { waitFor } from './helpers/wait';

const RAW_PEER = path.join(__dirname, '..', '..', 'test', 'fixtures', 'raw_peer.py');

function rawPeer(args: string[]): Fixture {
  return spawnJson('python3', [RAW_PEER, ...args]);
}

/** A channel accepted from a raw peer that sends `counts` fds of `marker` (raw_peer.py fds mode). */
async function rawPeerChannel(
  type: 'seqpacket' | 'stream',
  marker: string,
  counts: number[],
  opts: ListenOptions = {},
): Promise<{ ch: Channel; peer: Fixture }> {
  const sock = tmpPath('recv.sock');
  const server = await listen(sock, { type, ...opts });
  const accepted = once(server, 'connection') as Promise<[Channel]>;
  const peer = rawPeer(['fds', type, sock, marker, ...counts.map(String)]);
  const [ch] = await accepted;
  await server.close();
  return { ch, peer };
}

/** The raw peer sent all its messages; closing the channel ends it, and it exits 0. */
async function endRawPeer(peer: Fixture, ch: Channel): Promise<void> {
  await peer.expect('sent');
  await ch.close();
  await peer.expect('eof');
  assert.equal((await peer.exited).code, 0, peer.stderr());
}

const wire = (body: Record<string, unknown>): string => JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION, ...body });

/** `count` read-only descriptors of `file`, sent by this process and closed once sent. */
async function sendMarkers(ch: Channel, data: string | Buffer, file: string, count: number): Promise<void> {
  const fds = Array.from({ length: count }, () => fs.openSync(file, 'r'));
  try {
    await ch.send({ data, fds });
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
}

/** Counts event-loop turns (a 5 ms interval) while `p` is pending: a blocked loop counts none. */
async function ticksWhile<T>(p: Promise<T>): Promise<{ ticks: number; result: PromiseSettledResult<T> }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const [result] = await Promise.allSettled([p]);
  clearInterval(timer);
  return { ticks, result: result! };
}

interface Serving {
  ports: { web: number };
  fds: number;
}

describe('hostile peers (same uid, raw sockets)', () => {
  describe('descriptors sent to a receiver that wants fewer', () => {
    it('recvFd(channel) on a message with 253 fds: ERR_FDPASS_TOO_MANY_FDS, all closed; the next arrives', async () => {
      const marker = markerFile();
      const { ch, peer } = await rawPeerChannel('seqpacket', marker, [253, 1]);
      await assert.rejects(recvFd(ch, { timeout: 5000 }), {
        code: 'ERR_FDPASS_TOO_MANY_FDS',
        message: /carried 253 descriptors, expected 1/,
      });
      assert.equal(holdsFile(openFds(), marker), 0, 'one of the 253 stayed open');
      // The channel is intact: the peer's next message (1 fd) is received as recvFd expects.
      await ch.send({ data: 'next' });
      const { fd, data } = await recvFd(ch, { timeout: 5000 });
      assert.equal(data.toString(), 'msg2');
      assert.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), marker);
      fs.closeSync(fd);
      await endRawPeer(peer, ch);
    });

    it('recvFd(path) on a message with 253 fds: ERR_FDPASS_TOO_MANY_FDS, all closed, the socket file removed', async () => {
      const marker = markerFile();
      const sock = tmpPath('one-shot.sock');
      const received = recvFd(sock, { timeout: 5000 }); // listens before its first await
      const peer = rawPeer(['fds', 'seqpacket', sock, marker, '253']);
      await assert.rejects(received, { code: 'ERR_FDPASS_TOO_MANY_FDS', message: /carried 253 descriptors/ });
      assert.equal(holdsFile(openFds(), marker), 0, 'one of the 253 stayed open');
      assert.equal(fs.existsSync(sock), false, 'the one-shot socket file is gone');
      await peer.expect('eof'); // it was hung up on
      assert.equal((await peer.exited).code, 0, peer.stderr());
    });
    for (const type of ['seqpacket', 'stream'] as const) {
      // Messages with 253 and 3 fds are refused.
      it(`${type} channel with maxFds 2: more fds are ERR_FDPASS_TOO_MANY_FDS and closed; 2 and 0 arrive`, async () => {
        const marker = markerFile();
        const { ch, peer } = await rawPeerChannel(type, marker, [253, 3, 2, 0], { maxFds: 2 });
        for (const n of [253, 3]) {
          await assert.rejects(ch.receive({ timeout: 5000 }), {
            code: 'ERR_FDPASS_TOO_MANY_FDS',
            message: new RegExp(`carried ${n} descriptors, more than maxFds \\(2\\)`),
          });
          assert.equal(holdsFile(openFds(), marker), 0, `one of the ${n} stayed open`);
          await ch.send({ data: 'next' });
        }
        const two = await ch.receive({ timeout: 5000 });
        assert.equal(two.data.toString(), 'msg3');
        assert.equal(two.fds.length, 2);
        for (const fd of two.fds) assert.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), marker);
        for (const fd of two.fds) fs.closeSync(fd);
        await ch.send({ data: 'next' });
        const none = await ch.receive({ timeout: 5000 });
        assert.equal(none.data.toString(), 'msg4');
        assert.deepEqual(none.fds, []);
        await endRawPeer(peer, ch);
      });
    }

    describe('a mix of oversized and fd-overflowing messages inside one recvmmsg batch', () => {
      // maxMessageSize 64, maxFds 2: message 2 and 7 are over 64 bytes (MSG_TRUNC), 4 and 6 carry more
      // than 2 fds; the others arrive, fd-only (5) and empty of fds (3) among them.
      const SPECS = ['4:1', '100:2', '3:0', '10:3', '0:2', '64:253', '65:0', '5:2'];
      const EXPECTED = [
        'm1xx/1',
        'ERR_FDPASS_TRUNCATED',
        'm3x/0',
        'ERR_FDPASS_TOO_MANY_FDS',
        '/2',
        'ERR_FDPASS_TOO_MANY_FDS',
        'ERR_FDPASS_TRUNCATED',
        'm8xxx/2',
      ];
      const OPTIONS = { maxMessageSize: 64, maxFds: 2 };

      // Each message's outcome: "data/fd count" (every fd checked to be the marker, then closed) or the
      // error code that took its place; no copy of the marker may stay open after the last one.
      async function outcomes(ch: Channel, marker: string, paced: boolean): Promise<string[]> {
        const seen: string[] = [];
        for (let k = 0; k < SPECS.length; k++) {
          if (paced && k > 0) await ch.send({ data: 'next' });
          try {
            const m = await ch.receive({ timeout: 5000 });
            for (const fd of m.fds) assert.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), marker);
            for (const fd of m.fds) fs.closeSync(fd);
            seen.push(`${m.data.toString()}/${m.fds.length}`);
          } catch (err) {
            seen.push((err as { code?: string }).code ?? String(err));
          }
        }
        // (Until then the batch's later messages held theirs.)
        assert.equal(holdsFile(openFds(), marker), 0, 'a copy of the marker stayed open');
        return seen;
      }

      it('seqpacket: each message is refused or delivered as when read one by one', async () => {
        const marker = markerFile();
        const results: Record<string, string[]> = {};
        for (const pace of ['paced', 'burst'] as const) {
          const sock = tmpPath(`mix-${pace}.sock`);
          const server = await listen(sock, { type: 'seqpacket', ...OPTIONS });
          const accepted = once(server, 'connection') as Promise<[Channel]>;
          const peer = rawPeer(['mix', pace, 'seqpacket', sock, marker, ...SPECS]);
          const [ch] = await accepted;
          await server.close();
          // A burst is all in the kernel's queue before the channel reads: one recvmmsg takes it.
          if (pace === 'burst') await peer.expect('sent');
          results[pace] = await outcomes(ch, marker, pace === 'paced');
          if (pace === 'paced') await peer.expect('sent');
          await ch.close();
          await peer.expect('eof');
          assert.equal((await peer.exited).code, 0, peer.stderr());
        }
        assert.deepEqual(results.paced, EXPECTED);
        assert.deepEqual(results.burst, results.paced);
      });

      it("seqpacket: an empty message mid-batch ends the channel and closes the later messages' fds", async () => {
        const marker = markerFile();
        const sock = tmpPath('fake-eof.sock');
        const server = await listen(sock, { type: 'seqpacket' });
        const accepted = once(server, 'connection') as Promise<[Channel]>;
        const peer = rawPeer(['mix', 'burst', 'seqpacket', sock, marker, '4:1', '0:0', '5:2', '6:3']);
        const [ch] = await accepted;
        await server.close();
        await peer.expect('sent');
        const m = await ch.receive({ timeout: 5000 });
        assert.equal(m.data.toString(), 'm1xx');
        for (const fd of m.fds) fs.closeSync(fd);
        await assert.rejects(ch.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
        // Before any close() of ours: messages 3 and 4 were read with the batch, never delivered.
        assert.equal(holdsFile(openFds(), marker), 0, 'a copy of the marker stayed open');
        await ch.close();
        await peer.expect('eof');
        assert.equal((await peer.exited).code, 0, peer.stderr());
      });

      it('dgram: the same burst, on a bound datagram channel, gives the same outcomes', async () => {
        const marker = markerFile();
        const sock = tmpPath('mix-dgram.sock');
        const ch = await bindDgram(sock, OPTIONS);
        const peer = rawPeer(['mix', 'burst', 'dgram', sock, marker, ...SPECS]);
        await peer.expect('sent');
        assert.deepEqual(await outcomes(ch, marker, false), EXPECTED);
        await ch.close();
        peer.send('end');
        await peer.expect('eof');
        assert.equal((await peer.exited).code, 0, peer.stderr());
      });
    });

    describe('a receiver at its RLIMIT_NOFILE (a child with ulimit -n 1024) gets a burst of messages with fds', () => {
      const LIMIT = 1024;

      // Message k of a spec 'BYTES:FDS': b'mK' then 'x' filler to BYTES bytes, with FDS copies of `fd`.
      function specMessages(specs: string[], fd: number): Array<{ data: Buffer; fds: number[] }> {
        return specs.map((spec, k) => {
          const [bytes, count] = spec.split(':').map(Number) as [number, number];
          const data = Buffer.alloc(bytes, 'x');
          data.write(`m${k + 1}`.slice(0, bytes));
          return { data, fds: new Array<number>(count).fill(fd) };
        });
      }

      // The child's outcome for each message, first as one burst queued before it reads, then read one
      // by one (each sent once the previous one was taken); both with exactly `free` descriptor
      // numbers free below its limit and every delivered fd held until the last message. Checks,
      // from /proc/<pid>/fd, that the child holds exactly the delivered fds after each run and
      // nothing of them (and no other change) once it closed them.
      async function nearLimit(free: number, specs: string[]): Promise<Record<'paced' | 'burst', string[]>> {
        const marker = markerFile();
        const sock = tmpPath('near-limit.sock');
        const server = await listen(sock, { type: 'seqpacket' });
        const accepted = once(server, 'connection') as Promise<[Channel]>;
        const script = path.join(__dirname, 'fixtures', 'near-limit-receiver.js');
        const child = spawnJson('/bin/sh', ['-c', `ulimit -n ${LIMIT} && exec "$0" "$@"`, process.execPath, script, sock, marker]);
        const [ch] = await accepted;
        await server.close();
        await child.expect('ready');
        const markerFd = fs.openSync(marker, 'r');
        const results: Partial<Record<'paced' | 'burst', string[]>> = {};
        try {
          for (const pace of ['burst', 'paced'] as const) {
            child.send({ cmd: 'free', n: free });
            await child.expect('free');
            const before = openFds(child.pid);
            const messages = specMessages(specs, markerFd);
            if (pace === 'burst' && !ch.writeMany(messages)) await once(ch, 'drain'); // all queued in the kernel
            child.send({ cmd: 'receive', count: specs.length });
            const seen: string[] = [];
            for (const m of messages) {
              if (pace === 'paced') await ch.send(m);
              seen.push((await child.expect<{ outcome: string }>('outcome')).outcome);
            }
            await child.expect('received');
            results[pace] = seen;
            const delivered = seen.reduce((n, o) => n + (o.startsWith('ERR_') ? 0 : Number(o.split('/')[1])), 0);
            const during = openFds(child.pid);
            assert.equal(holdsFile(during, marker), delivered, `${pace}: the child holds exactly the delivered fds`);
            assert.equal(during.size, before.size + delivered, `${pace}: and no other new descriptor`);
            child.send({ cmd: 'release' });
            await child.expect('released');
            assert.deepEqual([...openFds(child.pid)], [...before], `${pace}: the child's descriptors are back as they were`);
          }
        } finally {
          fs.closeSync(markerFd);
        }
        child.send({ cmd: 'end' });
        await ch.receive().catch(() => undefined); // its close
        await ch.close();
        child.proc.stdin!.end();
        assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
        return results as Record<'paced' | 'burst', string[]>;
      }

      it('60 free: each message is delivered or refused (CTRUNC, TRUNCATED) as when read one by one', async () => {
        // maxMessageSize 64 in the child. Read one by one: 40 fit (20 left); 30 do not (the 20 that
        // arrived are closed); 10 fit; an oversized message's 8 arrive and are closed (TRUNCATED); 5,
        // 0; 253 do not (5 arrived, closed); 5 fit (none left); 1 does not; 0 does.
        const specs = ['4:40', '4:30', '4:10', '100:8', '4:5', '4:0', '4:253', '4:5', '4:1', '4:0'];
        const { paced, burst } = await nearLimit(60, specs);
        assert.deepEqual(paced, [
          'm1xx/40',
          'ERR_FDPASS_CTRUNC',
          'm3xx/10',
          'ERR_FDPASS_TRUNCATED',
          'm5xx/5',
          'm6xx/0',
          'ERR_FDPASS_CTRUNC',
          'm8xx/5',
          'ERR_FDPASS_CTRUNC',
          'm10x/0',
        ]);
        assert.deepEqual(burst, paced);
      });

      it('600 free: two messages of 253 fit, then the burst goes on as when read one by one', async () => {
        // 253 + 253 fit (94 left), and 0; 100 do not (94 arrived, closed); 60, 20 and 14 fit; 1 does not.
        const specs = ['4:253', '4:253', '4:0', '4:100', '4:60', '4:20', '4:14', '4:1', '4:0'];
        const { paced, burst } = await nearLimit(600, specs);
        assert.deepEqual(paced, [
          'm1xx/253',
          'm2xx/253',
          'm3xx/0',
          'ERR_FDPASS_CTRUNC',
          'm5xx/60',
          'm6xx/20',
          'm7xx/14',
          'ERR_FDPASS_CTRUNC',
          'm9xx/0',
        ]);
        assert.deepEqual(burst, paced);
      });
    });

    it("maxFds 0: a message with a descriptor is refused, through 'error' too; the next one arrives", async () => {
      const marker = markerFile();
      const { ch, peer } = await rawPeerChannel('seqpacket', marker, [1, 0], { maxFds: 0 });
      // Read as 'message' events: the refused message comes as 'error' in its place.
      const errors: Array<Error & { code?: string }> = [];
      const messages: Array<{ data: Buffer; fds: number[] }> = [];
      ch.on('error', (err: Error) => errors.push(err));
      ch.on('message', (m: { data: Buffer; fds: number[] }) => messages.push(m));
      await waitFor('the refusal', () => errors.length > 0);
      assert.equal(errors[0]!.code, 'ERR_FDPASS_TOO_MANY_FDS');
      assert.match(errors[0]!.message, /carried 1 descriptor, more than maxFds \(0\)/);
      assert.equal(holdsFile(openFds(), marker), 0, 'the descriptor stayed open');
      assert.equal(messages.length, 0, 'nothing of the refused message is delivered');
      await ch.send({ data: 'next' });
      await waitFor('the next message', () => messages.length > 0);
      assert.equal(messages[0]!.data.toString(), 'msg2');
      assert.deepEqual(messages[0]!.fds, []);
      assert.equal(errors.length, 1);
      await endRawPeer(peer, ch);
    });

    // The refused message comes ahead of an accepted one in the same batch.
    it('destroy() after a refused message closes neither the accepted fd nor reused numbers', async () => {
      const [a, b] = socketPair({ type: 'seqpacket', maxFds: 2 });
      const devNull = (): number => fs.openSync('/dev/null', 'r');
      const three = [devNull(), devNull(), devNull()];
      const one = devNull();
      await a.send({ data: 'refused', fds: three }); // both queued before b reads: one batch
      await a.send({ data: 'accepted', fds: [one] });
      for (const fd of [...three, one]) fs.closeSync(fd);
      await assert.rejects(b.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_TOO_MANY_FDS' });
      const m = await b.receive({ timeout: 5000 });
      assert.equal(m.fds.length, 1);
      const reused = [devNull(), devNull(), devNull()]; // may take the refused message's numbers
      b.destroy();
      a.destroy();
      await settle();
      const open = (fd: number): boolean => fs.existsSync(`/proc/self/fd/${fd}`);
      assert.deepEqual([...m.fds, ...reused].map(open), [true, true, true, true], 'destroy() closed a descriptor it did not own');
      for (const fd of [...m.fds, ...reused]) fs.closeSync(fd);
    });

    it('maxFds is checked: not an integer, negative, or above 253', async () => {
      for (const [maxFds, code] of [
        [1.5, 'ERR_OUT_OF_RANGE'],
        [-1, 'ERR_OUT_OF_RANGE'],
        [254, 'ERR_OUT_OF_RANGE'],
        ['2', 'ERR_INVALID_ARG_TYPE'],
      ] as Array<[number, string]>) {
        await assert.rejects(listen(tmpPath('bad.sock'), { maxFds }), { code, message: /options\.maxFds/ });
        assert.throws(() => socketPair({ maxFds }), { code, message: /options\.maxFds/ });
      }
    });
  });

  describe('a message half-written or never sent, then silence', () => {
    it('recvFd(path): a sender that never sends: ERR_FDPASS_TIMEOUT, hung up on, the socket file removed', async () => {
      const sock = tmpPath('one-shot.sock');
      const received = recvFd(sock, { timeout: 300 }); // listens before its first await
      const silent = await connect(sock);
      await assert.rejects(received, { code: 'ERR_FDPASS_TIMEOUT' });
      await assert.rejects(silent.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
      await silent.close();
      assert.equal(fs.existsSync(sock), false, 'the one-shot socket file is gone');
    });

    // The half frame arrives with its fds; the timeout does not block the loop.
    it('a half frame: receive({ timeout }) rejects with ERR_FDPASS_TIMEOUT; close() closes its fds', async () => {
      const marker = markerFile();
      const sock = tmpPath('stream.sock');
      const server = await listen(sock, { type: 'stream' });
      const accepted = once(server, 'connection') as Promise<[Channel]>;
      const peer = rawPeer(['half-frame', sock, marker]);
      const [ch] = await accepted;
      await server.close();
      await peer.expect('half');
      // A stream channel is a byte stream: what arrived is delivered, never held back for the rest.
      const first = await ch.receive({ timeout: 5000 });
      assert.equal(first.data.length, 14);
      assert.equal(first.data.readUInt32BE(0), 100, 'the length prefix says 100 bytes; 10 came');
      assert.equal(first.fds.length, 2);
      for (const fd of first.fds) fs.closeSync(fd);

      const t0 = Date.now();
      const { ticks, result } = await ticksWhile(ch.receive({ timeout: 300 }));
      assert.equal(result.status, 'rejected');
      assert.equal((result as PromiseRejectedResult).reason.code, 'ERR_FDPASS_TIMEOUT');
      assert.ok(Date.now() - t0 >= 295, 'it waited for its timeout');
      assert.ok(ticks >= 5, `the event loop ran while the receive waited (${ticks} turns)`);
      assert.equal(ch.closed, false, 'a timed-out receive leaves the channel open');

      // Two more chunks (3 and 4 fds) arrive back to back: one receive takes the first, the channel
      // reads the second along with it and holds its 4 fds; close() must close them.
      peer.proc.stdin!.write('more\n');
      await peer.expect('sent');
      const second = await ch.receive({ timeout: 5000 });
      assert.equal(second.data.toString(), 'chunk-b');
      assert.equal(second.fds.length, 3);
      for (const fd of second.fds) fs.closeSync(fd);
      assert.equal(holdsFile(openFds(), marker), 4, 'the channel holds the unread chunk and its 4 fds');
      await ch.close();
      await settle();
      assert.equal(holdsFile(openFds(), marker), 0, 'close() closed the fds of the unread chunk');
      await peer.expect('eof');
      assert.equal((await peer.exited).code, 0, peer.stderr());
    });
  });

  describe('serve(): a hostile taker, with the old process a child', () => {
    // The old process (handoff-old, an http.Server as 'web', readyTimeout 1 s) and its fd map.
    async function oldProcess(control: string): Promise<{ old: Fixture; port: number }> {
      const old = runFixture('handoff-old', [control, 'http', '1000']);
      const { ports } = await old.expect<Serving>('serving');
      return { old, port: ports.web };
    }

    // A real hand-off to a new process: proves the old one still offers its listeners. Resolves with
    // the time the new process held them.
    async function handOffTo(control: string, old: Fixture, port: number): Promise<number> {
      const fresh = runFixture('handoff-new', [control, 'serve']);
      await fresh.expect('adopted');
      const adoptedAt = Date.now();
      fresh.send({ cmd: 'ready' });
      assert.deepEqual(await fresh.expect('ready'), { event: 'ready', acknowledged: true });
      await old.expect('drained');
      assert.equal(await get(port), `new ${fresh.pid}`);
      fresh.send({ cmd: 'exit' });
      fresh.proc.stdin!.end();
      assert.equal((await fresh.exited).code, 0, fresh.stderr());
      assert.equal((await old.exited).code, 0, old.stderr());
      return adoptedAt;
    }

    // The old process after a malformed taker: it rolled back with a protocol error, holds none of the
    // taker's fds and no more fds than before, serves on, and hands off to the next (real) taker.
    async function rolledBackAndServing(old: Fixture, marker: string, port: number, control: string): Promise<void> {
      const rollback = await old.expect<{ code: string; fds: number }>('rollback');
      assert.equal(rollback.code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
      assert.equal(rollback.fds, 0, 'the old process is back to its fd count');
      assert.equal(holdsFile(openFds(old.pid), marker), 0, 'a descriptor the taker sent is open in the old process');
      assert.equal(await get(port), `old ${old.pid}`);
      await handOffTo(control, old, port);
    }

    const firsts: Array<[string, RegExp, () => Buffer]> = [
      // 100 KiB: more than the 64 KiB receive buffer, so the kernel truncates it (MSG_TRUNC).
      [
        'a hello larger than the receive buffer (MSG_TRUNC)',
        /larger than the 64 KiB receive buffer \(MSG_TRUNC\)/,
        () => Buffer.from(wire({ type: 'hello', names: ['web'], pad: 'x'.repeat(100 * 1024) })),
      ],
      ['a hello cut mid-way', /not a JSON object/, () => Buffer.from(wire({ type: 'hello', names: ['web'] }).slice(0, 20))],
      ["'ready' before any hello", /expected 'hello', got 'ready'/, () => Buffer.from(wire({ type: 'ready' }))],
    ];
    for (const [label, message, first] of firsts) {
      // The taker gets ERR_FDPASS_HANDOFF_PROTOCOL; the old process serves on and hands off to the next taker.
      it(`${label} with 3 fds is refused, the fds closed`, async () => {
        const marker = markerFile();
        const control = tmpPath('control.sock');
        const { old, port } = await oldProcess(control);
        const ch = await connect(control);
        await sendMarkers(ch, first(), marker, 3);
        const reply = await ch.receive({ timeout: 5000 });
        assert.equal(reply.fds.length, 0);
        const answer = JSON.parse(reply.data.toString()) as { type: string; code: string; message: string };
        assert.equal(answer.type, 'error');
        assert.equal(answer.code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
        assert.match(answer.message, message);
        await assert.rejects(ch.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' }); // then it hung up
        await ch.close();
        await rolledBackAndServing(old, marker, port, control);
      });
    }

    // The old process has room for 16 more descriptors; it serves on and hands off to the next taker.
    it('a hello with 253 fds (MSG_CTRUNC): ERR_FDPASS_HANDOFF_PROTOCOL, no fd stays open', async () => {
      const marker = markerFile();
      const control = tmpPath('control.sock');
      const { old, port } = await oldProcess(control);
      // Its soft descriptor limit just above its highest open descriptor: the kernel installs what fits
      // of the 253 and says MSG_CTRUNC. (Only the soft limit: it goes back up after.)
      const highest = Math.max(...openFds(old.pid).keys());
      const limit = (soft: string): void => void execFileSync('prlimit', ['--pid', String(old.pid), `--nofile=${soft}:`]);
      const [soft] = execFileSync('prlimit', ['--pid', String(old.pid), '--nofile', '--raw', '--noheadings', '--output', 'SOFT'])
        .toString()
        .trim()
        .split(/\s+/);
      limit(String(highest + 1 + 16));
      const ch = await connect(control);
      try {
        await sendMarkers(ch, Buffer.from(wire({ type: 'hello', names: ['web'] })), marker, 253);
        const reply = await ch.receive({ timeout: 5000 });
        const answer = JSON.parse(reply.data.toString()) as { type: string; code: string; message: string };
        assert.equal(answer.type, 'error');
        assert.equal(answer.code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
        assert.match(answer.message, /MSG_CTRUNC/);
        await assert.rejects(ch.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' }); // then it hung up
        assert.equal(await get(port), `old ${old.pid}`, 'it serves at its limit');
      } finally {
        limit(soft!);
        await ch.close();
      }
      await rolledBackAndServing(old, marker, port, control);
    });

    const lasts: Array<[string, RegExp, () => Buffer]> = [
      ["a 'ready' larger than the receive buffer", /MSG_TRUNC/, () => Buffer.from(wire({ type: 'ready', pad: 'x'.repeat(100 * 1024) }))],
      ["a second hello where 'ready' belongs", /expected 'ready', got 'hello'/, () => Buffer.from(wire({ type: 'hello' }))],
    ];
    for (const [label, message, last] of lasts) {
      // A rollback with ERR_FDPASS_HANDOFF_PROTOCOL; the old process serves on and hands off to the next taker.
      it(`${label} with 2 fds after the offer: a rollback, the fds closed`, async () => {
        const marker = markerFile();
        const control = tmpPath('control.sock');
        const { old, port } = await oldProcess(control);
        const ch = await connect(control);
        await ch.send({ data: wire({ type: 'hello' }) });
        const batch = await ch.receive({ timeout: 5000 });
        assert.equal(JSON.parse(batch.data.toString()).type, 'listeners');
        assert.equal(batch.fds.length, 1);
        fs.closeSync(batch.fds[0]!); // our copy of 'web': we never serve on it
        assert.equal(JSON.parse((await ch.receive({ timeout: 5000 })).data.toString()).type, 'done');
        await sendMarkers(ch, last(), marker, 2);
        const answer = JSON.parse((await ch.receive({ timeout: 5000 })).data.toString()) as { code: string; message: string };
        assert.equal(answer.code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
        assert.match(answer.message, message);
        await ch.close();
        await rolledBackAndServing(old, marker, port, control);
      });
    }

    // The next taker is served meanwhile; the silent one is closed.
    it('a taker that never says hello holds up no one; after readyTimeout it gets ERR_FDPASS_TIMEOUT', async () => {
      const control = tmpPath('control.sock');
      const { old, port } = await oldProcess(control);
      const t0 = Date.now();
      const silent = await connect(control);
      const telling = silent.receive({ timeout: 5000 });
      let toldAt = Number.POSITIVE_INFINITY;
      void telling.then(
        () => (toldAt = Date.now()),
        () => {},
      );
      // A real hand-off while the silent connection is open: not BUSY, not delayed by it: the new
      // process held the listeners before the silent one's deadline.
      const adoptedAt = await handOffTo(control, old, port);
      // handOffTo waited for the old process to exit: its exit had to wait for the silent one's deadline.
      const told = await telling;
      assert.ok(adoptedAt < toldAt, `the taker was served ${adoptedAt - t0} ms in, the silent one told ${toldAt - t0} ms in`);
      const answer = JSON.parse(told.data.toString()) as { type: string; code: string; message: string };
      assert.deepEqual([answer.type, answer.code], ['error', 'ERR_FDPASS_TIMEOUT']);
      assert.match(answer.message, /no hello within 1000 ms/);
      assert.ok(Date.now() - t0 >= 950, 'it had its readyTimeout');
      await assert.rejects(silent.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
      await silent.close();
    });

    // It is back to its fd count.
    it('a lone taker that never says hello is closed after readyTimeout; the old process serves on', async () => {
      const control = tmpPath('control.sock');
      const { old, port } = await oldProcess(control);
      const before = openFds(old.pid).size;
      const silent = await connect(control);
      await waitFor('the old process to accept it', () => openFds(old.pid).size === before + 1);
      const told = await silent.receive({ timeout: 5000 });
      assert.equal((JSON.parse(told.data.toString()) as { code: string }).code, 'ERR_FDPASS_TIMEOUT');
      await assert.rejects(silent.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
      await silent.close();
      await waitFor('the old process to close its end', () => openFds(old.pid).size === before);
      assert.equal(await get(port), `old ${old.pid}`);
      old.send({ cmd: 'exit' });
      old.proc.stdin!.end();
      assert.equal((await old.exited).code, 0, old.stderr());
    });
  });

  describe('take(): a hostile old process', () => {
    // A fake old process: answers the hello with `reply`, then waits for the taker to hang up.
    async function fakeOld(
      control: string,
      reply: (ch: Channel) => Promise<void>,
    ): Promise<{ server: ChannelServer; hungUp: Promise<void> }> {
      const server = await listen(control);
      let hungUp!: () => void;
      const done = new Promise<void>((resolve) => (hungUp = resolve));
      server.once('connection', (ch: Channel) => {
        void (async () => {
          const hello = await ch.receive();
          assert.equal(hello.fds.length, 0);
          await reply(ch);
          await ch.receive().catch(() => {}); // until the taker hangs up
          await ch.close();
          hungUp();
        })();
      });
      return { server, hungUp: done };
    }

    function listenLocal(): Promise<http.Server> {
      return new Promise((resolve) => {
        const s = http.createServer((_req, res) => res.end('fake old'));
        s.listen(0, '127.0.0.1', () => resolve(s));
      });
    }

    const replies: Array<[string, RegExp, (entries: string) => Buffer]> = [
      [
        'a listeners batch over the receive buffer (MSG_TRUNC)',
        /larger than the 64 KiB receive buffer \(MSG_TRUNC\)/,
        (entries) => Buffer.from(`${entries.slice(0, -1)},"pad":"${'x'.repeat(100 * 1024)}"}`),
      ],
      ['a listeners batch cut mid-way', /not a JSON object/, (entries) => Buffer.from(entries.slice(0, entries.length - 12))],
    ];
    for (const [label, message, make] of replies) {
      // take() rejects with ERR_FDPASS_HANDOFF_PROTOCOL.
      it(`${label} (2 listeners): take() rejects, both fds closed`, async () => {
        const control = tmpPath('control.sock');
        const a = await listenLocal();
        const b = await listenLocal();
        const entries = wire({
          type: 'listeners',
          entries: [
            { name: 'a', kind: 'tcp' },
            { name: 'b', kind: 'tcp' },
          ],
        });
        const fake = await fakeOld(control, (ch) => ch.send({ data: make(entries), fds: [fdOf(a), fdOf(b)] }));
        // The fds arrive here as new numbers: the root hook fails this test if one stays open.
        await assert.rejects(handoff.take(control, { timeout: 5000 }), { code: 'ERR_FDPASS_HANDOFF_PROTOCOL', message });
        await fake.hungUp;
        await fake.server.close();
        await new Promise<void>((resolve) => a.close(() => resolve()));
        await new Promise<void>((resolve) => b.close(() => resolve()));
      });
    }

    // ready() rejects with ERR_FDPASS_HANDOFF_PROTOCOL.
    it("an 'ack' larger than the receive buffer: ready() rejects, the inherited listener is closed", async () => {
      const marker = markerFile();
      const control = tmpPath('control.sock');
      const web = await listenLocal();
      const fake = await fakeOld(control, async (ch) => {
        await ch.send({ data: wire({ type: 'listeners', entries: [{ name: 'web', kind: 'tcp' }] }), fds: [fdOf(web)] });
        await ch.send({ data: wire({ type: 'done', count: 1, skipped: [] }) });
        const ready = await ch.receive();
        assert.equal(JSON.parse(ready.data.toString()).type, 'ready');
        await sendMarkers(ch, Buffer.from(wire({ type: 'ack', pad: 'x'.repeat(100 * 1024) })), marker, 2);
      });
      const inherited = await handoff.take(control, { timeout: 5000 });
      assert.ok(inherited);
      await assert.rejects(inherited.ready({ timeout: 5000 }), { code: 'ERR_FDPASS_HANDOFF_PROTOCOL', message: /MSG_TRUNC/ });
      await fake.hungUp;
      assert.equal(holdsFile(openFds(), marker), 0);
      await fake.server.close();
      await new Promise<void>((resolve) => web.close(() => resolve()));
    });

    // take() hangs up in time.
    it('an old process that never answers: take({ timeout: 500 }) rejects with ERR_FDPASS_TIMEOUT', async () => {
      const control = tmpPath('control.sock');
      const server = await listen(control);
      const accepted = once(server, 'connection') as Promise<[Channel]>;
      const t0 = Date.now();
      const taking = handoff.take(control, { timeout: 500 });
      const [ch] = await accepted;
      const hello = await ch.receive({ timeout: 5000 }); // it said hello; we say nothing
      assert.equal(JSON.parse(hello.data.toString()).type, 'hello');
      await assert.rejects(taking, { code: 'ERR_FDPASS_TIMEOUT' });
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 490, `it waited its timeout (${elapsed} ms)`);
      assert.ok(elapsed < 2500, `it gave up on time (${elapsed} ms)`);
      await assert.rejects(ch.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' }); // it hung up
      await ch.close();
      await server.close();
    });
  });
});
