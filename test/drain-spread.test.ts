// drain({ closeSpread }): keep-alive connections are let go one by one over the window (HAProxy's
// close-spread-time) instead of all at once; without it, every connection goes at the drain's start.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { drain, handoff } from 'fdpass';
import { runFixture } from './helpers/children';
import { tmpPath } from './helpers/tmp';
import { waitFor } from './helpers/wait';

async function listening(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

interface Answer {
  sentAt: number;
  close: boolean;
}

/** One keep-alive client on its own connection: a request every `pace` ms until told `Connection: close`. */
class Client {
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  readonly sockets = new Set<net.Socket>();
  readonly answers: Answer[] = [];
  readonly errors: string[] = [];
  closedAt: number | undefined; // when the first `Connection: close` answer arrived
  constructor(readonly port: number) {}

  get(): Promise<Answer | undefined> {
    const sentAt = Date.now();
    return new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: this.port, agent: this.agent }, (res) => {
        res.resume();
        res.on('end', () => {
          const answer = { sentAt, close: res.headers.connection === 'close' };
          if (res.statusCode !== 200) this.errors.push(`status ${res.statusCode}`);
          else this.answers.push(answer);
          if (answer.close && this.closedAt === undefined) this.closedAt = Date.now();
          resolve(answer);
        });
      });
      req.on('socket', (s: net.Socket) => this.sockets.add(s));
      req.on('error', (err: Error & { code?: string }) => {
        this.errors.push(err.code ?? err.message);
        resolve(undefined);
      });
    });
  }

  /** Requests back to back (`pace` ms apart) until an answer closes the connection or one fails. */
  async run(pace: number): Promise<void> {
    for (;;) {
      const a = await this.get();
      if (a === undefined || a.close) return;
      await new Promise((r) => setTimeout(r, pace));
    }
  }
}

/** An idle keep-alive connection: one request, then nothing; resolves with when the server closed it. */
async function idleConnection(port: number): Promise<{ agent: http.Agent; closed: Promise<number> }> {
  const client = new Client(port);
  const a = await client.get();
  assert.equal(a?.close, false);
  const socket = [...client.sockets][0]!;
  return { agent: client.agent, closed: once(socket, 'close').then(() => Date.now()) };
}

