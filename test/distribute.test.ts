// distribute(): a listening socket's connections accepted in native batches and handed round robin to
// channels as descriptors. The workers here are this process's ends of socket pairs (their peers read
// what a worker would), the clients real TCP connections; a python3 child connects while this
// process is at its descriptor limit.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { closeFds, distribute, dupFd, fdOf, inspect, socketPair, toSocket, type Channel, type Distributor } from 'fdpass';
import { exitedCleanly, runFixture, spawnJson, type Fixture } from './helpers/children';
import { assertFdsBack, openFds, withNoFreeDescriptor } from './helpers/fds';
import { closeServer, listenTcp, portOf } from './helpers/sockets';
import { tmpPath } from './helpers/tmp';
import { sleep, waitFor } from './helpers/wait';

/** Connects to 127.0.0.1:port and says `hello <i>`; resolves once connected. */
async function client(port: number, i: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {}); // reset when a test closes its connection unread
  await once(s, 'connect');
  s.write(`hello ${i}\n`);
  return s;
}

/** Reads `peer` (a worker's end) until `n` connections have arrived; the fds of each message. */
async function connections(peer: Channel, n: number): Promise<number[][]> {
  const messages: number[][] = [];
  while (messages.flat().length < n) {
    const m = await peer.receive();
    if (m.fds.length > 0) messages.push(m.fds);
  }
  return messages;
}

/** What the client of a received connection said first (the connection then closes). */
async function greeting(fd: number): Promise<string> {
  const s = toSocket(fd);
  s.setEncoding('utf8');
  let got = '';
  for await (const chunk of s) {
    got += chunk as string;
    if (got.includes('\n')) break;
  }
  s.destroy();
  return got.trim();
}

/**
 * `n` TCP clients of 127.0.0.1:port in a python3 child, connecting when told (`send({})`), reporting
 * { event: 'connected' }, and closing at the next line: a client this process's descriptor limit
 * cannot stop.
 */
function clientsOnCue(port: number, n: number): Fixture {
  const py = [
    'import socket,sys,json',
    'sys.stdin.readline()',
    'cs=[socket.create_connection(("127.0.0.1",int(sys.argv[1]))) for _ in range(int(sys.argv[2]))]',
    'print(json.dumps({"event":"connected"}),flush=True)',
    'sys.stdin.readline()',
  ].join('\n');
  return spawnJson('python3', ['-c', py, String(port), String(n)]);
}

const errorsOf = (d: Distributor): Error[] => {
  const errors: Error[] = [];
  d.on('error', (err: Error) => errors.push(err));
  return errors;
};

