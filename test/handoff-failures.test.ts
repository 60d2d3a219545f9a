// Hand-off under ordinary operations and odd peers: keep-alive clients, the old process stopped
// mid-overlap, listeners the old process closed itself, malformed messages, probes. The rule: whatever
// happens, one of the two processes keeps serving, and every descriptor has exactly one owner.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  handoff,
  listen,
  connect,
  fdOf,
  HANDOFF_PROTOCOL_VERSION,
  type Channel,
  type FdpassError,
  type ChannelServer,
  type Inheritance,
} from 'fdpass';
import { runFixture, stopFixture, spawnJson, type Fixture } from './helpers/children';
import { leavesSocketFiles, tmpPath } from './helpers/tmp';
import { closeServer, greeter, listenTcp } from './helpers/sockets';
import { sleep, waitFor } from './helpers/wait';
import { docScenario } from './helpers/docs';
import { get, load } from './helpers/http';
import { freePort } from './helpers/net';

interface Serving {
  ports: Record<string, number>;
}

/** A TCP listener on 127.0.0.1 that answers every connection with 'in-process'. */
function listenLocal(): Promise<net.Server> {
  return listenTcp('127.0.0.1', greeter('in-process'));
}

// The kernel's drop counter of the UDP socket bound to 127.0.0.1:port (/proc/net/udp, last column).
function udpDrops(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const line = fs
    .readFileSync('/proc/net/udp', 'utf8')
    .split('\n')
    .find((l) => l.trim().split(/\s+/)[1] === local);
  assert.ok(line, `no UDP socket on 127.0.0.1:${port}`);
  return Number(line.trim().split(/\s+/).at(-1));
}