describe('drain: closeSpread (connection closes spread over a window)', () => {
  // 16 busy and 8 idle connections; the drain ends before its timeout.
  it('keep-alive connections are let go over [0, closeSpread) with 0 failed requests', async () => {
    const spread = 1500;
    const idleGrace = 300;
    const timeout = 4000;
    const { server, port } = await listening();
    const busy = Array.from({ length: 16 }, () => new Client(port));
    await Promise.all(busy.map((c) => c.get())); // each has its connection
    const idle = await Promise.all(Array.from({ length: 8 }, () => idleConnection(port)));
    const running = busy.map((c) => c.run(20));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await drain(server, { timeout, idleGrace, closeSpread: spread });
    const drainedAfter = Date.now() - t0;
    await Promise.all(running);
    const idleClosedAfter = (await Promise.all(idle.map((i) => i.closed))).map((t) => t - t0);
    idle.forEach((i) => i.agent.destroy());
    busy.forEach((c) => c.agent.destroy());

    const errors = busy.flatMap((c) => c.errors);
    assert.deepEqual(errors, [], 'no failed request');
    for (const c of busy) assert.equal(c.sockets.size, 1, 'each client kept its one connection until told to close');
    const closes = busy.map((c) => c.closedAt! - t0).sort((a, b) => a - b);
    const shown = `Connection: close after ${closes.join(', ')} ms; idle closed after ${idleClosedAfter.join(', ')} ms`;
    // Uniform over [0, 1500): all 16 within the first 10 % has probability 1e-16, a range < 1/4 of the
    // window 2e-8; each comes at the first answer after its turn, at most one pace (20 ms) later.
    assert.ok(
      closes.some((t) => t >= spread / 10),
      `not all in the first 10 % of the window: ${shown}`,
    );
    assert.ok(closes.at(-1)! - closes[0]! >= spread / 4, `spread over the window: ${shown}`);
    assert.ok(closes.at(-1)! < spread + idleGrace, `every busy connection told by closeSpread + idleGrace: ${shown}`);
    // An idle connection goes idleGrace after its turn, seen by a sweep (every idleGrace / 4).
    const sweep = idleGrace / 4;
    for (const t of idleClosedAfter) {
      assert.ok(t >= idleGrace && t < spread + idleGrace + 2 * sweep + 200, `idle closes within the window + idleGrace: ${shown}`);
    }
    assert.ok(Math.max(...idleClosedAfter) - Math.min(...idleClosedAfter) >= spread / 10, `idle closes spread too: ${shown}`);
    assert.ok(drainedAfter < timeout, `drained after ${drainedAfter} ms, before the ${timeout} ms timeout`);
  });

  for (const closeSpread of [undefined, 0]) {
    // Idle connections go after idleGrace.
    it(`closeSpread ${closeSpread ?? 'unset'}: an answer sent after the drain starts closes its connection`, async () => {
      const idleGrace = 300;
      const { server, port } = await listening();
      const busy = Array.from({ length: 8 }, () => new Client(port));
      await Promise.all(busy.map((c) => c.get()));
      const idle = await Promise.all(Array.from({ length: 4 }, () => idleConnection(port)));
      const running = busy.map((c) => c.run(20));
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await drain(server, { timeout: 4000, idleGrace, ...(closeSpread === undefined ? {} : { closeSpread }) });
      await Promise.all(running);
      const idleClosedAfter = (await Promise.all(idle.map((i) => i.closed))).map((t) => t - t0);
      idle.forEach((i) => i.agent.destroy());
      busy.forEach((c) => c.agent.destroy());

      assert.deepEqual(
        busy.flatMap((c) => c.errors),
        [],
      );
      const keptAlive = busy.flatMap((c) => c.answers).filter((a) => a.sentAt > t0 && !a.close);
      assert.equal(keptAlive.length, 0, 'no answer to a request sent after the start kept its connection');
      for (const t of idleClosedAfter) assert.ok(t >= idleGrace && t < idleGrace + 2 * (idleGrace / 4) + 200, `idle closed after ${t} ms`);
    });
  }

  it('serve({ closeSpread }) moves 16 keep-alive clients over the window with 0 failed requests', async () => {
    const spread = 1500;
    const idleGrace = 1000; // serve()'s default
    const drainTimeout = 5000;
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http', '5000', String(drainTimeout), String(spread)]);
    const { ports } = await old.expect<{ ports: Record<string, number> }>('serving');
    // Each client: its own keep-alive connection, a request every 20 ms, until it has been answered
    // by the new process for a while; notes when it first was.
    const clients = Array.from({ length: 16 }, () => new Client(ports.web!));
    let t0 = 0;
    const movedAt: number[] = [];
    const bodies = new Set<string>();
    // Every client connects and is answered before the new process exists, so that every connection
    // is the old process's (once the new one adopts the listener, both accept new connections).
    const onOld = new Set<number>(); // the clients answered by it
    const loops = clients.map(async (c, i) => {
      for (;;) {
        const body = await new Promise<string | undefined>((resolve) => {
          const req = http.get({ host: '127.0.0.1', port: ports.web!, agent: c.agent }, (res) => {
            let b = '';
            res.on('data', (d: Buffer) => (b += d.toString()));
            res.on('end', () => resolve(res.statusCode === 200 ? b : `status ${res.statusCode}`));
          });
          req.on('error', (err: Error & { code?: string }) => {
            c.errors.push(err.code ?? err.message);
            resolve(undefined);
          });
        });
        if (body !== undefined) bodies.add(body.split(' ')[0]!);
        if (body?.startsWith('old ')) onOld.add(i);
        if (body?.startsWith('new ') && t0 > 0) {
          movedAt[i] ??= Date.now() - t0;
          if (Date.now() - t0 > spread + idleGrace) return;
        }
        if (body === undefined || body.startsWith('status')) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    });
    await waitFor('every client to be answered by the old process', () => onOld.size === clients.length, 10_000);
    const fresh = runFixture('handoff-new', [control, 'serve']);
    await fresh.expect('adopted');
    await new Promise((r) => setTimeout(r, 200));
    t0 = Date.now();
    fresh.send({ cmd: 'ready' });
    await fresh.expect('ready');
    await old.expect('drained');
    const drainedAfter = Date.now() - t0;
    await Promise.all(loops);
    clients.forEach((c) => c.agent.destroy());
    fresh.send({ cmd: 'exit' });
    fresh.proc.stdin!.end();
    assert.equal((await fresh.exited).code, 0, fresh.stderr());
    await old.exited;

    assert.deepEqual(
      clients.flatMap((c) => c.errors),
      [],
      'no failed request',
    );
    assert.deepEqual([...bodies].sort(), ['new', 'old']);
    const moved = [...movedAt].sort((a, b) => a - b);
    assert.equal(moved.filter((t) => t !== undefined).length, 16, `every client moved: ${moved.join(', ')}`);
    const shown = `moved to the new process after ${moved.join(', ')} ms; old drained after ${drainedAfter} ms`;
    assert.ok(
      moved.some((t) => t >= spread / 10),
      `not all in the first 10 % of the window: ${shown}`,
    );
    assert.ok(moved.at(-1)! - moved[0]! >= spread / 4, `spread over the window: ${shown}`);
    assert.ok(moved.at(-1)! < spread + idleGrace, `every client moved by closeSpread + idleGrace: ${shown}`);
    assert.ok(drainedAfter < drainTimeout, `drained before the drain timeout: ${shown}`);
  });

  // Through HandoffServer.stop().
  it('HTTP/2: each session gets its GOAWAY at its own turn over the window, 0 failed streams', async () => {
    const spread = 1500;
    const idleGrace = 300;
    const drainTimeout = 4000;
    const server = http2.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const hs = await handoff.serve(tmpPath('control.sock'), { web: server }, { drainTimeout, idleGrace, closeSpread: spread });
    const errors: string[] = [];
    let refused = 0;
    let t0 = 0;
    const goawayAt: number[] = [];
    const sessions = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const s = http2.connect(`http://127.0.0.1:${port}`);
        s.on('error', (err: Error & { code?: string }) => errors.push(err.code ?? err.message));
        const closed = once(s, 'close'); // Node's client closes by itself on GOAWAY
        await once(s, 'connect');
        return { s, closed };
      }),
    );
    // Each session: a stream every 20 ms until told GOAWAY (a real client then opens a new connection).
    const loops = sessions.map(async ({ s, closed }, i) => {
      s.once('goaway', () => (goawayAt[i] = Date.now() - t0));
      while (goawayAt[i] === undefined && !s.closed && !s.destroyed) {
        await new Promise<void>((resolve) => {
          const req = s.request({ ':path': '/' });
          req.on('response', (h) =>
            req.once('end', () => {
              if (h[':status'] !== 200) errors.push(`status ${h[':status']}`);
              resolve();
            }),
          );
          req.on('error', (err: Error & { code?: string }) => {
            // A stream sent as its session's GOAWAY was on the way is refused by it (RFC 9113 §8.7:
            // never processed, safe to retry): test/drain-http2.test.ts.
            if (req.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) refused++;
            else errors.push(err.code ?? err.message);
            resolve();
          });
          req.resume();
          req.end();
        });
        await new Promise((r) => setTimeout(r, 20));
      }
      s.close();
      await closed;
    });
    await new Promise((r) => setTimeout(r, 100));
    t0 = Date.now();
    await hs.stop();
    const stoppedAfter = Date.now() - t0;
    await Promise.all(loops);

    assert.deepEqual(errors, [], 'no failed stream');
    assert.ok(refused <= sessions.length, `at most the one stream per session that crossed its GOAWAY is refused: ${refused}`);
    const times = [...goawayAt].sort((a, b) => a - b);
    const shown = `GOAWAY after ${times.join(', ')} ms; drained after ${stoppedAfter} ms`;
    assert.equal(times.filter((t) => t !== undefined).length, 8, shown);
    // Uniform over [0, 1500): all 8 in the first 10 % has probability 1e-8; each comes at the first
    // sweep (every idleGrace / 4 = 75 ms) after its turn.
    assert.ok(
      times.some((t) => t >= spread / 10),
      `not all in the first 10 % of the window: ${shown}`,
    );
    assert.ok(times.at(-1)! - times[0]! >= spread / 4, `spread over the window: ${shown}`);
    assert.ok(times.at(-1)! < spread + idleGrace, `every session told by closeSpread + idleGrace: ${shown}`);
    assert.ok(stoppedAfter < drainTimeout, `drained before the drain timeout: ${shown}`);
  });

  it('closeSpread is checked (with migrate too): a non-integer, a negative value, or not less than the timeout is refused', async () => {
    const { server } = await listening();
    try {
      await assert.rejects(drain(server, { closeSpread: '100' as unknown as number }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      await assert.rejects(drain(server, { closeSpread: -1 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      await assert.rejects(drain(server, { closeSpread: 1.5 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      await assert.rejects(drain(server, { timeout: 1000, closeSpread: 1000 }), {
        name: 'RangeError',
        code: 'ERR_OUT_OF_RANGE',
        message: /options\.closeSpread.*< options\.timeout \(1000\)/,
      });
      await assert.rejects(drain(server, { closeSpread: 30000 }), { code: 'ERR_OUT_OF_RANGE' }); // the default timeout
      await assert.rejects(drain(server, { timeout: 0, closeSpread: 1 }), { code: 'ERR_OUT_OF_RANGE' });
      const control = tmpPath('control.sock');
      await assert.rejects(handoff.serve(control, { web: server }, { drainTimeout: 500, closeSpread: 500 }), {
        code: 'ERR_OUT_OF_RANGE',
        message: /options\.closeSpread.*< options\.drainTimeout \(500\)/,
      });
      await assert.rejects(handoff.serve(control, { web: server }, { closeSpread: null as unknown as number }), {
        code: 'ERR_INVALID_ARG_TYPE',
      });
      assert.throws(() => handoff.upgrader({ web: server }, { drainTimeout: 500, closeSpread: 600 }), { code: 'ERR_OUT_OF_RANGE' });
      // With migrate it spreads the moves: the same rules.
      await assert.rejects(handoff.serve(control, { web: server }, { migrate: true, drainTimeout: 500, closeSpread: 500 }), {
        name: 'RangeError',
        code: 'ERR_OUT_OF_RANGE',
        message: /options\.closeSpread.*< options\.drainTimeout \(500\)/,
      });
      await assert.rejects(handoff.serve(control, { web: server }, { migrate: true, closeSpread: -1 }), {
        name: 'RangeError',
        code: 'ERR_OUT_OF_RANGE',
      });
      await assert.rejects(handoff.serve(control, { web: server }, { migrate: true, closeSpread: 2.5 }), {
        name: 'RangeError',
        code: 'ERR_OUT_OF_RANGE',
      });
      await assert.rejects(handoff.serve(control, { web: server }, { migrate: true, closeSpread: '1000' as unknown as number }), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_TYPE',
      });
      assert.throws(() => handoff.upgrader({ web: server }, { migrate: true, drainTimeout: 500, closeSpread: 500 }), {
        name: 'RangeError',
        code: 'ERR_OUT_OF_RANGE',
      });
      assert.throws(() => handoff.upgrader({ web: server }, { migrate: true, closeSpread: Number.NaN }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => handoff.upgrader({ web: server }, { idleGrace: -1 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.ok(server.listening, 'a refused drain leaves the server alone');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
