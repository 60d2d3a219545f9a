// Connection migration (serve() with migrate) against a new process that answers wrongly or not at all,
// careless calls of offer(), a new process that cannot adopt, and HTTP/1.1 connections caught in the
// middle of something. The old side is this process (so the root hooks' descriptor check covers it,
// besides each test's own); the new side a real process: a fixture, or one that speaks the protocol by
// hand (fixtures/migration-taker.ts). Each connection must end up in exactly one place: served here,
// served there, or closed; and the counts must say which.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { inspect } from 'node:util';
import { handoff, type HandoffServer, type MigrationCounts } from 'fdpass';
import { selfSignedCert } from '../bench/apps/tls-cert';
import { runFixture, stopFixture, type Fixture } from './helpers/children';
import { assertFdsBack, openFds, withNoFreeDescriptor } from './helpers/fds';
import { LineClient, RawHttp } from './helpers/migration-clients';
import { freePort } from './helpers/net';
import { tmpPath } from './helpers/tmp';
import { serveLines } from './fixtures/lines';

const me = process.pid;

interface OldSide {
  control: string;
  hs: HandoffServer;
  /** The server side of each connection, in the order accepted. */
  accepted: net.Socket[];
  /** The port, or the Unix socket's path. */
  where: number | string;
  handedOff: Promise<unknown>;
  drained: Promise<MigrationCounts>;
  /** Resolves once `n` requests for /hold (answered only at release()) have arrived. */
  held(n: number): Promise<void>;
  release(): void;
}

/**
 * This process as the old one: 'lines' (fixtures/lines.ts, answering `old <pid> <n> <line>`) on TCP or
 * a Unix socket, or 'http' (`old <pid>`; /early at once, before the request's body;
 * a POST's body echoed after it; /hold once released), offered as 'web' with migrate.
 */
async function oldSide(kind: 'lines' | 'lines-unix' | 'http' = 'lines', drainTimeout = 5000): Promise<OldSide> {
  const accepted: net.Socket[] = [];
  const holding: Array<() => void> = [];
  const arrived = new EventEmitter();
  const server =
    kind === 'http'
      ? http.createServer((req, res) => {
          const who = `old ${me}`;
          if (req.url === '/hold') {
            holding.push(() => res.end(who));
            return void arrived.emit('held');
          }
          if (req.url === '/early') return void res.end(`${who} early`);
          let body = '';
          req.setEncoding('utf8');
          req.on('data', (d: string) => (body += d));
          req.on('end', () => res.end(body === '' ? who : `${who} ${body}`));
        })
      : net.createServer((socket) => void serveLines(socket, 0, 'old'));
  server.on('connection', (socket: net.Socket) => accepted.push(socket));
  const where = kind === 'lines-unix' ? tmpPath('web.sock') : 0;
  await new Promise<void>((resolve) =>
    typeof where === 'string' ? server.listen(where, resolve) : server.listen(0, '127.0.0.1', resolve),
  );
  const control = tmpPath('control.sock');
  const hs = await handoff.serve(control, { web: server }, { migrate: true, readyTimeout: 5000, drainTimeout, idleGrace: 200 });
  return {
    control,
    hs,
    accepted,
    where: typeof where === 'string' ? where : (server.address() as net.AddressInfo).port,
    // Not events.once(): an 'error' event would reject them.
    handedOff: new Promise((resolve) => hs.once('handoff', resolve)),
    drained: new Promise((resolve) => hs.once('drained', resolve)),
    held: async (n) => {
      while (holding.length < n) await once(arrived, 'held');
    },
    release: () => holding.splice(0).forEach((answer) => answer()),
  };
}

/** The hand-written new process's next report of a message of `type` from the old process. */
async function message(t: Fixture, type: string): Promise<{ id?: number; fds: number[] }> {
  for (;;) {
    const m = await t.expect<{ type: string; id?: number; fds: number[] }>('message');
    if (m.type === type) return m;
  }
}

const closed = (client: { socket: net.Socket; closed: boolean }): Promise<unknown> =>
  client.closed ? Promise.resolve() : once(client.socket, 'close');

/** Resolves once `text` is written to the kernel (on loopback: in the peer's receive queue). */
const written = (socket: net.Socket, text: string): Promise<void> =>
  new Promise((resolve, reject) => socket.write(text, (err) => (err ? reject(err) : resolve())));