describe('hand-off under ordinary operations', () => {
  for (const keepAlive of [true, false]) {
    it(`${keepAlive ? 'keep-alive clients' : 'a new connection per request'}: 0 errors across a hand-off`, async () => {
      const control = tmpPath('control.sock');
      const old = runFixture('handoff-old', [control, 'http']);
      const { ports } = await old.expect<Serving>('serving');
      const traffic = load(ports.web!, { workers: 8, keepAlive });
      await sleep(200);
      const fresh = runFixture('handoff-new', [control, 'serve']);
      await fresh.expect('adopted');
      fresh.send({ cmd: 'ready', overlap: 300 });
      assert.deepEqual(await fresh.expect('ready'), { event: 'ready', acknowledged: true });
      await old.expect('drained');
      await sleep(300);
      const r = await traffic.stop();
      assert.deepEqual(r.errors, [], 'no request failed');
      assert.ok((r.bodies.get(`old ${old.pid}`) ?? 0) > 0, 'the old process served');
      assert.ok((r.bodies.get(`new ${fresh.pid}`) ?? 0) > 0, 'the new process served');
      assert.equal((await old.exited).code, 0);
      await stopFixture(fresh);
    });
  }

  it('the drain deadline is honoured within 10 %, and the draining process takes no accept wake-ups', async () => {
    const control = tmpPath('control.sock');
    const drain = 2000;
    const old = runFixture('handoff-old', [control, 'http', '5000', String(drain)]);
    const { ports } = await old.expect<Serving>('serving');
    // A request the old process never answers keeps it draining until the deadline cuts it.
    const hanging = get(ports.web!, '/hang').then(
      () => 'answered',
      (err: Error & { code?: string }) => err.code ?? err.message,
    );
    await sleep(100);
    const fresh = runFixture('handoff-new', [control, 'serve']);
    await fresh.expect('adopted');
    fresh.send({ cmd: 'ready' });
    const handedOff = await old.expect<{ t: number; cpu: number }>('handoff');
    // Meanwhile clients hammer the port: the new process accepts; the old one has no listener to wake.
    const traffic = load(ports.web!, { workers: 4, keepAlive: false });
    const drained = await old.expect<{ t: number; cpu: number }>('drained');
    const r = await traffic.stop();
    const took = drained.t - handedOff.t;
    assert.ok(took >= drain * 0.9 && took <= drain * 1.1, `drained after ${took.toFixed(0)} ms, deadline ${drain} ms`);
    const cpuMs = (drained.cpu - handedOff.cpu) / 1000;
    assert.ok(cpuMs < drain * 0.05, `the draining process used ${cpuMs.toFixed(1)} ms of CPU in ${took.toFixed(0)} ms`);
    assert.deepEqual(r.errors, []);
    assert.ok(r.ok > 0 && r.bodies.get(`new ${fresh.pid}`) === r.ok, 'the new process answered every request');
    assert.equal(await hanging, 'ECONNRESET', 'the deadline cut the request still in flight');
    assert.equal((await old.exited).code, 0);
    await stopFixture(fresh);
  });

  it('UDP at ~10k datagrams/s across 10 hand-offs: each datagram is read once or a kernel drop', async function () {
    leavesSocketFiles(
      /\.sock$/,
      "each hand-off's old process exits without closing its control socket (it is killed or exits after the drain), as a net.Server's path stays at exit",
    );
    this.timeout(60_000);
    const control = tmpPath('control.sock');
    let gen = runFixture('udp-gen', [control]);
    const { port } = await gen.expect<{ port: number }>('serving');
    const sender = dgram.createSocket('udp4');
    let seq = 0;
    const pump = setInterval(() => {
      for (let i = 0; i < 100; i++) {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(seq++);
        sender.send(b, port, '127.0.0.1');
      }
    }, 10);
    const seen: number[] = [];
    for (let n = 0; n < 10; n++) {
      // 10 hand-offs under the sender; one more below once it stopped, so the last generation reports
      await sleep(500);
      const next = runFixture('udp-gen', [control]);
      await next.expect('serving');
      seen.push(...(await gen.expect<{ seen: number[] }>('done')).seen);
      assert.equal((await gen.exited).code, 0);
      gen = next;
    }
    await sleep(300);
    clearInterval(pump);
    const sent = seq;
    await sleep(200); // the last datagrams reach the socket
    const drops = udpDrops(port); // the kernel's count for this socket (receive buffer full), all generations
    const last = runFixture('udp-gen', [control]); // takes over, so the last one drains and reports
    await last.expect('serving');
    seen.push(...(await gen.expect<{ seen: number[] }>('done')).seen);
    await new Promise<void>((resolve) => sender.close(() => resolve()));
    const counts = new Map<number, number>();
    for (const s of seen) counts.set(s, (counts.get(s) ?? 0) + 1);
    assert.equal([...counts.values()].filter((c) => c > 1).length, 0, 'no datagram read twice');
    const missing = sent - counts.size;
    assert.ok(sent > 10_000, `sent ${sent}`);
    assert.equal(
      missing,
      drops,
      `${missing} of ${sent} datagrams missing, ${drops} dropped by the kernel: the rest would be the hand-offs'`,
    );
    last.proc.kill('SIGKILL');
    await last.exited;
    await gen.exited;
  });

  // The restart recipe of docs/handoff.md (scenario hot-restart), run exactly as it is shown there.
  function recipe(): string {
    return docScenario('hot-restart', tmpPath('hot-restart'))['server.mjs']!;
  }

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`docs recipe (hot-restart): ${signal} to the old process in the overlap leaves the new one serving`, async () => {
      const file = recipe();
      const port = await freePort();
      const env = { ...process.env, PORT: String(port), HANDOFF_SOCKET: tmpPath('handoff.sock'), NODE_DEBUG: 'fdpass' };
      const serving = async (f: Fixture): Promise<void> => {
        const line = await f.expect<{ text: string }>('text');
        assert.equal(line.text, `serving on port ${port} as pid ${f.pid}`);
      };
      const gen1 = spawnJson(process.execPath, [file], { env });
      await serving(gen1);
      const traffic = load(port, { workers: 4, keepAlive: false });
      const gen2 = spawnJson(process.execPath, [file], { env });
      await waitFor('generation 2 to take the listener', () => /took 1 listeners/.test(gen2.stderr()), 15_000);
      await sleep(300); // well inside generation 2's 1 s overlap
      gen1.proc.kill(signal);
      const end1 = await gen1.exited;
      await serving(gen2); // ready() resolved and generation 2 offers the next hand-off
      await sleep(300);
      const r = await traffic.stop();
      if (signal === 'SIGTERM') {
        assert.deepEqual(end1, { code: 0, signal: null }, gen1.stderr());
        assert.deepEqual(r.errors, [], 'a SIGTERM costs no request');
      } else {
        // A killed process loses what it held in flight (at most one request per client), nothing else.
        assert.ok(
          r.errors.every((e) => e === 'ECONNRESET'),
          r.errors.join(' '),
        );
        assert.ok(r.errors.length <= 4, r.errors.join(' '));
      }
      assert.equal(await get(port), `hello from ${gen2.pid}\n`);
      assert.ok((r.bodies.get(`hello from ${gen2.pid}\n`) ?? 0) > 0);
      gen2.proc.kill('SIGTERM'); // the recipe's SIGTERM handler: stop, drain, exit 0
      assert.deepEqual(await gen2.exited, { code: 0, signal: null }, gen2.stderr());
    });
  }

  it('a listener the old process closes during the overlap: the old one drains and exits cleanly', async () => {
    leavesSocketFiles(/\.sock$/, 'the Unix listener moved to a server adopted from its fd, which does not know the path to remove');
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'mixed', '5000', tmpPath('app.sock')]);
    await old.expect<Serving>('serving');
    const fresh = runFixture('handoff-new', [control, 'adopt-all']);
    const adopted = await fresh.expect<{ names: number; skipped: unknown[] }>('adopted');
    assert.deepEqual([adopted.names, adopted.skipped], [2, []]);
    old.send({ cmd: 'close', name: 'udp' });
    await old.expect('closed');
    fresh.send({ cmd: 'ready', overlap: 100 });
    assert.deepEqual(await fresh.expect('ready'), { event: 'ready', acknowledged: true });
    await old.expect('drained');
    assert.deepEqual(await old.exited, { code: 0, signal: null }, old.stderr());
    await stopFixture(fresh);
  });

  it('a listener the old process closed before the hand-off is not offered, and says why', async () => {
    leavesSocketFiles(/\.sock$/, "the old process exits without closing its control socket, as a net.Server's path stays at exit");
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'mixed', '5000', tmpPath('app.sock')]);
    await old.expect<Serving>('serving');
    old.send({ cmd: 'close', name: 'udp' });
    await old.expect('closed');
    const fresh = runFixture('handoff-new', [control, 'adopt-all']);
    const adopted = await fresh.expect<{ names: number; skipped: Array<{ name: string; reason: string }> }>('adopted');
    assert.equal(adopted.names, 1);
    assert.deepEqual(adopted.skipped, [{ name: 'udp', reason: 'this process closed it before the hand-off' }]);
    fresh.send({ cmd: 'ready' });
    await fresh.expect('ready');
    await old.expect('drained');
    assert.equal((await old.exited).code, 0);
    await stopFixture(fresh);
  });
});

