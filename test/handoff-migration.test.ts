// Connections that move during a hand-off (serve() with migrate, issue 23): the client's very TCP
// connection (same local port, never closed) is served by the new process afterwards.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type * as net from 'node:net';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { closeFds, connect, HANDOFF_PROTOCOL_VERSION } from 'fdpass';
import { selfSignedCert } from '../bench/apps/tls-cert';
import { runFixture, stopFixture, spawnJson, type Fixture } from './helpers/children';
import { freePort } from './helpers/net';
import { tmpPath } from './helpers/tmp';
import { LineClient, RawHttp } from './helpers/migration-clients';

interface Counts {
  migrated: number;
  failed: number;
  drained: number;
  pending: number;
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The old process serving `mode` on a TCP port, and a client of `Client`'s kind connected to it. */
async function oldServing<C extends { connected(): Promise<void> }>(
  mode: 'http' | 'lines',
  Client: new (port: number) => C,
): Promise<{ control: string; old: Fixture; client: C }> {
  const control = tmpPath('control.sock');
  const old = runFixture('migration-old', [control, mode]);
  const { port } = await old.expect<{ port: number }>('serving');
  const client = new Client(port);
  await client.connected();
  return { control, old, client };
}

describe('hand-off with migrate: connections move to the new process', () => {
  it("offer(): a connection moves with its state and its unread bytes; the client's connection stays open", async () => {
    const { control, old, client } = await oldServing('lines', LineClient);
    const localPort = client.socket.localPort;
    assert.equal(await client.ask('a\n'), `old ${old.pid} 1 a`);
    client.socket.write('pa'); // a partial line: read by the old process, not processed
    await settle(100);
    const fresh = runFixture('migration-new', [control, 'lines']);
    await fresh.expect('adopted');
    const ready = await fresh.expect<{ acknowledged: boolean; connections: Counts }>('ready');
    assert.equal(ready.acknowledged, true);
    assert.deepEqual(ready.connections, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.deepEqual(await old.expect('offered'), { event: 'offered', moved: true });
    // The rest of the partial line: the new process read the old one's unread "pa" first.
    assert.equal(await client.ask('rt\n'), `new ${fresh.pid} 2 part`);
    assert.equal(await client.ask('b\n'), `new ${fresh.pid} 3 b`);
    assert.equal(client.socket.localPort, localPort);
    assert.equal(client.closed, false);
    const drained = await old.expect<{ counts: Counts }>('drained');
    assert.deepEqual(drained.counts, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.deepEqual((await fresh.expect<{ counts: Counts }>('migrated')).counts, drained.counts);
    assert.equal((await old.exited).code, 0);
    assert.equal(await client.ask('c\n'), `new ${fresh.pid} 4 c`, 'still served after the old process exited');
    await client.close();
    await stopFixture(fresh);
  });

  it('a connection the new process refuses stays with the old one, and its fd is closed in the new one', async () => {
    const { control, old, client } = await oldServing('lines', LineClient);
    assert.equal(await client.ask('a\n'), `old ${old.pid} 1 a`);
    const fresh = runFixture('migration-new', [control, 'refuse']);
    const adopted = await fresh.expect<{ fds: number }>('adopted');
    const ready = await fresh.expect<{ connections: Counts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    assert.deepEqual(await old.expect('offered'), { event: 'offered', moved: false });
    assert.equal(await client.ask('b\n'), `old ${old.pid} 2 b`, 'the old process kept serving it');
    await client.close();
    const drained = await old.expect<{ counts: Counts }>('drained');
    assert.deepEqual(drained.counts, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    const migrated = await fresh.expect<{ counts: Counts; fds: number }>('migrated');
    assert.deepEqual(migrated.counts, drained.counts);
    // At 'adopted' it held the listener and the control connection; now only the listener: the
    // refused connection's fd was closed.
    assert.equal(migrated.fds, adopted.fds - 1);
    assert.equal((await old.exited).code, 0);
    await stopFixture(fresh);
  });
});

describe('hand-off with migrate: HTTP/1.1 keep-alive connections', () => {
  it('an idle keep-alive connection moves: same local port, the next answer from the new pid', async () => {
    const { control, old, client } = await oldServing('http', RawHttp);
    const localPort = client.socket.localPort;
    assert.equal(await client.get(), `old ${old.pid}`);
    const fresh = runFixture('migration-new', [control, 'http']);
    await fresh.expect('adopted');
    const ready = await fresh.expect<{ connections: Counts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.equal(await client.get(), `new ${fresh.pid}`);
    assert.equal(await client.get(), `new ${fresh.pid}`);
    assert.equal(client.socket.localPort, localPort);
    assert.equal(client.closed, false);
    assert.deepEqual((await old.expect<{ counts: Counts }>('drained')).counts, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.equal((await old.exited).code, 0);
    assert.equal(await client.get(), `new ${fresh.pid}`);
    await client.close();
    await stopFixture(fresh);
  });

  it('a keep-alive connection on a Unix socket moves too', async () => {
    const control = tmpPath('control.sock');
    const socketPath = tmpPath('web.sock');
    const old = runFixture('migration-old', [control, 'http-unix', socketPath]);
    await old.expect('serving');
    const client = new RawHttp(socketPath);
    await client.connected();
    assert.equal(await client.get(), `old ${old.pid}`);
    const fresh = runFixture('migration-new', [control, 'http']);
    const ready = await fresh.expect<{ connections: Counts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.equal(await client.get(), `new ${fresh.pid}`);
    assert.equal(client.closed, false);
    assert.equal((await old.exited).code, 0);
    await client.close();
    await stopFixture(fresh);
    fs.unlinkSync(socketPath); // a Unix server adopted from an fd does not know its path
  });

  it('requests pipelined while the connection moves are each answered once, in order, on the same connection', async () => {
    const { control, old, client } = await oldServing('http', RawHttp);
    const localPort = client.socket.localPort;
    let sent = 0;
    let stopped = false;
    // Bursts of two pipelined requests every few ms, from before the hand-off until after it.
    const bursts = (async () => {
      while (!stopped) {
        client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
        sent += 2;
        await settle(3);
      }
    })();
    await client.answers(10);
    const fresh = runFixture('migration-new', [control, 'http']);
    await fresh.expect('ready');
    await old.expect('drained');
    while (!client.bodies.at(-1)?.startsWith('new')) await client.answers(client.bodies.length + 1);
    stopped = true;
    await bursts;
    const bodies = await client.answers(sent);
    await settle(50);
    assert.equal(bodies.length, sent, 'every request answered exactly once');
    const firstNew = bodies.findIndex((b) => b.startsWith('new'));
    assert.ok(firstNew > 0);
    assert.deepEqual(new Set(bodies.slice(0, firstNew)), new Set([`old ${old.pid}`]));
    assert.deepEqual(new Set(bodies.slice(firstNew)), new Set([`new ${fresh.pid}`]), 'no answer from the old process after the move');
    assert.equal(client.socket.localPort, localPort);
    assert.equal(client.closed, false);
    assert.equal((await old.exited).code, 0);
    await client.close();
    await stopFixture(fresh);
  });

  it('a request half-read at the hand-off is finished by the old process; the connection then moves', async () => {
    const { control, old, client } = await oldServing('http', RawHttp);
    assert.equal(await client.get(), `old ${old.pid}`);
    client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n'); // its headers' end is still to come
    await settle(100);
    const fresh = runFixture('migration-new', [control, 'http']);
    const ready = await fresh.expect<{ connections: Counts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 0, failed: 0, drained: 0, pending: 1 });
    client.socket.write('\r\n');
    assert.equal((await client.answers(2))[1], `old ${old.pid}`, 'the old process answered the request it had begun');
    assert.deepEqual((await old.expect<{ counts: Counts }>('drained')).counts, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.equal(await client.get(), `new ${fresh.pid}`);
    assert.equal(client.closed, false);
    assert.equal((await old.exited).code, 0);
    await client.close();
    await stopFixture(fresh);
  });

  it('a TLS keep-alive connection does not move: it is drained as without migrate', async () => {
    const dir = path.dirname(tmpPath('x'));
    selfSignedCert(dir);
    const control = tmpPath('control.sock');
    const old = runFixture('migration-old', [control, 'https', dir]);
    const { port } = await old.expect<{ port: number }>('serving');
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    const get = (): Promise<{ body: string; socket: net.Socket }> =>
      new Promise((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, agent }, (res) => {
            const socket = res.socket; // back in the agent's pool, and off res, by 'end'
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => resolve({ body, socket }));
          })
          .on('error', reject);
      });
    const first = await get();
    assert.equal(first.body, `old ${old.pid}`);
    const closed = once(first.socket, 'close');
    const fresh = runFixture('migration-new', [control, 'https', dir]);
    const ready = await fresh.expect<{ connections: Counts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 0, failed: 0, drained: 0, pending: 1 });
    await closed; // closed by the old process after idleGrace, as a drain does
    assert.deepEqual((await old.expect<{ counts: Counts }>('drained')).counts, { migrated: 0, failed: 0, drained: 1, pending: 0 });
    assert.equal((await get()).body, `new ${fresh.pid}`);
    agent.destroy();
    assert.equal((await old.exited).code, 0);
    await stopFixture(fresh);
  });
});

describe('hand-off with migrate and closeSpread: the moves spread over the window', () => {
  /** The old process (serve()'s closeSpread `spread`) and `n` keep-alive clients, each answered once by it. */
  async function oldWithClients(spread: number, n: number): Promise<{ control: string; old: Fixture; clients: RawHttp[] }> {
    const control = tmpPath('control.sock');
    const old = runFixture('migration-old', [control, 'http'], { env: { ...process.env, FDPASS_TEST_CLOSE_SPREAD: String(spread) } });
    const { port } = await old.expect<{ port: number }>('serving');
    const clients = await Promise.all(
      Array.from({ length: n }, async () => {
        const c = new RawHttp(port);
        await c.connected();
        assert.equal(await c.get(), `old ${old.pid}`);
        return c;
      }),
    );
    return { control, old, clients };
  }

  it('closeSpread 1500: 8 clients move one by one over the window, each served by the old process until then', async function () {
    this.timeout(30_000);
    const spread = 1500;
    const { control, old, clients } = await oldWithClients(spread, 8);
    const localPorts = clients.map((c) => c.socket.localPort);
    // Every client sends a request every ~50 ms and notes when its first answer from the new process came.
    let sending = true;
    const movedAt: Array<number | undefined> = clients.map(() => undefined);
    const lastOldAt: number[] = clients.map(() => 0);
    const loops = clients.map(async (c, i) => {
      while (sending && !c.closed) {
        const body = await c.get();
        if (body.startsWith('new')) movedAt[i] ??= performance.now();
        else lastOldAt[i] = performance.now();
        await settle(50);
      }
    });
    const fresh = runFixture('migration-new', [control, 'http']);
    await old.expect('handoff');
    const handedOff = performance.now();
    const ready = await fresh.expect<{ connections: Counts }>('ready');
    const atAck = ready.connections;
    assert.deepEqual([atAck.migrated + atAck.pending, atAck.failed, atAck.drained], [8, 0, 0], JSON.stringify(atAck));
    const drained = await old.expect<{ counts: Counts }>('drained');
    assert.deepEqual(drained.counts, { migrated: 8, failed: 0, drained: 0, pending: 0 });
    assert.deepEqual((await fresh.expect<{ counts: Counts }>('migrated')).counts, drained.counts);
    await settle(150); // each client's next answer, from the new process
    sending = false;
    await Promise.all(loops);
    const shown = JSON.stringify(movedAt.map((t) => (t === undefined ? t : Math.round(t - handedOff))));
    assert.ok(
      movedAt.every((t) => t !== undefined),
      `every client served by the new process: ${shown}`,
    );
    const moved = (movedAt as number[]).map((t) => t - handedOff);
    const first = Math.min(...moved);
    const last = Math.max(...moved);
    // 8 turns drawn uniformly over 1500 ms span less than a fifth of it once in ~10,000 runs; all
    // moved at once they would come within one request interval of each other.
    assert.ok(last - first >= spread / 5, `the moves spread over the window, not all at once: ${shown}`);
    assert.ok(last < spread + 1000, `every client moved by the end of the window: ${shown}`);
    // The client that moved last was served by the old process after the first one had moved.
    const lastClient = moved.indexOf(last);
    assert.ok(lastOldAt[lastClient]! - handedOff > first, `served here until its turn: ${shown}`);
    for (const [i, c] of clients.entries()) {
      const firstNew = c.bodies.findIndex((b) => b.startsWith('new'));
      assert.deepEqual(new Set(c.bodies.slice(0, firstNew)), new Set([`old ${old.pid}`]), `client ${i}`);
      assert.deepEqual(new Set(c.bodies.slice(firstNew)), new Set([`new ${fresh.pid}`]), `client ${i}: never back to the old process`);
      assert.equal(c.socket.localPort, localPorts[i], `client ${i} kept its connection`);
      assert.equal(c.closed, false);
    }
    assert.equal((await old.exited).code, 0);
    await Promise.all(clients.map((c) => c.close()));
    await stopFixture(fresh);
  });

  it('closeSpread 1000: the connections the new process refuses are drained by the old one, and counted', async () => {
    const { control, old, clients } = await oldWithClients(1000, 4);
    // Its server takes 2 connections: the turns that come later are refused.
    const fresh = runFixture('migration-new', [control, 'http'], { env: { ...process.env, FDPASS_TEST_MAX_CONNECTIONS: '2' } });
    await fresh.expect('ready');
    const drained = await old.expect<{ counts: Counts }>('drained');
    assert.deepEqual(drained.counts, { migrated: 2, failed: 2, drained: 0, pending: 0 });
    assert.deepEqual((await fresh.expect<{ counts: Counts }>('migrated')).counts, drained.counts);
    assert.equal((await old.exited).code, 0);
    // The refused ones were idle: closed by the old process's drain (the client reconnects), the others moved.
    const deadline = Date.now() + 5000;
    while (clients.filter((c) => c.closed).length < 2 && Date.now() < deadline) await settle(20);
    assert.deepEqual(clients.map((c) => c.closed).sort(), [false, false, true, true]);
    for (const c of clients.filter((c) => !c.closed)) assert.equal(await c.get(), `new ${fresh.pid}`);
    await Promise.all(clients.map((c) => c.close()));
    await stopFixture(fresh);
  });

  it('closeSpread 0: every idle connection moves at once, before ready() resolves, as without it', async () => {
    const { control, old, clients } = await oldWithClients(0, 8);
    const localPorts = clients.map((c) => c.socket.localPort);
    const fresh = runFixture('migration-new', [control, 'http']);
    const ready = await fresh.expect<{ connections: Counts }>('ready');
    assert.deepEqual(ready.connections, { migrated: 8, failed: 0, drained: 0, pending: 0 });
    for (const [i, c] of clients.entries()) {
      assert.equal(await c.get(), `new ${fresh.pid}`);
      assert.equal(c.socket.localPort, localPorts[i]);
      assert.equal(c.closed, false);
    }
    assert.deepEqual((await old.expect<{ counts: Counts }>('drained')).counts, { migrated: 8, failed: 0, drained: 0, pending: 0 });
    assert.equal((await old.exited).code, 0);
    await Promise.all(clients.map((c) => c.close()));
    await stopFixture(fresh);
  });
});

describe('hand-off with migrate: listeners of the old process that throw', () => {
  it("a throwing 'error' listener, told of a throwing 'handoff' listener: uncaught, and the connections move", async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('migration-old', [control, 'http'], {
      env: { ...process.env, FDPASS_TEST_THROWING_LISTENERS: '1' },
    });
    const { port } = await old.expect<{ port: number }>('serving');
    const client = new RawHttp(port);
    await client.connected();
    assert.equal(await client.get(), `old ${old.pid}`);
    const fresh = runFixture('migration-new', [control, 'http']);
    const ready = await fresh.expect<{ acknowledged: boolean; connections: Counts }>('ready');
    assert.deepEqual([ready.acknowledged, ready.connections], [true, { migrated: 1, failed: 0, drained: 0, pending: 0 }]);
    assert.deepEqual(await old.expect('uncaught'), { event: 'uncaught', message: 'a careless error listener' });
    assert.equal(await client.get(), `new ${fresh.pid}`);
    await client.close();
    assert.deepEqual((await old.expect<{ counts: Counts }>('drained')).counts, { migrated: 1, failed: 0, drained: 0, pending: 0 });
    assert.equal((await old.exited).code, 0, 'drained, the old process exits by itself');
    await stopFixture(fresh);
  });
});

describe('hand-off with migrate: a new process that misbehaves', () => {
  it('one that never answers for a connection holds nothing up: the old process closes it after the drain deadline and exits', async () => {
    const { control, old, client } = await oldServing('http', RawHttp);
    assert.equal(await client.get(), `old ${old.pid}`);
    // A taker by hand: hello, the listener, 'ready', then silence.
    const ch = await connect(control);
    const wire = (msg: object): Buffer => Buffer.from(JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION, ...msg }));
    await ch.send({ data: wire({ type: 'hello', connections: true }) });
    const held: number[] = [];
    for (;;) {
      const m = await ch.receive();
      held.push(...m.fds);
      if ((JSON.parse(m.data.toString()) as { type: string }).type === 'done') break;
    }
    await ch.send({ data: wire({ type: 'ready' }) });
    const offered = await ch.receive();
    held.push(...offered.fds);
    assert.equal((JSON.parse(offered.data.toString()) as { type: string }).type, 'connection');
    assert.equal(offered.fds.length, 1);
    const drained = await old.expect<{ counts: Counts }>('drained');
    assert.deepEqual(drained.counts, { migrated: 0, failed: 1, drained: 0, pending: 0 });
    assert.equal((await old.exited).code, 0);
    const closed = once(client.socket, 'close');
    closeFds(held); // the last copy of the connection: the client now sees it end
    await closed;
    await ch.close();
  });
});

describe('self-upgrade with migrate (handoff.upgrader)', () => {
  it("SIGHUP: the client's keep-alive connection is served by the successor, never closed", async () => {
    const port = await freePort();
    const gen1 = runFixture('upgrade-app', [String(port)], { env: { ...process.env, FDPASS_TEST_MIGRATE: '1' } });
    await gen1.expect('serving');
    const client = new RawHttp(port);
    await client.connected();
    const localPort = client.socket.localPort;
    assert.equal(await client.get(), `gen ${gen1.pid}`);
    gen1.proc.kill('SIGHUP');
    // The successor's 'serving' (it shares gen1's stdout) and gen1's 'drained', in whichever order they come.
    const seen = new Map<string, Record<string, unknown>>();
    while (!seen.has('serving') || !seen.has('drained')) {
      const m = await gen1.next<Record<string, unknown>>();
      if (m.event === 'serving' || m.event === 'drained') seen.set(m.event, m);
    }
    const s2 = seen.get('serving') as { pid: number; inherited: boolean };
    assert.equal(s2.inherited, true);
    const drained = seen.get('drained') as { pid: number; counts: Counts };
    assert.deepEqual([drained.pid, drained.counts], [gen1.pid, { migrated: 1, failed: 0, drained: 0, pending: 0 }]);
    assert.equal(await client.get(), `gen ${s2.pid}`);
    assert.equal(client.socket.localPort, localPort);
    assert.equal(client.closed, false);
    await client.close();
    process.kill(s2.pid, 'SIGTERM');
    await gen1.exited; // its stdout, shared with the successor, ends when both have exited
  });
});

describe('the WebSocket example (examples/websocket-server.ts)', () => {
  // A test that fails or times out must not leave its clients sending into the next tests.
  let leftover: (() => void) | undefined;
  afterEach(() => {
    leftover?.();
    leftover = undefined;
  });

  it("its clients see no 'close' across 5 hand-offs, and every message is answered once, in order", async function () {
    this.timeout(120_000); // 6 processes start one after another (slow under ASan)
    const script = path.join(__dirname, '..', 'examples', 'websocket-server.js');
    const control = tmpPath('control.sock');
    const port = await freePort();
    const start = (): Fixture => spawnJson(process.execPath, [script, String(port), control]);
    let current = start();
    await current.expect('serving');
    const answered: string[][] = [];
    let closes = 0;
    let sending = true;
    const clients = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
        answered[i] = [];
        ws.on('message', (data) => answered[i]!.push(String(data)));
        ws.on('close', () => closes++);
        await once(ws, 'open');
        return ws;
      }),
    );
    // Each client sends 1, 2, 3, ... every 20 ms; the server answers `<pid> <n> <message>`.
    const sent = clients.map(() => 0);
    const senders = clients.map(async (ws, i) => {
      while (sending) {
        ws.send(String(++sent[i]!));
        await settle(20);
      }
    });
    const pids = [current.pid];
    // However the test ends, its clients stop sending and close, and the last server goes.
    const cleanup = (): void => {
      sending = false;
      for (const ws of clients) ws.terminate();
      current.proc.kill('SIGKILL');
    };
    leftover = cleanup;
    for (let k = 0; k < 5; k++) {
      await settle(200);
      const next = start();
      await next.expect('serving');
      const drained = await current.expect<{ counts: Counts }>('drained');
      assert.equal(drained.counts.migrated, 20, `hand-off ${k + 1}: all 20 WebSockets moved`);
      assert.equal((await current.exited).code, 0);
      current = next;
      pids.push(next.pid);
    }
    await settle(200);
    sending = false;
    await Promise.all(senders);
    const deadline = Date.now() + 10_000;
    while (answered.some((a, i) => a.length < sent[i]!) && Date.now() < deadline) await settle(20);
    assert.equal(closes, 0, "no client saw 'close'");
    for (const [i, answers] of answered.entries()) {
      assert.equal(answers.length, sent[i], `client ${i}: one answer per message`);
      answers.forEach((a, j) => {
        const [pid, n, message] = a.split(' ');
        assert.ok(pids.includes(Number(pid)), a);
        assert.equal(n, String(j + 1), `client ${i}: the count moved with the connection (${a})`);
        assert.equal(message, String(j + 1), `client ${i}: answers in order (${a})`);
      });
      assert.equal(answers.at(-1)!.split(' ')[0], String(current.pid), `client ${i} ends on the last generation`);
    }
    await Promise.all(
      clients.map(async (ws) => {
        const closed = once(ws, 'close');
        ws.close();
        await closed;
      }),
    );
    current.proc.kill('SIGKILL');
    await current.exited;
    fs.unlinkSync(control); // the killed last generation could not remove its control socket
  });
});