/** A few turns of the event loop: enough for a socket that reads to read what is in its queue. */
async function turns(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** The taker closes the connections it adopted, their clients see them close, it exits, and the old side has its fds back. */
async function closeAdopted(t: Fixture, clients: LineClient[], before: ReturnType<typeof openFds>): Promise<void> {
  t.send({ cmd: 'closeFds' });
  await Promise.all(clients.map(closed));
  await stopFixture(t);
  await assertFdsBack(before, 'the old side');
}

async function lineClients(where: number | string, n: number): Promise<LineClient[]> {
  const clients = Array.from({ length: n }, () => new LineClient(where));
  await Promise.all(clients.map((c) => c.connected()));
  for (const [i, c] of clients.entries()) assert.equal(await c.ask(`${i}\n`), `old ${me} 1 ${i}`);
  return clients;
}

describe('hand-off with migrate: a new process that answers wrongly', () => {
  it('answers for ids never offered, and repeated answers, are ignored: each connection moves, counted once', async () => {
    const before = openFds();
    const old = await oldSide();
    const [a, b] = await lineClients(old.where, 2);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const movedA = old.hs.offer(old.accepted[0]!);
    const first = await message(t, 'connection');
    const movedB = old.hs.offer(old.accepted[1]!);
    const second = await message(t, 'connection');
    assert.deepEqual([first.id, first.fds.length, second.id, second.fds.length], [1, 1, 2, 1]);
    for (const msg of [
      { type: 'adopted', id: 3 },
      { type: 'refused', id: 1000, reason: 'never offered' },
      { type: 'adopted', id: 1 },
      { type: 'adopted', id: 1 },
      { type: 'refused', id: 1, reason: 'after adopting it' },
      { type: 'adopted', id: 2 }, // after the others: once it counts, they were all read
    ]) {
      t.send({ cmd: 'send', msg });
    }
    assert.deepEqual(await Promise.all([movedA, movedB]), [true, true]);
    assert.deepEqual(await old.drained, { migrated: 2, failed: 0, drained: 0, pending: 0 });
    await message(t, 'end');
    assert.equal(a!.closed || b!.closed, false, 'the new process holds both connections');
    await closeAdopted(t, [a!, b!], before);
  });

  const wrongs: Array<[string, (t: Fixture, listeners: number[]) => void]> = [
    ['an id that is negative', (t) => t.send({ cmd: 'send', msg: { type: 'adopted', id: -1 } })],
    ['an id that is not an integer', (t) => t.send({ cmd: 'send', msg: { type: 'adopted', id: 1.5 } })],
    ['an id beyond 2^53', (t) => t.send({ cmd: 'send', msg: { type: 'adopted', id: 2 ** 60 } })],
    ['an id that is a string', (t) => t.send({ cmd: 'send', msg: { type: 'adopted', id: '1' } })],
    ['a refusal without its reason', (t) => t.send({ cmd: 'send', msg: { type: 'refused', id: 1 } })],
    ['an answer of an unknown type', (t) => t.send({ cmd: 'send', msg: { type: 'taken', id: 1 } })],
    ['a message that is not JSON', (t) => t.send({ cmd: 'raw', text: 'adopted 1' })],
    ['a JSON array', (t) => t.send({ cmd: 'raw', text: '[{"v":1,"type":"adopted","id":1}]' })],
    ['another protocol version', (t) => t.send({ cmd: 'raw', text: '{"v":2,"type":"adopted","id":1}' })],
    ['a message larger than the receive buffer', (t) => t.send({ cmd: 'big' })],
    ['an answer carrying a descriptor', (t, l) => t.send({ cmd: 'raw', text: '{"v":1,"type":"adopted","id":1}', fds: l })],
    ["an 'error' message", (t) => t.send({ cmd: 'send', msg: { type: 'error', code: 'ERR_FDPASS_HANDOFF_PROTOCOL', message: 'no' } })],
    ['closing the control connection', (t) => t.send({ cmd: 'close' })],
    ['dying (SIGKILL)', (t) => t.proc.kill('SIGKILL')],
  ];
  for (const [label, wrong] of wrongs) {
    it(`${label}: the connection offered is closed here, the others served on`, async () => {
      const before = openFds();
      const old = await oldSide();
      const [a, b] = await lineClients(old.where, 2);
      const t = runFixture('migration-taker', [old.control]);
      const { listeners } = await t.expect<{ listeners: number[] }>('ready-sent');
      await old.handedOff;
      const [sa, sb] = old.accepted;
      sa!.pause();
      const moved = old.hs.offer(sa!, { state: { n: 1 } });
      await message(t, 'connection');
      wrong(t, listeners);
      assert.equal(await moved, false);
      assert.equal(sa!.destroyed, true, 'closed here: the new process may have read from it');
      await assert.rejects(old.hs.offer(sb!), { code: 'ERR_FDPASS_CLOSED' });
      assert.equal(await b!.ask('z\n'), `old ${me} 2 z`, 'the connection not offered is served here still');
      await b!.close();
      assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 1, pending: 0 });
      const dead = label.startsWith('dying');
      if (dead) await t.exited;
      else t.send({ cmd: 'closeFds' });
      await closed(a!); // the last copy of it, the new process's, is closed
      if (!dead) await stopFixture(t);
      await assertFdsBack(before, 'the old side');
    });
  }

  it('one that never answers: offer() resolves false after the drain deadline, the connection closed here', async () => {
    const before = openFds();
    const old = await oldSide('lines', 1000);
    const [a] = await lineClients(old.where, 1);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const moved = old.hs.offer(old.accepted[0]!);
    await message(t, 'connection');
    assert.equal(await moved, false);
    assert.equal(old.accepted[0]!.destroyed, true);
    assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    await closeAdopted(t, [a!], before);
  });
});

