// Interop with other SCM_RIGHTS speakers in real processes over real sockets: Python's standard
// library (socket.send_fds / socket.recv_fds) in both directions over stream sockets, memfd and
// eventfd descriptors made by Python, a memfd relayed on to a second (Node) child, and descriptor
// hygiene on both sides (counts in /proc/self/fd, CLOEXEC, nothing inherited by later children).
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { listen, connect, sendFd, inspect, closeFd, type Channel, type ChannelServer } from 'fdpass';
import { exitedCleanly, spawnJson, runFixture, type Fixture } from './helpers/children';
import { nextConnection } from './helpers/sockets';
import { tmpPath } from './helpers/tmp';
import { fifoFds, openFds, newFds, settle } from './helpers/fds';

// Only .ts files are compiled into .test-out: the Python fixture runs from its source path.
const PEER = path.join(__dirname, '..', '..', 'test', 'fixtures', 'interop_peer.py');

// What the running test holds. A passing test releases all of it itself; after a failed one the
// afterEach below closes what is left, so that the failure reported is the test's own assertion and
// not the root hook's leak and child checks (whose failure would also stop the rest of the file).
const held = { fds: new Set<number>(), closers: new Set<() => unknown>() };

function hold(...fds: number[]): void {
  for (const fd of fds) held.fds.add(fd);
}

function release(...fds: number[]): void {
  for (const fd of fds) {
    held.fds.delete(fd);
    closeFd(fd);
  }
}

function holdChild(child: Fixture): Fixture {
  held.closers.add(async () => {
    child.proc.kill('SIGKILL');
    await child.exited;
  });
  return child;
}

function holdChannel(channel: Channel): Channel {
  held.closers.add(() => channel.destroy());
  return channel;
}

async function listenStream(sock: string): Promise<ChannelServer> {
  const server = await listen(sock, { type: 'stream' });
  held.closers.add(() => server.close());
  return server;
}

async function cleanUpAfterFailure(failed: boolean): Promise<void> {
  const closers = [...held.closers];
  const fds = [...held.fds];
  held.closers.clear();
  held.fds.clear();
  if (!failed) return;
  for (const close of closers) await close();
  for (const fd of fds) {
    try {
      closeFd(fd);
    } catch {
      // best effort: the test's own failure is what gets reported
    }
  }
}

function python(args: string[], opts: Parameters<typeof spawnJson>[2] = {}): Fixture {
  return holdChild(spawnJson('python3', [PEER, ...args], opts));
}

/** The next channel `server` accepts, held for the test's cleanup. */
function nextHeldConnection(server: ChannelServer): Promise<Channel> {
  return nextConnection(server).then(holdChannel);
}

/**
 * Reads a non-blocking pipe to EOF. Its writers must all be closed: a leaked writer shows up as
 * EAGAIN (a failure) instead of a blocked event loop.
 */
function readToEof(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(4096);
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) return Buffer.concat(chunks).toString();
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
}

/** A FIFO opened both ways: [non-blocking read end, write end], both kind 'pipe'. */
function fifo(name: string): [number, number] {
  const [r, w] = fifoFds(name);
  hold(r, w);
  return [r, w];
}

function u64le(value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return b;
}

function token(): string {
  return randomBytes(6).toString('hex');
}

interface PeerFd {
  kind: string;
  ino: number;
  dev: number;
  inheritable: boolean;
  nonblocking: boolean;
}