describe('distribute()', () => {
  it('hands TCP connections round robin, each alive and whole; the server stops listening itself', async () => {
    const before = openFds();
    const server = await listenTcp();
    const port = portOf(server);
    const [a, aPeer] = socketPair();
    const [b, bPeer] = socketPair();
    const d = distribute(server, [a, b]);
    assert.equal(server.listening, false, 'the net.Server no longer listens: the distributor does');
    assert.equal(inspect(d.fd).socket?.listening, true);
    const clients: net.Socket[] = [];
    for (let i = 0; i < 20; i++) clients.push(await client(port, i));
    const [toA, toB] = await Promise.all([connections(aPeer, 10), connections(bPeer, 10)]);
    assert.equal(d.distributed, 20);
    const fds = [...toA.flat(), ...toB.flat()];
    for (const fd of fds) {
      const s = inspect(fd).socket!;
      assert.deepEqual([s.domain, s.type, s.connected, s.local], ['inet', 'stream', true, { family: 'IPv4', address: '127.0.0.1', port }]);
    }
    const said = await Promise.all(fds.map(greeting));
    assert.deepEqual(said.sort(), Array.from({ length: 20 }, (_, i) => `hello ${i}`).sort(), 'every client once');
    await d.close();
    assert.equal(d.fd, -1);
    await assert.rejects(client(port, 99), { code: 'ECONNREFUSED' }, 'closed: nothing listens');
    for (const s of clients) s.destroy();
    for (const ch of [a, aPeer, b, bPeer]) ch.destroy();
    await closeServer(server);
    await assertFdsBack(before, 'after close()');
  });

  it('a Unix net.Server keeps its socket path; a descriptor becomes its own, closed by close()', async () => {
    const before = openFds();
    const unix = net.createServer();
    const where = tmpPath('d.sock');
    await new Promise<void>((resolve) => unix.listen(where, resolve));
    const [a, aPeer] = socketPair({ type: 'stream' });
    const d = distribute(unix, [a]);
    const c = net.connect(where); // the path is still there: Node's close() would have unlinked it
    c.on('error', () => {});
    await once(c, 'connect');
    c.write('unix\n');
    const got = (await connections(aPeer, 1)).flat()[0]!;
    assert.equal(inspect(got).socket?.domain, 'unix');
    assert.equal(await greeting(got), 'unix');
    await d.close();
    assert.equal(fs.existsSync(where), false, "close() removes the server's socket file");
    c.destroy();
    // A descriptor (here a TCP listener's duplicate, its server closed): the distributor's from now on.
    const tcp = await listenTcp();
    const port = portOf(tcp);
    const fd = dupFd(fdOf(tcp));
    await closeServer(tcp);
    const d2 = distribute(fd, [a]);
    assert.equal(d2.fd, fd);
    const t = await client(port, 7);
    assert.equal(await greeting((await connections(aPeer, 1)).flat()[0]!), 'hello 7');
    await d2.close();
    assert.throws(() => inspect(fd), { code: 'EBADF' }, 'the descriptor was closed with it');
    t.destroy();
    a.destroy();
    aPeer.destroy();
    await assertFdsBack(before, 'after close()');
  });

  it('skips a channel whose queue is full, pauses with none to take more, resumes on drain and on add()', async () => {
    const before = openFds();
    const server = await listenTcp();
    const port = portOf(server);
    const [full, fullPeer] = socketPair();
    const [b, bPeer] = socketPair();
    const junk = Buffer.alloc(32 * 1024, 1);
    while (full.write({ data: junk })) {}
    const d = distribute(server, [full, b]);
    const errors = errorsOf(d);
    const clients = [await client(port, 0), await client(port, 1), await client(port, 2)];
    closeFds((await connections(bPeer, 3)).flat());
    // The only channel left has a full queue: accepting waits; the client is connected in the backlog.
    b.destroy();
    bPeer.destroy();
    await once(b, 'close');
    clients.push(await client(port, 3));
    await sleep(200);
    assert.equal(d.distributed, 3, 'not accepted while no channel can take more');
    // Its peer reads: 'drain', and the connection that waited goes to it.
    const arrived = connections(fullPeer, 1);
    closeFds((await arrived).flat());
    assert.equal(d.distributed, 4);
    // Every channel gone: an error says so, accepting waits for add().
    full.destroy();
    fullPeer.destroy();
    await once(full, 'close');
    assert.deepEqual(
      errors.map((e) => (e as Error & { code: string }).code),
      ['ERR_FDPASS_CLOSED'],
    );
    clients.push(await client(port, 4));
    const [c, cPeer] = socketPair();
    d.add(c);
    assert.deepEqual(d.channels, [c]);
    const late = (await connections(cPeer, 1)).flat()[0];
    assert.equal(await greeting(late!), 'hello 4');
    await d.close();
    assert.throws(() => d.add(c), { code: 'ERR_FDPASS_CLOSED' });
    for (const s of clients) s.destroy();
    c.destroy();
    cPeer.destroy();
    await closeServer(server);
    await assertFdsBack(before, 'after close()');
  });

  it('a channel whose worker is gone (EPIPE) or that is closing leaves the rotation: its share goes to the others', async () => {
    const before = openFds();
    const server = await listenTcp();
    const port = portOf(server);
    // `gone`: its worker died; this process does not read it, so only a write can notice.
    const [gone, gonePeer] = socketPair();
    gonePeer.destroy();
    // `closing`: close() waits for the messages it queued (send() does not set writableNeedDrain).
    const [closing, closingPeer] = socketPair();
    const junk = Buffer.alloc(32 * 1024, 1);
    const wmem = Number(fs.readFileSync('/proc/sys/net/core/wmem_default', 'utf8'));
    const queued = Array.from({ length: Math.ceil(wmem / junk.length) + 4 }, () => closing.send({ data: junk }).catch((err: Error) => err));
    const closed = closing.close();
    assert.equal(closing.closed, false, 'still sending what it queued');
    const [b, bPeer] = socketPair();
    const d = distribute(server, [gone, closing, b]);
    const errors = errorsOf(d);
    const toB: number[] = [];
    bPeer.on('message', (m: { fds: number[] }) => toB.push(...m.fds));
    const clients: net.Socket[] = [];
    let cut = 0; // connections closed by the primary instead
    for (let i = 0; i < 6; i++) {
      const c = await client(port, i);
      c.once('end', () => cut++).resume();
      clients.push(c);
      await waitFor(`client ${i} handed on or closed`, () => toB.length + cut === i + 1);
    }
    const codes = errors.map((e) => (e as Error & { code: string }).code).join(', ');
    assert.equal(toB.length, 6, `every connection reaches the live worker (errors: ${codes})`);
    assert.deepEqual(
      (await Promise.all(toB.map(greeting))).sort(),
      Array.from({ length: 6 }, (_, i) => `hello ${i}`),
    );
    assert.equal(d.distributed, 6);
    assert.deepEqual(d.channels, [b], 'both left the rotation');
    assert.deepEqual(
      errors.map((e) => (e as Error & { code: string }).code),
      ['EPIPE'],
      'the worker that is gone is reported once; a channel being closed is not an error',
    );
    assert.equal(gone.closed, false, 'the channel stays open: it is yours');
    // The last worker goes too: the next connection has no channel (closed), and each is said once.
    bPeer.destroy();
    const last = await client(port, 6);
    let lastCut = false;
    last.once('end', () => (lastCut = true)).resume();
    await waitFor('the last connection closed', () => lastCut);
    assert.deepEqual(
      errors.map((e) => (e as Error & { code: string }).code),
      ['EPIPE', 'EPIPE', 'ERR_FDPASS_CLOSED'],
    );
    assert.deepEqual(d.channels, []);
    clients.push(last);
    await d.close();
    for (const s of clients) s.destroy();
    closingPeer.destroy();
    await closed;
    await Promise.all(queued);
    for (const ch of [gone, b]) ch.destroy();
    await closeServer(server);
    await assertFdsBack(before, 'after close()');
  });

  it('bad arguments throw with a Node-style code; the listener is left as it was', async () => {
    const before = openFds();
    const server = await listenTcp();
    const [a, aPeer] = socketPair();
    const [gone, gonePeer] = socketPair();
    gone.destroy();
    const file = fs.openSync(tmpPath('f.txt'), 'w');
    const notListening = new net.Server();
    const call = distribute as (listener: unknown, channels: unknown) => Distributor;
    const bad: Array<[unknown, unknown, string]> = [
      [server, undefined, 'ERR_INVALID_ARG_TYPE'],
      [server, a, 'ERR_INVALID_ARG_TYPE'],
      [server, [], 'ERR_INVALID_ARG_VALUE'],
      [server, [{}], 'ERR_INVALID_ARG_TYPE'],
      [server, [a, gone], 'ERR_FDPASS_CLOSED'],
      [{}, [a], 'ERR_INVALID_ARG_TYPE'],
      ['3', [a], 'ERR_INVALID_ARG_TYPE'],
      [-1, [a], 'ERR_OUT_OF_RANGE'],
      [1.5, [a], 'ERR_OUT_OF_RANGE'],
      [notListening, [a], 'ERR_FDPASS_NO_FD'],
      [file, [a], 'ERR_FDPASS_WRONG_FD_KIND'],
      [a.fd, [a], 'ERR_FDPASS_WRONG_FD_KIND'],
    ];
    for (const [listener, channels, code] of bad) {
      assert.throws(() => call(listener, channels), { code }, `distribute(${String(listener)}, ${String(channels)})`);
    }
    // The server's own descriptor is watched by Node already: refused, not taken.
    assert.throws(() => call(fdOf(server), [a]), { code: 'EEXIST' });
    assert.equal(server.listening, true, 'the server still listens');
    assert.equal(inspect(file).kind, 'file', 'a refused descriptor stays open');
    const d = distribute(server, [a]);
    assert.throws(() => d.add({} as Channel), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => d.add(gone), { code: 'ERR_FDPASS_CLOSED' });
    await d.close();
    fs.closeSync(file);
    for (const ch of [a, aPeer, gonePeer]) ch.destroy();
    await closeServer(server);
    await assertFdsBack(before, 'after the refusals');
  });

  it("closed from its 'error' listener at EMFILE: it closes, nothing throws", async () => {
    const before = openFds();
    const server = await listenTcp();
    const port = portOf(server);
    const [a, aPeer] = socketPair();
    const d = distribute(server, [a]);
    const child = clientsOnCue(port, 1);
    const uncaught: Error[] = [];
    const onUncaught = (err: Error): number => uncaught.push(err);
    const mochaHandlers = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException').on('uncaughtException', onUncaught);
    const codes: string[] = [];
    d.on('error', (err: Error & { code: string }) => {
      codes.push(err.code);
      void d.close();
    });
    try {
      await withNoFreeDescriptor(async () => {
        child.send({});
        await child.expect('connected');
        await waitFor('the EMFILE error', () => codes.length > 0);
        await sleep(50);
      });
    } finally {
      process.removeListener('uncaughtException', onUncaught);
      for (const h of mochaHandlers) process.on('uncaughtException', h);
    }
    assert.deepEqual(uncaught.map(String), [], 'nothing thrown');
    assert.deepEqual(codes, ['EMFILE']);
    assert.equal(d.fd, -1, 'closed');
    child.send({});
    await child.exited;
    a.destroy();
    aPeer.destroy();
    await closeServer(server);
    await assertFdsBack(before, 'after close()');
  });

  it("keeps its process alive while accepting pauses after EMFILE; unref()'d it does not", async () => {
    const child = runFixture('distribute-alone');
    const { port } = await child.expect<{ port: number }>('full');
    const clients = [await client(port, 0), await client(port, 1)]; // connected, waiting in the backlog
    assert.equal((await child.expect<{ code: string }>('paused')).code, 'EMFILE');
    assert.equal((await child.expect<{ distributed: number }>('exit')).distributed, 2, 'both handed on after the pause');
    await exitedCleanly(child);
    for (const s of clients) s.destroy();
    const unrefd = runFixture('distribute-alone', ['unref']);
    await unrefd.expect('listening');
    assert.equal((await unrefd.expect<{ distributed: number }>('exit')).distributed, 0);
    await exitedCleanly(unrefd, 5000, "an unref()'d distributor");
  });

  it('at its descriptor limit: EMFILE is reported, accepting pauses, and the waiting connections come after', async () => {
    const before = openFds();
    const server = await listenTcp();
    const port = portOf(server);
    const [a, aPeer] = socketPair();
    const d = distribute(server, [a]);
    const errors = errorsOf(d);
    const child = clientsOnCue(port, 3);
    await withNoFreeDescriptor(async () => {
      child.send({});
      await child.expect('connected');
      while (errors.length === 0) await sleep(10);
      assert.equal(d.distributed, 0);
    });
    assert.equal((errors[0] as Error & { code: string }).code, 'EMFILE');
    closeFds((await connections(aPeer, 3)).flat());
    assert.equal(d.distributed, 3);
    child.send({});
    await child.exited;
    await d.close();
    a.destroy();
    aPeer.destroy();
    await closeServer(server);
    await assertFdsBack(before, 'after the limit');
  });
});