/**
 * The old side offers its first connection from its own 'data' handler (where a line protocol would
 * decide), then calls resume() and adds a 'data' listener: the line 'x' is answered here. Node reads
 * on at the next tick (Readable's maybeReadMore: Socket#_read, the handle's readStart). Returns the
 * socket, what that listener saw, offer()'s promise and the socket's bytesRead at the offer.
 */
async function offeredFromItsDataHandler(old: OldSide, a: LineClient) {
  const sa = old.accepted[0]!;
  const seen: string[] = [];
  let offer: { outcome: Promise<boolean>; read: number } | undefined;
  sa.once('data', () => {
    offer = { outcome: old.hs.offer(sa), read: sa.bytesRead };
    sa.resume();
    sa.on('data', (d: string) => seen.push(d));
  });
  assert.equal(await a.ask('x\n'), `old ${me} 2 x`);
  return { sa, seen, ...offer! };
}

describe('hand-off with migrate: careless calls of offer()', () => {
  it('bad arguments reject with a Node-style code, nothing moves, the connection is served here still', async () => {
    const before = openFds();
    const old = await oldSide();
    const [a, gone] = await lineClients(old.where, 2);
    const [sa, sGone] = old.accepted;
    const offer = old.hs.offer.bind(old.hs) as (socket: unknown, opts?: unknown) => Promise<boolean>;
    await assert.rejects(offer(sa), { code: 'ERR_FDPASS_CLOSED' }, 'before the hand-off');
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const circular: { self?: unknown } = {};
    circular.self = circular;
    const bad: Array<[unknown, unknown, string]> = [
      [{}, undefined, 'ERR_INVALID_ARG_TYPE'],
      [null, undefined, 'ERR_INVALID_ARG_TYPE'],
      [(sa as unknown as { _handle: { fd: number } })._handle.fd, undefined, 'ERR_INVALID_ARG_TYPE'],
      [new net.Server(), undefined, 'ERR_INVALID_ARG_TYPE'],
      [sa, 'state', 'ERR_INVALID_ARG_TYPE'],
      [sa, { unread: 'abc' }, 'ERR_INVALID_ARG_TYPE'],
      [sa, { unread: [1, 2] }, 'ERR_INVALID_ARG_TYPE'],
      [sa, { state: circular }, 'ERR_INVALID_ARG_VALUE'],
      [sa, { state: { n: 10n } }, 'ERR_INVALID_ARG_VALUE'],
      [sa, { state: () => 1 }, 'ERR_INVALID_ARG_VALUE'],
      [sa, { state: Symbol('s') }, 'ERR_INVALID_ARG_VALUE'],
    ];
    for (const [socket, opts, code] of bad) {
      const p = offer(socket, opts);
      assert.ok(p instanceof Promise, 'a promise, never a throw');
      await assert.rejects(p, { code }, `offer(${inspect(socket, { depth: 0 })}, ${inspect(opts, { depth: 0 })})`);
    }
    sGone!.destroy();
    await assert.rejects(offer(sGone), { code: 'ERR_FDPASS_NO_FD' }, 'a destroyed socket');
    // Over 48 KiB of state or unread bytes: false, nothing sent, nothing held.
    assert.equal(await offer(sa, { state: 'x'.repeat(60 * 1024) }), false);
    assert.equal(await offer(sa, { unread: Buffer.alloc(10 * 1024 * 1024, 'x') }), false);
    assert.equal(await a!.ask('b\n'), `old ${me} 2 b`, 'served here, reading not held');
    // The taker saw no connection: the next one it sees is the first id.
    const moved = offer(sa);
    assert.equal((await message(t, 'connection')).id, 1);
    t.send({ cmd: 'send', msg: { type: 'refused', id: 1, reason: 'no thanks' } });
    assert.equal(await moved, false);
    assert.equal(await a!.ask('c\n'), `old ${me} 3 c`, 'refused: served here, reading resumed');
    await a!.close();
    await closed(gone!);
    assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 1, pending: 0 });
    await assert.rejects(offer(new net.Socket()), { code: 'ERR_FDPASS_CLOSED' }, "after 'drained'");
    await stopFixture(t);
    await assertFdsBack(before, 'the old side');
  });

  it('a connection of a server not handed off, kept here (too large to send), counts as drained', async () => {
    const before = openFds();
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1); // the hand-off's drain lasts while it is open
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const other = net.createServer();
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const accepted = once(other, 'connection');
    const client = net.connect((other.address() as net.AddressInfo).port, '127.0.0.1');
    const [socket] = (await accepted) as [net.Socket];
    assert.equal(await old.hs.offer(socket, { state: 'x'.repeat(60 * 1024) }), false);
    socket.destroy();
    client.destroy();
    await a!.close();
    assert.deepEqual(await old.drained, { migrated: 0, failed: 0, drained: 2, pending: 0 });
    await new Promise<void>((resolve) => other.close(() => resolve()));
    await stopFixture(t);
    await assertFdsBack(before, 'the old side');
  });

  it('the same socket offered twice at once: the second rejects ERR_FDPASS_HANDOFF_BUSY, one fd goes', async () => {
    const before = openFds();
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const sa = old.accepted[0]!;
    sa.pause();
    const first = old.hs.offer(sa, { state: { n: 1 } });
    await assert.rejects(old.hs.offer(sa, { state: { n: 1 } }), { code: 'ERR_FDPASS_HANDOFF_BUSY' });
    assert.equal((await message(t, 'connection')).id, 1);
    t.send({ cmd: 'send', msg: { type: 'adopted', id: 1 } });
    assert.equal(await first, true);
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    const end = await message(t, 'end');
    assert.equal(end.fds.length, 0, 'no second connection came before the end');
    await closeAdopted(t, [a!], before);
  });

  it('offered again after a refusal and then adopted, a connection counts once: as migrated', async () => {
    const before = openFds();
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const sa = old.accepted[0]!;
    sa.pause();
    const refused = old.hs.offer(sa);
    t.send({ cmd: 'send', msg: { type: 'refused', id: (await message(t, 'connection')).id, reason: 'not yet' } });
    assert.equal(await refused, false);
    const adopted = old.hs.offer(sa);
    t.send({ cmd: 'send', msg: { type: 'adopted', id: (await message(t, 'connection')).id } });
    assert.equal(await adopted, true);
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    await closeAdopted(t, [a!], before);
  });

  it("offered from its 'data' handler and resumed there: nothing more read here, a line sent meanwhile goes with it", async () => {
    const before = openFds();
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const { sa, seen, outcome, read } = await offeredFromItsDataHandler(old, a!);
    const offered = await message(t, 'connection');
    await written(a!.socket, 'y\n');
    await turns();
    assert.equal(sa.bytesRead, read, 'the old process read nothing while the offer was in flight');
    t.send({ cmd: 'send', msg: { type: 'adopted', id: offered.id } });
    assert.equal(await outcome, true);
    t.send({ cmd: 'read', fd: offered.fds[0], bytes: 2 });
    assert.equal((await t.expect<{ text: string }>('read')).text, 'y\n', 'the line, complete, read from the descriptor there');
    assert.deepEqual(seen, [], "the old side's 'data' listener saw nothing");
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    await closeAdopted(t, [a!], before);
  });

  it("offered from its 'data' handler, resumed there, refused: it reads here again, the line sent meanwhile answered once", async () => {
    const before = openFds();
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const { sa, seen, outcome, read } = await offeredFromItsDataHandler(old, a!);
    const offered = await message(t, 'connection');
    await written(a!.socket, 'y\n');
    await turns();
    assert.equal(sa.bytesRead, read, 'the old process read nothing while the offer was in flight');
    t.send({ cmd: 'send', msg: { type: 'refused', id: offered.id, reason: 'not now' } });
    assert.equal(await outcome, false);
    assert.equal(await a!.next(), `old ${me} 3 y`, 'answered here');
    assert.equal(await a!.ask('z\n'), `old ${me} 4 z`, 'once: the next answer is the next line');
    assert.equal(seen.join(''), 'y\nz\n');
    await a!.close();
    assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    await stopFixture(t);
    await assertFdsBack(before, 'the old side');
  });

  // Paused with its buffer full, Node stops reading a socket (readStop); resume() empties the buffer
  // and then asks the handle to read again: during the offer that is only noted, and done on refusal.
  it('not reading when offered (buffer full), resumed during the offer and refused: it reads again here after', async () => {
    const before = openFds();
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const sa = old.accepted[0]!;
    sa.pause();
    const half = 'z'.repeat(sa.readableHighWaterMark);
    await written(a!.socket, half);
    while (sa.readableLength < half.length) await turns();
    const refused = old.hs.offer(sa);
    const read = sa.bytesRead;
    sa.resume();
    const offered = await message(t, 'connection');
    await written(a!.socket, `${half}\n`);
    await turns();
    assert.equal(sa.bytesRead, read, 'the old process read nothing while the offer was in flight');
    t.send({ cmd: 'send', msg: { type: 'refused', id: offered.id, reason: 'not now' } });
    assert.equal(await refused, false);
    assert.equal(await a!.next(), `old ${me} 2 ${half}${half}`, 'the rest read here after the refusal');
    await a!.close();
    assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    await stopFixture(t);
    await assertFdsBack(before, 'the old side');
  });

  it('writes not yet flushed: ERR_FDPASS_HANDOFF_BUSY; once flushed the socket moves, no byte lost', async () => {
    const before = openFds();
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    const sa = old.accepted[0]!;
    sa.pause();
    // The client reads nothing for now: 8 MiB cannot all reach the kernel.
    a!.socket.pause();
    const size = 8 * 1024 * 1024;
    sa.write(Buffer.alloc(size, 'y'));
    assert.ok(sa.writableLength > 0);
    await assert.rejects(old.hs.offer(sa), { code: 'ERR_FDPASS_HANDOFF_BUSY' });
    // The client reads it all; once Node has handed the last byte to the kernel, the socket moves.
    let received = 0;
    a!.socket.removeAllListeners('data');
    a!.socket.on('data', (d: string) => (received += Buffer.byteLength(d)));
    a!.socket.resume();
    await once(sa, 'drain');
    const moved = old.hs.offer(sa);
    assert.equal((await message(t, 'connection')).id, 1);
    t.send({ cmd: 'send', msg: { type: 'adopted', id: 1 } });
    assert.equal(await moved, true);
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    t.send({ cmd: 'closeFds' });
    await closed(a!);
    assert.equal(received, size, 'every byte written before the move reached the client');
    await stopFixture(t);
    await assertFdsBack(before, 'the old side');
  });

  it('an HTTP/2 connection in clear text (h2c) rejects ERR_INVALID_ARG_VALUE and keeps serving', async () => {
    const before = openFds();
    let raw: net.Socket | undefined;
    const h2c = http2.createServer((_req, res) => res.end('h2 here'));
    h2c.on('connection', (s: net.Socket) => (raw = s));
    await new Promise<void>((resolve) => h2c.listen(0, '127.0.0.1', resolve));
    const client = http2.connect(`http://127.0.0.1:${(h2c.address() as net.AddressInfo).port}`);
    const ask = async (): Promise<string> => {
      const req = client.request({ ':path': '/' });
      req.setEncoding('utf8');
      let body = '';
      req.on('data', (d: string) => (body += d));
      await once(req, 'end');
      return body;
    };
    assert.equal(await ask(), 'h2 here');
    const old = await oldSide();
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    await assert.rejects(old.hs.offer(raw!), { code: 'ERR_INVALID_ARG_VALUE', message: /HTTP\/2 session/ });
    assert.equal(await ask(), 'h2 here', 'the session still serves');
    client.close();
    await once(client, 'close');
    assert.deepEqual(await old.drained, { migrated: 0, failed: 0, drained: 0, pending: 0 });
    await stopFixture(t);
    await new Promise<void>((resolve) => h2c.close(() => resolve()));
    await assertFdsBack(before, 'the old side');
  });

  it('a TLS connection, and the TCP socket under it, reject ERR_INVALID_ARG_VALUE and stay usable', async () => {
    const before = openFds();
    const { key, cert } = selfSignedCert(path.dirname(tmpPath('x')));
    let raw: net.Socket | undefined;
    const secure = tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (s) => s.pipe(s));
    secure.on('connection', (s: net.Socket) => (raw = s));
    await new Promise<void>((resolve) => secure.listen(0, '127.0.0.1', resolve));
    const accepted = once(secure, 'secureConnection');
    const client = tls.connect({ port: (secure.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false });
    await once(client, 'secureConnect');
    const [tlsSocket] = (await accepted) as [tls.TLSSocket];
    const old = await oldSide();
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    await assert.rejects(old.hs.offer(tlsSocket), { code: 'ERR_INVALID_ARG_VALUE' });
    await assert.rejects(old.hs.offer(raw!), { code: 'ERR_INVALID_ARG_VALUE' }, 'the TCP socket under a TLS session');
    client.write('still here');
    assert.equal(String((await once(client, 'data'))[0]), 'still here');
    client.end();
    await once(client, 'close');
    assert.deepEqual(await old.drained, { migrated: 0, failed: 0, drained: 0, pending: 0 });
    await stopFixture(t);
    await new Promise<void>((resolve) => secure.close(() => resolve()));
    await assertFdsBack(before, 'the old side');
  });

  it('a Unix-domain connection moves with its state and unread bytes', async () => {
    const old = await oldSide('lines-unix');
    const [a] = await lineClients(old.where, 1);
    a!.socket.write('pa');
    const fresh = runFixture('migration-new', [old.control, 'lines']);
    await old.handedOff;
    const sa = old.accepted[0]!;
    sa.pause();
    assert.equal(await old.hs.offer(sa, { state: { n: 1 }, unread: Buffer.from('pa') }), true);
    await fresh.expect('ready');
    assert.equal(await a!.ask('rt\n'), `new ${fresh.pid} 2 part`);
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    await a!.close();
    await stopFixture(fresh);
    fs.unlinkSync(old.where as string); // a Unix server adopted from an fd does not know its path
  });

  // What the listener throws: an Error, or a value String() cannot show (an object with no prototype).
  const careless: Array<[string, () => unknown, string]> = [
    [
      "a 'handoff' listener that throws is reported ('error') and the connections move all the same",
      () => new Error('a careless handler'),
      'a careless handler',
    ],
    [
      "a 'handoff' listener that throws an object without toString: reported, the connections move",
      () => Object.create(null),
      '[Object: null prototype] {}',
    ],
  ];
  for (const [title, thrown, reported] of careless) {
    it(title, async () => {
      const old = await oldSide('http');
      const errors: Error[] = [];
      old.hs.on('error', (err: Error) => errors.push(err));
      old.hs.on('handoff', () => {
        throw thrown();
      });
      const client = new RawHttp(old.where as number);
      await client.connected();
      assert.equal(await client.get(), `old ${me}`);
      const fresh = runFixture('migration-new', [old.control, 'http']);
      const ready = await fresh.expect<{ acknowledged: boolean; connections: MigrationCounts }>('ready');
      assert.deepEqual([ready.acknowledged, ready.connections], [true, { migrated: 1, failed: 0, drained: 0, pending: 0 }]);
      assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
      assert.deepEqual(
        errors.map((e) => e.message),
        [reported],
      );
      assert.equal(await client.get(), `new ${fresh.pid}`);
      await client.close();
      await stopFixture(fresh);
    });
  }
});