describe('hand-off when the old process dies', () => {
  // A big old process: its exit closes 18,000 more descriptors, newest first. Opened after serve(),
  // its control connection hangs up milliseconds before its control socket closes; opened before,
  // its control socket closes milliseconds before its listener does.
  const big = (before: number, after: number): NodeJS.ProcessEnv => ({ ...process.env, BALLAST: `${before},${after}` });

  // Connections waiting in the accept queue of the Unix listener at `file` (ss: a listener's Recv-Q).
  function queued(file: string): number {
    const line = execFileSync('ss', ['-xlH', 'src', file], { encoding: 'utf8' }).trim();
    return line === '' ? 0 : Number(line.split(/\s+/)[2]);
  }

  // take() resolves null and the killed old process's listener is closed: its port binds at once.
  async function expectFreshStart(taking: Promise<Inheritance | null>, port: number, old: Fixture): Promise<void> {
    const taken = await taking;
    await taken?.abort();
    assert.equal(taken, null);
    const fresh = net.createServer((c) => c.end('fresh'));
    await new Promise<void>((resolve, reject) => {
      fresh.once('error', reject);
      fresh.listen(port, '127.0.0.1', resolve);
    });
    await closeServer(fresh);
    assert.equal((await old.exited).signal, 'SIGKILL');
  }

  // serve() on that path works at once.
  it('killed during the overlap: ready() resolves once the control socket closed; serve() reuses the path', async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http'], { env: big(0, 18_000) });
    const { ports } = await old.expect<Serving>('serving');
    const inheritance = await handoff.take(control);
    assert.ok(inheritance);
    const server = await inheritance.server(
      'web',
      http.createServer((_req, res) => res.end('new')),
    );
    try {
      old.proc.kill('SIGKILL');
      assert.deepEqual(await inheritance.ready({ overlap: 10_000 }), { acknowledged: false });
      const next = await handoff.serve(control, { web: server }); // no EADDRINUSE from a dying socket
      assert.equal(await get(ports.web!), 'new');
      await next.stop(); // closes the server
    } finally {
      if (server.listening) server.close();
    }
    assert.equal((await old.exited).signal, 'SIGKILL');
  });

  it('killed mid-transfer: take() resolves null once the listener closed; its port binds at once', async () => {
    leavesSocketFiles(/^control\.sock$/, "the old process is SIGKILLed: a killed process cannot remove its control socket's path");
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http'], { env: big(18_000, 0) });
    const { ports } = await old.expect<Serving>('serving');
    old.proc.kill('SIGSTOP'); // it accepts nobody now: the taker's connection waits in its queue
    const taking = handoff.take(control);
    await waitFor("the taker's connection in the old process's queue", () => queued(control) === 1, 15_000);
    old.proc.kill('SIGKILL');
    await expectFreshStart(taking, ports.web!, old);
  });

  // Its control socket refuses the connection.
  it('killed before take() connects: take() resolves null once the listener closed', async () => {
    leavesSocketFiles(/^control\.sock$/, "the old process is SIGKILLed: a killed process cannot remove its control socket's path");
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http'], { env: big(18_000, 0) });
    const { ports } = await old.expect<Serving>('serving');
    old.proc.kill('SIGKILL');
    // Its control socket closes first, its listener (an older descriptor) milliseconds later: take()
    // must start in between, so poll without sleeping.
    for (;;) {
      const refused = await connect(control, { type: 'seqpacket' }).then(
        (ch) => {
          ch.destroy();
          return false;
        },
        (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
      );
      if (refused) break;
    }
    await expectFreshStart(handoff.take(control), ports.web!, old);
  });
});