describe('interop between processes', () => {
  afterEach(async function () {
    await cleanUpAfterFailure(this.currentTest?.state === 'failed');
  });

  describe('with Python (socket.send_fds / socket.recv_fds) over stream sockets', () => {
    it('Node listens, Python connects and sends a pipe read end and a file: both work in Node', async () => {
      const sock = tmpPath('py-to-node.sock');
      const file = tmpPath('from-python.txt');
      const tok = token();
      const server = await listenStream(sock);
      const connection = nextHeldConnection(server);
      const child = python(['send', sock, file, tok]);
      const channel = await connection;
      await server.close();
      assert.equal(channel.type, 'stream');
      assert.equal(channel.peer.pid, child.pid, 'SO_PEERCRED names the Python process');

      const m = await channel.receive({ timeout: 10_000 });
      assert.equal(m.data.toString(), `hello from python ${tok}`);
      assert.equal(m.fds.length, 2);
      hold(...m.fds);
      const [pipeFd, fileFd] = m.fds as [number, number];

      const pipeInfo = inspect(pipeFd);
      assert.equal(pipeInfo.kind, 'pipe');
      assert.equal(pipeInfo.cloexec, true, 'fdpass receives with MSG_CMSG_CLOEXEC');
      // O_NONBLOCK lives in the open file description Python made with pipe2(): the very same one.
      assert.equal(pipeInfo.nonblocking, true);
      const fileInfo = inspect(fileFd);
      assert.equal(fileInfo.kind, 'file');
      assert.equal(fileInfo.cloexec, true);
      assert.equal(fileInfo.nonblocking, false);

      assert.equal(fs.fstatSync(fileFd).ino, fs.statSync(file).ino, 'the received fd is the file Python opened');
      assert.equal(fs.readFileSync(fileFd, 'utf8'), `file written by python ${tok}`);
      // Python closed the write end before sending: the data, then EOF (a leaked writer would EAGAIN).
      assert.equal(readToEof(pipeFd), `pipe data from python ${tok}`);

      const sent = await child.expect<{ bytes: number; before: number; connected: number }>('sent');
      assert.equal(sent.bytes, m.data.length, 'one sendmsg, one message');
      assert.equal(sent.connected, sent.before + 1, 'Python holds only its socket after sending');

      release(pipeFd, fileFd);
      await channel.close(); // Python waits for this EOF, then closes and reports
      const done = await child.expect<{ before: number; after: number }>('done');
      assert.equal(done.after, done.before, 'Python is back to the descriptors it started with');
      await exitedCleanly(child);
    });

    it('Python listens (recv_fds), Node connects and sends a file, a pipe read end and a pipe write end', async () => {
      const sock = tmpPath('node-to-py.sock');
      const tok = token();
      const child = python(['recv', sock, tok]);
      await child.expect('listening');
      const channel = holdChannel(await connect(sock, { type: 'stream' }));
      assert.equal(channel.peer.pid, child.pid);

      const file = tmpPath('from-node.txt');
      fs.writeFileSync(file, `file written by node ${tok}`);
      const fileFd = fs.openSync(file, 'r');
      hold(fileFd);
      // toPython: Node fills it and closes its writer, so Python reads the data and then EOF.
      const [toPythonR, toPythonW] = fifo('to-python');
      fs.writeSync(toPythonW, `pipe data from node ${tok}`);
      release(toPythonW);
      // fromPython: Python gets the write end and writes into it; Node keeps the read end.
      const [fromPythonR, fromPythonW] = fifo('from-python');
      const inodes = [fileFd, toPythonR, fromPythonW].map((fd) => fs.fstatSync(fd).ino);

      await channel.send({ data: `hello from node ${tok}`, fds: [fileFd, toPythonR, fromPythonW] });
      release(fileFd, toPythonR, fromPythonW);

      const r = await child.expect<{
        data: string;
        ctrunc: boolean;
        fds: PeerFd[];
        fileContent: string | null;
        pipeContent: string | null;
        wrote: number;
        before: number;
        connected: number;
        holding: number;
        after: number;
      }>('received');
      assert.equal(r.data, `hello from node ${tok}`);
      assert.equal(r.ctrunc, false);
      assert.deepEqual(
        r.fds.map((f) => f.kind),
        ['file', 'pipe', 'pipe'],
      );
      assert.deepEqual(
        r.fds.map((f) => f.ino),
        inodes,
        'Python got the very files Node sent, in order',
      );
      // File status flags (O_NONBLOCK of the FIFO read end) belong to the description that travelled.
      assert.deepEqual(
        r.fds.map((f) => f.nonblocking),
        [false, true, false],
      );
      assert.equal(r.fileContent, `file written by node ${tok}`);
      assert.equal(r.pipeContent, `pipe data from node ${tok}`);
      const expected = `python wrote this into the pipe ${tok}`;
      assert.equal(r.wrote, Buffer.byteLength(expected));
      // Exactly the three descriptors arrived (no stray duplicates), and closing them restored the count.
      assert.equal(r.holding, r.connected + 3);
      assert.equal(r.after, r.before);

      await channel.close();
      await exitedCleanly(child);
      // Every writer is gone now (Node closed its copy, Python exited): the data, then EOF.
      assert.equal(readToEof(fromPythonR), expected);
      release(fromPythonR);
    });
    // Python send_fds() then shutdown(SHUT_WR); the channel then closes.
    it("allowHalfOpen: after Python's shutdown(SHUT_WR) the channel emits 'end' and still replies with an fd", async () => {
      const before = openFds();
      const sock = tmpPath('halfclose.sock');
      const tok = token();
      const server = await listen(sock, { type: 'stream', allowHalfOpen: true });
      const accepted = once(server, 'connection') as Promise<[Channel]>;
      const child = python(['halfclose', sock, tok]);
      const [ch] = await accepted;
      const ended = once(ch, 'end'); // the request and the EOF may come in one read
      const request = await ch.receive({ timeout: 5000 });
      assert.equal(request.data.toString(), `request ${tok}`);
      assert.equal(request.fds.length, 1);
      closeFd(request.fds[0]!);
      // Reading is flow-controlled: the EOF (when it came in a read of its own) is read only while
      // someone asks for the next message; at end-of-file that receive() rejects and 'end' follows.
      await assert.rejects(ch.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
      await ended;
      assert.equal(ch.closed, false, "half-open: 'end' left the channel open for the reply");
      const reply = fs.openSync('/dev/null', 'r');
      await ch.send({ data: `reply ${tok}`, fds: [reply] });
      fs.closeSync(reply);
      await ch.close();
      const done = await child.expect<{ reply: string; kinds: string[]; before: Record<string, string>; after: Record<string, string> }>(
        'done',
      );
      assert.equal(done.reply, `reply ${tok}`);
      assert.deepEqual(done.kinds, ['char']);
      assert.deepEqual(done.after, done.before, "Python's descriptors are back to where they were");
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      await server.close();
      await settle();
      assert.deepEqual(newFds(before, openFds()), []);
    });
  });

  describe('memfd and eventfd made by Python', () => {
    it('cross to Node and work there; the memfd is relayed on to a Node child (recvFd)', async () => {
      const sock = tmpPath('memfd.sock');
      const relay = tmpPath('relay.sock');
      const tok = token();
      const server = await listenStream(sock);
      const connection = nextHeldConnection(server);
      const py = python(['memfd', sock, tok]);
      const channel = await connection;
      await server.close();

      const m = await channel.receive({ timeout: 10_000 });
      assert.equal(m.data.toString(), `memfd+eventfd ${tok}`);
      assert.equal(m.fds.length, 2);
      hold(...m.fds);
      const [memfd, efd] = m.fds as [number, number];
      const sent = await py.expect<{ content: string; before: number }>('sent');
      const content = Buffer.from(sent.content, 'hex');
      assert.ok(content.length > 5 && content[0] === 0 && content[4] === 0xff);

      // memfd: a regular file, shared with Python; Python's write left the offset at the end.
      const memInfo = inspect(memfd);
      assert.equal(memInfo.kind, 'file');
      assert.equal(memInfo.cloexec, true);
      assert.equal(fs.readlinkSync(`/proc/self/fd/${memfd}`), `/memfd:fdpass-interop-${tok} (deleted)`);
      assert.equal(fs.fstatSync(memfd).size, content.length);
      const buf = Buffer.alloc(content.length + 16);
      assert.equal(fs.readSync(memfd, buf, 0, buf.length, 0), content.length);
      assert.deepEqual(buf.subarray(0, content.length), content);

      // eventfd: an anonymous inode (no file type bits: 'unknown'), counter 42 as Python created it.
      const evInfo = inspect(efd);
      assert.equal(evInfo.kind, 'unknown');
      assert.equal(evInfo.cloexec, true);
      assert.equal(evInfo.nonblocking, true);
      assert.equal(fs.readlinkSync(`/proc/self/fd/${efd}`), 'anon_inode:[eventfd]');
      const counter = Buffer.alloc(8);
      assert.equal(fs.readSync(efd, counter, 0, 8, null), 8);
      assert.equal(counter.readBigUInt64LE(0), 42n);
      // Reading reset the counter; what Node adds now is exactly what Python reads from its own copy.
      assert.equal(fs.writeSync(efd, u64le(7n)), 8);
      py.send({ cmd: 'read-eventfd' });
      const ev = await py.expect<{ value: number }>('eventfd');
      assert.equal(ev.value, 7, 'Node and Python share one eventfd counter');
      release(efd);

      // Relay the memfd to a Node child, which reads it at 0 and appends to it.
      const node = holdChild(runFixture('recv-fd', [relay, `+child ${tok}`]));
      await node.expect('listening');
      await sendFd(relay, memfd, `relayed memfd ${tok}`);
      const got = await node.expect<{
        data: string;
        kind: string;
        cloexec: boolean;
        link: string;
        size: number;
        content: string;
        appended: number;
        fd: number;
        holding: number[];
        after: number[];
      }>('received');
      await exitedCleanly(node);
      assert.equal(got.data, `relayed memfd ${tok}`);
      assert.equal(got.kind, 'file');
      assert.equal(got.cloexec, true);
      assert.equal(got.link, `/memfd:fdpass-interop-${tok} (deleted)`);
      assert.equal(got.size, content.length);
      assert.equal(got.content, content.toString('hex'));
      assert.deepEqual(got.holding, [got.fd], 'the child holds exactly the one descriptor it received');
      assert.deepEqual(got.after, [], 'the child closed it, and recvFd closed its listener and connection');
      // The child's write landed in the same memory Node (and Python) see.
      const appended = `+child ${tok}`;
      assert.equal(got.appended, appended.length);
      const whole = Buffer.alloc(content.length + appended.length + 16);
      const n = fs.readSync(memfd, whole, 0, whole.length, 0);
      assert.deepEqual(whole.subarray(0, n), Buffer.concat([content, Buffer.from(appended)]));
      release(memfd);

      await channel.close();
      const done = await py.expect<{ before: number; after: number }>('done');
      assert.equal(done.after, done.before, 'Python is back to the descriptors it started with');
      await exitedCleanly(py);
    });
  });

  describe('descriptor hygiene across processes', () => {
    it('descriptors Node received are CLOEXEC: a child spawned later inherits only what it is handed', async () => {
      const sock = tmpPath('hygiene.sock');
      const file = tmpPath('hygiene.txt');
      const tok = token();
      // What any child of this process inherits anyway (stdio, and whatever non-CLOEXEC descriptors
      // this test runner was itself started with), before anything is received.
      const control = python(['listfds']);
      const baseline = (await control.expect<{ fds: Record<string, string> }>('fds')).fds;
      await exitedCleanly(control);
      const server = await listenStream(sock);
      const connection = nextHeldConnection(server);
      const py = python(['send', sock, file, tok]);
      const channel = await connection;
      await server.close();
      const m = await channel.receive({ timeout: 10_000 });
      assert.equal(m.fds.length, 2);
      hold(...m.fds);
      const [pipeFd, fileFd] = m.fds as [number, number];
      for (const fd of m.fds) assert.equal(inspect(fd).cloexec, true, `fd ${fd} is CLOEXEC`);
      const pipeTarget = fs.readlinkSync(`/proc/self/fd/${pipeFd}`);
      const fileTarget = fs.readlinkSync(`/proc/self/fd/${fileFd}`);
      assert.match(pipeTarget, /^pipe:\[\d+\]$/);
      assert.equal(fileTarget, fs.realpathSync(file));

      // The file goes to the child on purpose as its fd 3 (a positive control for the listing); the
      // pipe is not handed over, and libuv's spawn closes nothing itself: only CLOEXEC keeps it out.
      const lister = python(['listfds'], { stdio: ['pipe', 'pipe', 'pipe', fileFd] });
      const listing = await lister.expect<{ fds: Record<string, string> }>('fds');
      await exitedCleanly(lister);
      const targets = Object.entries(listing.fds);
      assert.equal(listing.fds['3'], fileTarget, 'the descriptor handed over explicitly is there');
      const where = (target: string): string[] => targets.filter(([, t]) => t === target).map(([fd]) => fd);
      assert.deepEqual(where(fileTarget), ['3'], 'the file only where it was handed over');
      assert.deepEqual(where(pipeTarget), [], 'the received pipe did not leak into the child');
      const beyondFd3 = (fds: Record<string, string>): Array<[string, string]> => Object.entries(fds).filter(([fd]) => Number(fd) > 3);
      assert.deepEqual(beyondFd3(listing.fds), beyondFd3(baseline), 'nothing inherited that a child before the exchange lacked');

      assert.equal(readToEof(pipeFd), `pipe data from python ${tok}`);
      release(pipeFd, fileFd);
      await channel.close();
      const done = await py.expect<{ before: number; after: number }>('done');
      assert.equal(done.after, done.before);
      await exitedCleanly(py);
    });
  });
});