describe('hand-off with migrate: a new process that cannot adopt', () => {
  it("its 'connection' listener throws: refused, the connection served here, its fd closed there", async () => {
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const fresh = runFixture('migration-new', [old.control, 'throw']);
    const adopted = await fresh.expect<{ fds: number }>('adopted');
    await old.handedOff;
    const sa = old.accepted[0]!;
    sa.pause();
    assert.equal(await old.hs.offer(sa, { state: { n: 1 } }), false);
    await fresh.expect('threw');
    sa.resume();
    assert.equal(await a!.ask('b\n'), `old ${me} 2 b`);
    await a!.close();
    assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    const migrated = await fresh.expect<{ counts: MigrationCounts; fds: number }>('migrated');
    assert.deepEqual(migrated.counts, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    assert.equal(migrated.fds, adopted.fds - 1, 'only the listener is left: the control connection closed, the refused fd too');
    await stopFixture(fresh);
  });

  it('one whose server has its maxConnections refuses the connections beyond: they are served here', async () => {
    const old = await oldSide();
    const [a, b] = await lineClients(old.where, 2);
    const fresh = runFixture('migration-new', [old.control, 'lines'], { env: { ...process.env, FDPASS_TEST_MAX_CONNECTIONS: '1' } });
    await old.handedOff;
    const [sa, sb] = old.accepted;
    sa!.pause();
    sb!.pause();
    assert.equal(await old.hs.offer(sa!, { state: { n: 1 } }), true);
    assert.equal(await old.hs.offer(sb!, { state: { n: 1 } }), false);
    sb!.resume();
    assert.equal(await a!.ask('x\n'), `new ${fresh.pid} 2 x`);
    assert.equal(await b!.ask('y\n'), `old ${me} 2 y`);
    await Promise.all([a!.close(), b!.close()]);
    assert.deepEqual(await old.drained, { migrated: 1, failed: 1, drained: 0, pending: 0 });
    await stopFixture(fresh);
  });

  /** Sets the soft RLIMIT_NOFILE of `pid` to its lowest free descriptor number: no descriptor can arrive. */
  function noRoom(pid: number): void {
    const open = openFds(pid);
    let lowest = 0;
    while (open.has(lowest)) lowest++;
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${lowest}:`]);
  }

  it('at its descriptor limit after ready() (MSG_CTRUNC): refused, offer() is false, served here', async () => {
    const old = await oldSide();
    const [a] = await lineClients(old.where, 1);
    const fresh = runFixture('migration-new', [old.control, 'lines'], { env: { ...process.env, FDPASS_TEST_HOLD_READY: '1' } });
    await fresh.expect('adopted');
    noRoom(fresh.pid);
    fresh.send({ cmd: 'ready' });
    assert.deepEqual((await fresh.expect<{ connections: MigrationCounts }>('ready')).connections, {
      migrated: 0,
      failed: 0,
      drained: 0,
      pending: 1,
    });
    const sa = old.accepted[0]!;
    sa.pause();
    assert.equal(await old.hs.offer(sa, { state: { n: 1 } }), false);
    sa.resume();
    assert.equal(await a!.ask('b\n'), `old ${me} 2 b`);
    await a!.close();
    assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    assert.deepEqual((await fresh.expect<{ counts: MigrationCounts }>('migrated')).counts, {
      migrated: 0,
      failed: 1,
      drained: 0,
      pending: 0,
    });
    await stopFixture(fresh);
  });

  it('the old process at its limit when an offer must wait (EMFILE): it stays here, ids stay consecutive, all move', async () => {
    const before = openFds();
    const old = await oldSide();
    // More 40 KiB offers than the control socket's send buffer holds: the last ones must be queued.
    const count = Math.ceil(Number(fs.readFileSync('/proc/sys/net/core/wmem_default', 'utf8')) / (40 * 1024)) + 3;
    const clients = await lineClients(old.where, count);
    const t = runFixture('migration-taker', [old.control]);
    await old.handedOff;
    process.kill(t.pid, 'SIGSTOP'); // reads nothing: the socket's buffer fills
    const unread = Buffer.alloc(30 * 1024, 'u');
    const offer = (s: net.Socket): Promise<boolean> => {
      s.pause();
      return old.hs.offer(s, { state: { n: 1 }, unread });
    };
    // No descriptor can be opened here while they are offered: a queued message's fd cannot be duplicated.
    const first = await withNoFreeDescriptor(() => old.accepted.map(offer));
    process.kill(t.pid, 'SIGCONT');
    const outcome = first.map((p) => {
      const o = { settled: false, moved: false };
      void p.then((moved) => Object.assign(o, { settled: true, moved }));
      return o;
    });
    await new Promise((resolve) => setImmediate(resolve)); // an offer refused at once has resolved by now
    const stayed = outcome.flatMap((o, i) => (o.settled && !o.moved ? [i] : []));
    const sent = count - stayed.length;
    assert.ok(sent > 0 && stayed.length > 0, `some left at once, the others could not be queued (${sent} of ${count} left)`);
    assert.deepEqual(
      stayed,
      Array.from({ length: stayed.length }, (_, i) => sent + i),
      'the ones that stayed are the last',
    );
    // The taker sees the first ones as ids 1, 2, ...; each adopted moves.
    const adopt = async (n: number, from: number): Promise<void> => {
      for (let id = from; id < from + n; id++) {
        assert.equal((await message(t, 'connection')).id, id, 'consecutive ids: none taken by a message that never left');
        t.send({ cmd: 'send', msg: { type: 'adopted', id } });
      }
    };
    await adopt(sent, 1);
    assert.deepEqual(await Promise.all(first.slice(0, sent)), Array(sent).fill(true));
    for (const i of stayed) {
      old.accepted[i]!.resume();
      assert.equal(await clients[i]!.ask('again\n'), `old ${me} 2 again`, 'served here, reading resumed');
    }
    // Offered again with room to spare: they go on with the next ids.
    const second = stayed.map((i) => offer(old.accepted[i]!));
    await adopt(stayed.length, sent + 1);
    assert.deepEqual(await Promise.all(second), Array(stayed.length).fill(true));
    assert.deepEqual(await old.drained, { migrated: count, failed: 0, drained: 0, pending: 0 });
    await closeAdopted(t, clients, before);
  });

  it('at its descriptor limit (MSG_CTRUNC): refused, ready() resolves, the old process drains it', async () => {
    const old = await oldSide('http');
    const client = new RawHttp(old.where as number);
    await client.connected();
    assert.equal(await client.get(), `old ${me}`);
    const fresh = runFixture('migration-new', [old.control, 'http'], { env: { ...process.env, FDPASS_TEST_HOLD_READY: '1' } });
    await fresh.expect('adopted');
    noRoom(fresh.pid);
    fresh.send({ cmd: 'ready' });
    const ready = await fresh.expect<{ acknowledged: boolean; connections: MigrationCounts }>('ready');
    assert.deepEqual([ready.acknowledged, ready.connections], [true, { migrated: 0, failed: 1, drained: 0, pending: 0 }]);
    // Drained here: its next answer says `Connection: close`, then it is closed.
    assert.equal(await client.get(), `old ${me}`);
    await closed(client);
    assert.deepEqual(await old.drained, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    assert.deepEqual((await fresh.expect<{ counts: MigrationCounts }>('migrated')).counts, {
      migrated: 0,
      failed: 1,
      drained: 0,
      pending: 0,
    });
    await stopFixture(fresh);
  });
});

describe('hand-off with migrate: HTTP/1.1 connections caught mid-request', () => {
  it('a request with `Connection: close` in flight at the hand-off: answered and closed here, never moved', async () => {
    const old = await oldSide('http');
    const client = new RawHttp(old.where as number);
    await client.connected();
    client.socket.write('GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await old.held(1);
    const fresh = runFixture('migration-new', [old.control, 'http']);
    const ready = await fresh.expect<{ connections: MigrationCounts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 0, failed: 0, drained: 0, pending: 1 });
    old.release();
    assert.deepEqual(await old.drained, { migrated: 0, failed: 0, drained: 1, pending: 0 });
    assert.deepEqual(await client.answers(1), [`old ${me}`]);
    await closed(client);
    await stopFixture(fresh);
  });

  it('requests pipelined while the connection is in flight are not read here: they go with the descriptor', async () => {
    const before = openFds();
    const old = await oldSide('http');
    const client = new RawHttp(old.where as number);
    await client.connected();
    assert.equal(await client.get(), `old ${me}`);
    const t = runFixture('migration-taker', [old.control]);
    const offered = await message(t, 'connection'); // idle: sent as soon as the new process was ready
    const sa = old.accepted[0]!;
    const read = sa.bytesRead;
    const requests = 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n';
    await written(client.socket, requests);
    await turns(); // on loopback the bytes are in the server socket once written: these turns would read them
    assert.equal(sa.bytesRead, read, 'the old process read nothing more');
    t.send({ cmd: 'read', fd: offered.fds[0], bytes: Buffer.byteLength(requests) });
    assert.equal((await t.expect<{ text: string }>('read')).text, requests);
    t.send({ cmd: 'send', msg: { type: 'adopted', id: offered.id } });
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.deepEqual(client.bodies, [`old ${me}`], 'no answer from the old process');
    t.send({ cmd: 'closeFds' });
    await closed(client);
    await stopFixture(t);
    await assertFdsBack(before, 'the old side');
  });

  it('a body half-sent at the hand-off is read here to its end; the connection then moves', async () => {
    const old = await oldSide('http');
    const client = new RawHttp(old.where as number);
    await client.connected();
    client.socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345');
    const fresh = runFixture('migration-new', [old.control, 'http']);
    const ready = await fresh.expect<{ connections: MigrationCounts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 0, failed: 0, drained: 0, pending: 1 });
    client.socket.write('67890');
    assert.deepEqual(await client.answers(1), [`old ${me} 1234567890`]);
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.equal(await client.get(), `new ${fresh.pid}`);
    assert.equal(client.closed, false);
    await client.close();
    await stopFixture(fresh);
  });

  it('answered before its body has all arrived: the rest of the body is read here, not parsed there', async () => {
    const old = await oldSide('http');
    const client = new RawHttp(old.where as number);
    await client.connected();
    client.socket.write('POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345');
    assert.deepEqual(await client.answers(1), [`old ${me} early`]);
    const fresh = runFixture('migration-new', [old.control, 'http']);
    const ready = await fresh.expect<{ connections: MigrationCounts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 0, failed: 0, drained: 0, pending: 1 });
    client.socket.write('67890');
    assert.deepEqual(await old.drained, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.equal(await client.get(), `new ${fresh.pid}`, 'one answer, to the GET: the body bytes were no request');
    assert.equal(client.bodies.length, 2);
    await client.close();
    await stopFixture(fresh);
  });
});

describe('self-upgrade with migrate: offer() from the upgrader', () => {
  // How the 'upgraded' handler fails (FDPASS_TEST_THROW_UPGRADED), and the 'error' it is reported as.
  const cases: Array<{ throws?: string; title: string; reported?: string }> = [
    { title: "connections offered in the 'upgraded' handler move to the successor with their state" },
    {
      throws: '1',
      title: "an 'upgraded' handler that throws: upgrade() resolves, 'error' reports it, the connection moves",
      reported: 'a careless handler',
    },
    // String() of such a value throws: the report must not, or upgrade() rejects after the take-over.
    {
      throws: 'null-proto',
      title: "a handler that throws an object without toString: upgrade() resolves, 'error' reports it",
      reported: '[Object: null prototype] {}',
    },
    // Its throw goes where a listener's throw goes (uncaught, on the next tick), not into upgrade().
    {
      throws: 'error-throws',
      title: "an 'error' listener that throws too: upgrade() resolves, the throw is uncaught",
      reported: 'a careless handler',
    },
    // The successor runs on and takes over whatever the handler does: the upgrade must stand too.
    {
      throws: 'upgrade',
      title: "an 'upgrade' handler that throws: upgrade() resolves, 'error' reports it, 'drained' comes",
      reported: 'a careless upgrade handler',
    },
  ];
  for (const { throws, title, reported } of cases) {
    it(title, async () => {
      const port = await freePort();
      const env = { ...process.env, ...(throws !== undefined ? { FDPASS_TEST_THROW_UPGRADED: throws } : {}) };
      const gen1 = runFixture('upgrade-lines', [String(port)], { env });
      await gen1.expect('serving');
      const client = new LineClient(port);
      await client.connected();
      assert.equal(await client.ask('a\n'), `gen ${gen1.pid} 1 a`);
      gen1.proc.kill(throws !== undefined ? 'SIGUSR2' : 'SIGHUP'); // SIGUSR2: the fixture calls up.upgrade()
      // gen1's and its successor's reports share one stdout, in whichever order they come.
      const seen = new Map<string, Record<string, unknown>>();
      const wanted = ['serving', 'drained'];
      if (throws !== undefined) wanted.push('upgrade-resolved', 'upgrader-error');
      if (throws === 'error-throws') wanted.push('uncaught');
      while (!wanted.every((e) => seen.has(e))) {
        const m = await gen1.next<Record<string, unknown>>();
        if (['error', 'offer-failed', 'upgrade-rejected'].includes(String(m.event))) assert.fail(JSON.stringify(m));
        seen.set(String(m.event), m);
      }
      assert.deepEqual(seen.get('offered'), { event: 'offered', moved: true });
      assert.deepEqual(seen.get('drained')!.counts, { migrated: 1, failed: 0, drained: 0, pending: 0 });
      const s2 = seen.get('serving') as { pid: number };
      if (throws !== undefined) {
        assert.equal((seen.get('upgrade-resolved') as { pid: number }).pid, s2.pid);
        assert.equal((seen.get('upgrader-error') as { message: string }).message, reported);
      }
      if (throws === 'error-throws') assert.equal((seen.get('uncaught') as { message: string }).message, 'a careless error listener');
      assert.equal(await client.ask('b\n'), `gen ${s2.pid} 2 b`);
      await client.close();
      process.kill(s2.pid, 'SIGTERM');
      await gen1.exited; // its stdout, shared with the successor, ends when both have exited
    });
  }
});