describe('hand-off with malformed or odd peers', () => {
  // A fake old process: answers the hello with `reply` (data and fds), then waits for the taker to go.
  async function fakeOld(control: string, reply: (ch: Channel) => Promise<void>): Promise<ChannelServer> {
    const server = await listen(control);
    server.on('connection', (ch: Channel) => {
      void ch.receive().then(async (hello) => {
        assert.equal(hello.fds.length, 0);
        await reply(ch);
        await ch.receive().catch(() => {}); // until the taker hangs up
        await ch.close();
      });
    });
    return server;
  }

  const msg = (body: Record<string, unknown>): string => JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION, ...body });

  const cases: Array<[string, (fds: number[]) => { data: string; fds: number[] }]> = [
    ["'done' carrying fds", (fds) => ({ data: msg({ type: 'done', count: 0, skipped: [] }), fds })],
    ["'error' carrying fds", (fds) => ({ data: msg({ type: 'error', code: 'ERR_FDPASS_HANDOFF_BUSY', message: 'x' }), fds })],
    ["'listeners' without entries", (fds) => ({ data: msg({ type: 'listeners' }), fds })],
    [
      "'listeners' naming fewer listeners than fds",
      (fds) => ({ data: msg({ type: 'listeners', entries: [{ name: 'a', kind: 'tcp' }] }), fds }),
    ],
    [
      "'listeners' naming one listener twice",
      (fds) => ({
        data: msg({
          type: 'listeners',
          entries: [
            { name: 'a', kind: 'tcp' },
            { name: 'a', kind: 'tcp' },
          ],
        }),
        fds,
      }),
    ],
    [
      "'listeners' with a bad kind",
      (fds) => ({
        data: msg({
          type: 'listeners',
          entries: [
            { name: 'a', kind: 'x' },
            { name: 'b', kind: 'tcp' },
          ],
        }),
        fds,
      }),
    ],
    ['garbage', (fds) => ({ data: '\u0000not json', fds })],
    ["an 'ack' where listeners belong", (fds) => ({ data: msg({ type: 'ack' }), fds })],
  ];
  for (const [name, make] of cases) {
    // Refused with ERR_FDPASS_HANDOFF_PROTOCOL.
    it(`take() refuses ${name}, closing every fd it carried`, async () => {
      const control = tmpPath('control.sock');
      const a = await listenLocal();
      const b = await listenLocal();
      const fake = await fakeOld(control, async (ch) => {
        const m = make([fdOf(a), fdOf(b)]);
        await ch.send({ data: m.data, fds: m.fds });
      });
      // The fds arrive as new numbers here: the root hook fails this test if one stays open.
      await assert.rejects(handoff.take(control, { timeout: 5000 }), { code: 'ERR_FDPASS_HANDOFF_PROTOCOL' });
      await fake.close();
      await closeServer(a);
      await closeServer(b);
    });
  }

  it("take(): an 'error' with an unknown ERR_FDPASS_ code is ERR_FDPASS_HANDOFF_PROTOCOL naming it", async () => {
    const control = tmpPath('control.sock');
    const fake = await fakeOld(control, async (ch) => {
      await ch.send({ data: msg({ type: 'error', code: 'ERR_FDPASS_FROM_THE_FUTURE', message: 'busy elsewhere' }) });
    });
    await assert.rejects(handoff.take(control, { timeout: 5000 }), (err: FdpassError) => {
      assert.equal(err.code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
      assert.match(err.message, /busy elsewhere \(the peer's code ERR_FDPASS_FROM_THE_FUTURE is unknown here\)/);
      return true;
    });
    await fake.close();
  });

  for (const [label, names] of [
    ['a string', 'web'],
    ['an object', { web: 1 }],
    ['an empty name', ['']],
    ['a name twice', ['web', 'web']],
  ] as const) {
    it(`serve(): a hello whose names is ${label} is a protocol error on both sides`, async () => {
      const control = tmpPath('control.sock');
      const web = await listenLocal();
      const hs = await handoff.serve(control, { web });
      const rollbacks: Array<string | undefined> = [];
      hs.on('rollback', (err: Error & { code?: string }) => rollbacks.push(err.code));
      const ch = await connect(control);
      await ch.send({ data: msg({ type: 'hello', names }) });
      const reply = await ch.receive();
      assert.equal(reply.fds.length, 0);
      assert.equal(JSON.parse(reply.data.toString()).code, 'ERR_FDPASS_HANDOFF_PROTOCOL');
      await ch.close();
      assert.deepEqual(rollbacks, ['ERR_FDPASS_HANDOFF_PROTOCOL']);
      assert.equal(hs.busy, false);
      assert.ok(web.listening, 'nothing was taken: the old process still serves');
      await hs.close();
      await closeServer(web);
    });
  }

  it('take({ names }) with a name twice is refused before connecting', async () => {
    const control = tmpPath('control.sock');
    const web = await listenLocal();
    const hs = await handoff.serve(control, { web });
    let started = 0;
    hs.on('start', () => started++);
    await assert.rejects(handoff.take(control, { names: ['web', 'web'] }), { code: 'ERR_INVALID_ARG_VALUE', name: 'TypeError' });
    await sleep(50);
    assert.equal(started, 0);
    await hs.close();
    await closeServer(web);
  });

  it('a second serve() on a live control path fails with EADDRINUSE and its probe is no taker', async () => {
    const control = tmpPath('control.sock');
    const web = await listenLocal();
    const hs = await handoff.serve(control, { web });
    const events: string[] = [];
    for (const e of ['start', 'rollback', 'handoff']) hs.on(e, () => events.push(e));
    await assert.rejects(handoff.serve(control, { web }), { code: 'EADDRINUSE' });
    assert.equal(hs.busy, false, 'the probe did not make it busy');
    // A real taker right after the probe is served, not told BUSY.
    const inherited = await handoff.take(control);
    assert.ok(inherited);
    assert.deepEqual(inherited.names, ['web']);
    await inherited.abort();
    await sleep(50);
    assert.deepEqual(events, ['start', 'rollback'], 'only the real taker was seen');
    await hs.close();
    await closeServer(web);
  });

  it('50 listeners whose names are 1,000 backslashes each move in batches sized by their JSON', async () => {
    const control = tmpPath('control.sock');
    const servers = await Promise.all(Array.from({ length: 50 }, () => listenLocal()));
    const listeners: Record<string, net.Server> = {};
    servers.forEach((s, i) => (listeners[`${'\\'.repeat(1000)}${i}`] = s));
    const hs = await handoff.serve(control, listeners);
    const inherited = await handoff.take(control);
    assert.ok(inherited);
    assert.deepEqual(inherited.names.sort(), Object.keys(listeners).sort());
    await inherited.abort(); // closes the 50 copies received
    await hs.close();
    await Promise.all(servers.map(closeServer));
  });

  it('take() on a path whose directory does not exist rejects instead of looking like a first start', async () => {
    const dir = tmpPath('no-such-dir');
    await assert.rejects(handoff.take(path.join(dir, 'control.sock')), { code: 'ENOENT', syscall: 'stat', path: dir });
    assert.equal(await handoff.take(tmpPath('control.sock')), null, 'a missing socket file is a first start');
  });
});
