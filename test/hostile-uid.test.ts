// Peers of another uid (nobody), as a shared host has them: a client of a ChannelServer, a hand-off
// taker sending descriptors nobody asked for, and a process of another user that serves the control
// path a take() connects to, a datagram sender that bindDgram's allow refuses. Each is refused with a clear error, the serving side goes on serving,
// and the descriptors the stranger sent never stay open here (the root hooks check the fd map too).
// (The NOTIFY_SOCKET of `fdpass run` is tested in supervisor.test.ts; a nobody taker of a hand-off
// in handoff.test.ts.)
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { once } from 'node:events';
import {
  bindDgram,
  closeFd,
  closeFds,
  recvFd,
  handoff,
  inspect,
  listen,
  connect,
  HANDOFF_PROTOCOL_VERSION,
  type Channel,
  type PeerCredentials,
} from 'fdpass';
import { runFixture, spawnJson, type Fixture } from './helpers/children';
import { assertFdsBack, holdsFile, newFds, openFds, settle } from './helpers/fds';
import { get } from './helpers/http';
import { NOBODY, asNobody, markerFile, openToOthers } from './helpers/foreign';
import { requires, root } from './helpers/requires';
import { tmpPath } from './helpers/tmp';

interface PeerReport {
  pid: number;
  uid: number;
  answer: 'eof' | 'reset' | 'epipe' | 'timeout' | 'data';
  data?: string;
}

