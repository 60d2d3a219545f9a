// Hot restart: listeners move from an old process to a new one; the old keeps serving on failure.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { handoff, connect, HANDOFF_PROTOCOL_VERSION } from 'fdpass';
import { runFixture, stopFixture } from './helpers/children';
import { requires, root } from './helpers/requires';
import { tmpPath } from './helpers/tmp';
import { get } from './helpers/http';

interface Serving {
  ports: Record<string, number>;
  fds: number;
}

describe('hand-off (hot restart)', () => {
  it('first start: take() resolves null when no old process serves the path', async () => {
    assert.equal(await handoff.take(tmpPath('nobody.sock')), null);
  });

  it('the accept queue survives: waiting clients are served by the new process after SIGKILL of the old', async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'raw']);
    const { ports } = await old.expect<Serving>('serving');
    // Nobody accepts yet: these 50 connections complete their handshake and wait in the queue.
    const waiting = Array.from({ length: 50 }, () => get(ports.web!));
    await new Promise((r) => setTimeout(r, 100));
    const fresh = runFixture('handoff-new', [control, 'serve']);
    await fresh.expect('adopted');
    old.proc.kill('SIGKILL');
    await old.exited;
    const answers = await Promise.all(waiting);
    assert.equal(answers.length, 50);
    for (const a of answers) assert.equal(a, `new ${fresh.pid}`);
    assert.equal(await get(ports.web!), `new ${fresh.pid}`);
    fresh.send({ cmd: 'ready' });
    // The old process is gone: no ack, but its copies went with it, so ready() resolves.
    assert.deepEqual(await fresh.expect('ready'), { event: 'ready', acknowledged: false });
    assert.equal(await get(ports.web!), `new ${fresh.pid}`);
    await stopFixture(fresh);
    fs.unlinkSync(control); // the SIGKILLed old process could not remove its control socket
  });

  it('in-flight requests complete on the old process; after ready the new one serves alone', async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http']);
    const { ports } = await old.expect<Serving>('serving');
    const port = ports.web!;
    assert.equal(await get(port), `old ${old.pid}`);
    const slow = get(port, '/slow'); // accepted by the old process, answered after 600 ms
    await new Promise((r) => setTimeout(r, 50));
    const fresh = runFixture('handoff-new', [control, 'serve']);
    await fresh.expect('adopted');
    fresh.send({ cmd: 'ready' });
    await fresh.expect('ready');
    await old.expect('handoff');
    assert.equal(await slow, `old ${old.pid}`);
    await old.expect('drained');
    assert.deepEqual(await old.exited, { code: 0, signal: null });
    for (let i = 0; i < 20; i++) assert.equal(await get(port), `new ${fresh.pid}`);
    await stopFixture(fresh);
  });

  it('ready({ overlap }) keeps the old process accepting alongside the new one for that long', async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http']);
    const { ports } = await old.expect<Serving>('serving');
    const port = ports.web!;
    const fresh = runFixture('handoff-new', [control, 'serve']);
    await fresh.expect('adopted');
    fresh.send({ cmd: 'ready', overlap: 1500 });
    const started = Date.now();
    const seen = new Set<string>();
    while (Date.now() - started < 1000 && seen.size < 2) {
      const answers = await Promise.all(Array.from({ length: 8 }, () => get(port)));
      for (const a of answers) seen.add(a.split(' ')[0]!);
    }
    assert.deepEqual([...seen].sort(), ['new', 'old'], 'both served during the overlap');
    await fresh.expect('ready');
    assert.ok(Date.now() - started >= 1400, 'ready() waited for the overlap');
    await old.expect('drained');
    assert.equal(await get(port), `new ${fresh.pid}`);
    await stopFixture(fresh);
    await old.exited;
  });

  it('a Unix net.Server and a UDP socket move by name and work in the new process', async () => {
    const control = tmpPath('control.sock');
    const unixPath = tmpPath('app.sock');
    const old = runFixture('handoff-old', [control, 'mixed', '5000', unixPath]);
    const { ports } = await old.expect<Serving>('serving');
    const askUnix = (): Promise<string> =>
      new Promise((resolve, reject) => {
        let data = '';
        net
          .connect(unixPath)
          .on('data', (d: Buffer) => (data += d.toString()))
          .on('end', () => resolve(data))
          .on('error', reject);
      });
    const askUdp = async (): Promise<string> => {
      const s = dgram.createSocket('udp4');
      s.send('who', ports.udp!, '127.0.0.1');
      const [m] = (await once(s, 'message')) as [Buffer];
      await new Promise<void>((resolve) => s.close(() => resolve()));
      return m.toString();
    };
    assert.equal(await askUnix(), `unix ${old.pid}`);
    assert.equal(await askUdp(), `udp ${old.pid}`);
    const fresh = runFixture('handoff-new', [control, 'mixed']);
    const mixed = await fresh.expect<{ kinds: Record<string, string> }>('mixed');
    assert.deepEqual(mixed.kinds, { unix: 'unix', udp: 'udp' });
    await old.expect('drained');
    assert.equal((await old.exited).code, 0);
    assert.equal(await askUnix(), `unix ${fresh.pid}`);
    assert.equal(await askUdp(), `udp ${fresh.pid}`);
    await stopFixture(fresh);
    fs.unlinkSync(unixPath); // a Unix net.Server adopted from an fd does not know its path
  });

  // idleGrace 1 s, the deadline 5 s.
  it('draining closes an idle keep-alive connection after idleGrace, not at the drain deadline', async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http']);
    const { ports } = await old.expect<Serving>('serving');
    const agent = new http.Agent({ keepAlive: true });
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: ports.web!, agent }, (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString()));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    assert.equal(body, `old ${old.pid}`);
    const idle = Object.values(agent.freeSockets).flat()[0]!;
    assert.ok(idle, 'one idle keep-alive connection to the old process');
    const idleClosed = once(idle, 'close');
    const fresh = runFixture('handoff-new', [control, 'serve']);
    await fresh.expect('adopted');
    const t0 = Date.now();
    fresh.send({ cmd: 'ready' });
    await old.expect('drained');
    await idleClosed;
    assert.ok(Date.now() - t0 < 2000, 'drained well before the 5 s drain deadline');
    agent.destroy();
    await stopFixture(fresh);
    await old.exited;
  });

  for (const [behaviour, code] of [
    ['exit-before-ready', 'ERR_FDPASS_CLOSED'],
    ['hang', 'ERR_FDPASS_TIMEOUT'],
    ['disconnect', 'ERR_FDPASS_CLOSED'],
  ] as const) {
    it(`rollback: a new process that does '${behaviour}' leaves the old one serving, fd count unchanged`, async () => {
      const control = tmpPath('control.sock');
      const old = runFixture('handoff-old', [control, behaviour === 'disconnect' ? 'many' : 'http', '1000']);
      const { ports } = await old.expect<Serving>('serving');
      const fresh = runFixture('handoff-new', [control, behaviour]);
      if (behaviour === 'hang') {
        await fresh.expect('taken');
        // One hand-off at a time: a second taker meanwhile is told the old process is busy.
        await assert.rejects(handoff.take(control), { code: 'ERR_FDPASS_HANDOFF_BUSY' });
      }
      const rollback = await old.expect<{ code: string; fds: number }>('rollback');
      assert.equal(rollback.code, code);
      assert.equal(rollback.fds, 0, 'the old process is back to its fd count');
      if (behaviour === 'disconnect') {
        const d = await fresh.expect<{ fds: number }>('disconnected');
        assert.equal(d.fds, 253, 'it left after the first batch of 253');
      }
      fresh.proc.kill('SIGKILL');
      await fresh.exited;
      if (behaviour === 'disconnect') {
        const c = await new Promise<string>((resolve, reject) => {
          const s = require('node:net').connect(ports.l7, '127.0.0.1');
          let data = '';
          s.on('data', (d: Buffer) => (data += d.toString()));
          s.on('end', () => resolve(data));
          s.on('error', reject);
        });
        assert.equal(c, 'l7');
      } else {
        assert.equal(await get(ports.web!), `old ${old.pid}`);
      }
      // And a later hand-off still works.
      if (behaviour !== 'disconnect') {
        const next = runFixture('handoff-new', [control, 'serve']);
        await next.expect('adopted');
        next.send({ cmd: 'ready' });
        await next.expect('ready');
        await old.expect('drained');
        assert.equal(await get(ports.web!), `new ${next.pid}`);
        await stopFixture(next);
        await old.exited;
      } else {
        await stopFixture(old);
      }
    });
  }

  it('more than 253 listeners move with their names', async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'many']);
    const { ports } = await old.expect<Serving>('serving');
    const fresh = runFixture('handoff-new', [control, 'many']);
    const got = await fresh.expect<{ ports: Record<string, number> }>('many');
    assert.equal(Object.keys(got.ports).length, 300);
    assert.deepEqual(got.ports, ports);
    await old.expect('drained');
    assert.equal((await fresh.exited).code, 0);
    assert.equal((await old.exited).code, 0);
  });

  it('a peer with another uid is refused and receives no fd', async function () {
    requires(this, root('running a child as another user'));
    const control = `@fdpass-test-${process.pid}-${Date.now()}`;
    const old = runFixture('handoff-old', [control, 'http', '2000']);
    const { ports } = await old.expect<Serving>('serving');
    // As nobody: the abstract name has no file permissions, so only the credential check stops it.
    const nobody = runFixture('handoff-new', [control, 'refused'], { uid: 65534, gid: 65534 });
    const r = await nobody.expect<{ code: string; fds: number }>('refused');
    assert.equal(r.code, 'ERR_FDPASS_HANDOFF_REFUSED');
    assert.equal(r.fds, 0);
    assert.equal((await nobody.exited).code, 0);
    assert.equal(await get(ports.web!), `old ${old.pid}`);
    await stopFixture(old);
  });

  it('a peer speaking another protocol version is refused cleanly', async () => {
    const control = tmpPath('control.sock');
    const old = runFixture('handoff-old', [control, 'http']);
    const { ports } = await old.expect<Serving>('serving');
    const ch = await connect(control);
    await ch.send({ data: JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION + 1, type: 'hello' }) });
    const reply = await ch.receive();
    assert.equal(reply.fds.length, 0);
    assert.equal(JSON.parse(reply.data.toString()).code, 'ERR_FDPASS_HANDOFF_VERSION');
    await ch.close();
    const rollback = await old.expect<{ code: string }>('rollback');
    assert.equal(rollback.code, 'ERR_FDPASS_HANDOFF_VERSION');
    assert.equal(await get(ports.web!), `old ${old.pid}`);
    await stopFixture(old);
  });
});