describe('peers of another uid (nobody)', function () {
  before(function () {
    requires(this, root('running a child as another user'));
  });

  for (const type of ['stream', 'seqpacket'] as const) {
    // Default allow; 'reject' gives its credentials; a root client is served after it.
    it(`${type}: a nobody client of a ChannelServer is rejected; the fds it sent are never ours`, async () => {
      openToOthers();
      const marker = markerFile();
      const sock = tmpPath('server.sock');
      const server = await listen(sock, { type, mode: 0o666 }); // only the credential check stops it
      const rejected: PeerCredentials[] = [];
      server.on('reject', (c: PeerCredentials) => rejected.push(c));
      const served: Channel[] = [];
      server.on('connection', (ch: Channel) => served.push(ch));

      const peer = asNobody(['connect', type, sock, marker]);
      const r = await peer.expect<PeerReport>('connect');
      assert.deepEqual((await peer.exited).code, 0, peer.stderr());
      assert.equal(r.uid, NOBODY);
      assert.ok(['eof', 'reset', 'epipe'].includes(r.answer), `the server hung up on it (saw ${r.answer})`);
      assert.deepEqual(rejected, [{ pid: r.pid, uid: NOBODY, gid: NOBODY }]);
      assert.deepEqual(served, [], 'no channel was handed to the application');
      assert.equal(holdsFile(openFds(), marker), 0, 'a descriptor the stranger sent is open here');

      // The server keeps serving: a client of our own uid connects and is heard.
      const accepted = once(server, 'connection') as Promise<[Channel]>;
      const client = await connect(sock, { type });
      const [conn] = await accepted;
      await client.send({ data: 'after the stranger' });
      assert.equal((await conn.receive({ timeout: 5000 })).data.toString(), 'after the stranger');
      await client.close();
      await conn.close();
      await server.close();
    });
  }

  // Let in by allow; the old process serves on and hands off to the next taker.
  it("a nobody taker's hello with 3 fds is refused with ERR_FDPASS_HANDOFF_PROTOCOL, the fds closed", async () => {
    openToOthers();
    const marker = markerFile();
    const control = tmpPath('control.sock');
    const web = http.createServer((_req, res) => res.end(`old ${process.pid}`));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const port = (web.address() as { port: number }).port;
    const hs = await handoff.serve(control, { web }, { allow: () => true, mode: 0o666 });
    const rollback = once(hs, 'rollback') as Promise<[Error & { code: string }, PeerCredentials]>;

    const peer = asNobody(['hello', control, marker, String(HANDOFF_PROTOCOL_VERSION)]);
    const r = await peer.expect<PeerReport>('hello');
    assert.equal((await peer.exited).code, 0, peer.stderr());
    assert.equal(r.answer, 'data');
    const answer = JSON.parse(r.data!) as { type: string; code: string; message: string };
    assert.equal(answer.type, 'error');
    assert.equal(answer.code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
    assert.match(answer.message, /'hello' message carried 3 fds/);
    const [err, who] = await rollback;
    assert.equal(err.code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
    assert.equal(who.uid, NOBODY);
    assert.equal(holdsFile(openFds(), marker), 0, 'a descriptor the stranger sent is open here');
    assert.equal(hs.busy, false);
    assert.equal(await get(port), `old ${process.pid}`, 'the old process still serves');

    // And the next (well-formed) taker gets the listener.
    const fresh = runFixture('handoff-new', [control, 'many']);
    const got = await fresh.expect<{ ports: Record<string, number> }>('many');
    assert.deepEqual(got.ports, { web: port });
    assert.equal((await fresh.exited).code, 0, fresh.stderr());
    await hs.drained;
    assert.equal(web.listening, false, 'our copy was closed after the hand-off');
  });

  describe('take() from a control path served by another user', () => {
    let old: Fixture | undefined;

    afterEach(async () => {
      if (old !== undefined && old.proc.exitCode === null && old.proc.signalCode === null) {
        old.proc.kill('SIGKILL');
        await old.exited;
      }
      old = undefined;
    });

    // A world-writable directory (as /tmp, or a /run directory with loose permissions): another user
    // can create the control socket before us, serve real listeners on it and wait for a take().
    async function nobodyServes(control: string): Promise<{ old: Fixture; port: number }> {
      fs.chmodSync(path.dirname(control), 0o1777);
      const f = runFixture('handoff-old', [control, 'http'], { uid: NOBODY, gid: NOBODY });
      const { ports } = await f.expect<{ ports: { web: number } }>('serving');
      assert.equal(fs.statSync(control).uid, NOBODY);
      return { old: f, port: ports.web };
    }

    // No listener is received; the other process keeps serving.
    it('is refused by default with ERR_FDPASS_HANDOFF_REFUSED naming the uid', async () => {
      const control = tmpPath('control.sock');
      const served = await nobodyServes(control);
      old = served.old;
      const before = openFds();
      const err = await handoff.take(control, { timeout: 5000 }).then(
        () => assert.fail('take() accepted listeners from another user'),
        (e: Error & { code?: string }) => e,
      );
      assert.equal(err.code, 'ERR_FDPASS_HANDOFF_REFUSED');
      assert.match(err.message, /is not allowed/);
      assert.match(err.message, new RegExp(`uid ${NOBODY}`));
      // Nothing arrived here: no hello went out, so no listener was sent.
      await settle();
      assert.deepEqual(newFds(before, openFds()), []);
      assert.equal(await get(served.port), `old ${old.pid}`, 'the other process still serves');
      old.send({ cmd: 'exit' });
      assert.equal((await old.exited).code, 0, old.stderr());
    });

    // allow: (peer) => peer.uid === nobody; the other process drains and exits.
    it('is accepted when allow says so; the listener moves and the other process exits', async () => {
      const control = tmpPath('control.sock');
      const served = await nobodyServes(control);
      old = served.old;
      const inherited = await handoff.take(control, { timeout: 5000, allow: (peer) => peer.uid === NOBODY });
      assert.ok(inherited !== null);
      assert.deepEqual(inherited.peer, { pid: old.pid, uid: NOBODY, gid: NOBODY });
      const server = await inherited.server(
        'web',
        http.createServer((_req, res) => res.end(`new ${process.pid}`)),
      );
      assert.deepEqual(await inherited.ready({ timeout: 5000 }), { acknowledged: true });
      assert.equal(await get(served.port), `new ${process.pid}`);
      await old.expect('drained');
      assert.equal((await old.exited).code, 0, old.stderr());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
  });

  describe("bindDgram's allow: a datagram from another uid", () => {
    // A Python sender (any uid can run it: no file of ours to read) of one datagram with one fd.
    const SEND = [
      'import os, socket, sys',
      'fd = os.open("/dev/null", os.O_RDONLY)',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(sys.argv[1])',
      'socket.send_fds(s, [sys.argv[2].encode()], [fd])',
    ].join('\n');
    const NOBODY = 65534;

    async function sendAs(sock: string, text: string, uid?: number): Promise<number> {
      const child = spawnJson('python3', ['-c', SEND, sock, text], uid === undefined ? {} : { uid, gid: uid });
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      return child.pid;
    }

    // An allowed one arrives with message.cred.
    it("a datagram from a refused uid is dropped, its fd closed, and 'reject' names the sender", async () => {
      const before = openFds();
      const sock = tmpPath('notify.sock');
      fs.chmodSync(path.dirname(sock), 0o755); // let the other user reach the socket file
      const refused: PeerCredentials[] = [];
      const receiver = await bindDgram(sock, { mode: 0o666, allow: (c) => c.uid === 0 });
      receiver.on('reject', (c: PeerCredentials) => refused.push(c));
      const nobodyPid = await sendAs(sock, 'from nobody', NOBODY);
      const rootPid = await sendAs(sock, 'from root');
      const m = await receiver.receive({ timeout: 5000 });
      assert.equal(m.data.toString(), 'from root');
      assert.deepEqual(m.cred, { pid: rootPid, uid: 0, gid: 0 });
      assert.equal(m.fds.length, 1);
      assert.equal(inspect(m.fds[0]!).kind, 'char');
      closeFds(m.fds);
      assert.deepEqual(refused, [{ pid: nobodyPid, uid: NOBODY, gid: NOBODY }]);
      await receiver.close();
      await assertFdsBack(before, 'after the refused datagram was dropped and the channel closed');
    });

    it("recvFd(path, { type: 'dgram', allow }) waits past a refused sender's datagram for an allowed one", async () => {
      const before = openFds();
      const sock = tmpPath('recv.sock');
      fs.chmodSync(path.dirname(sock), 0o755);
      const seen: number[] = [];
      const got = recvFd(sock, {
        type: 'dgram',
        mode: 0o666,
        timeout: 10000,
        allow: (c) => {
          seen.push(c.uid);
          return c.uid === 0;
        },
      });
      for (let i = 0; i < 50 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 10));
      await sendAs(sock, 'from nobody', NOBODY);
      await sendAs(sock, 'from root');
      const { fd, data } = await got;
      assert.equal(data.toString(), 'from root');
      closeFd(fd);
      assert.deepEqual(seen, [NOBODY, 0]);
      await assertFdsBack(before, 'after recvFd');
    });
  });
});
