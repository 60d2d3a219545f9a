// drain(): connections that fdpass met only at the drain (opened before drain() or serve() was
// called) are let go like the others, whatever the server's protocol, and nothing is left open once
// it resolves.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { drain, handoff } from 'fdpass';
import { tmpPath } from './helpers/tmp';

async function listening<S extends net.Server>(server: S): Promise<S> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port;

// An HTTP/2 client session that has had one stream served (so the server's session exists).
async function h2Session(server: net.Server): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${portOf(server)}`);
  session.on('error', () => {});
  const stream = session.request({ ':path': '/' });
  stream.resume();
  await once(stream, 'close');
  return session;
}

describe('drain: connections opened before fdpass met the server', () => {
  it('an HTTP/2 session opened before drain() gets GOAWAY at once; drain resolves before its timeout', async () => {
    const server = await listening(http2.createServer((_req, res) => res.end('ok')));
    const session = await h2Session(server);
    try {
      const goaway = once(session, 'goaway');
      const timeout = 20_000;
      const start = Date.now();
      await drain(server, { timeout, idleGrace: 100 });
      const took = Date.now() - start;
      assert.equal(((await goaway) as [number])[0], http2.constants.NGHTTP2_NO_ERROR);
      assert.ok(took < timeout / 2, `drain took ${took} ms of its ${timeout} ms timeout`);
    } finally {
      session.destroy();
    }
  });

  it('an HTTP/2 session opened before handoff.serve() gets GOAWAY when the old process lets go', async () => {
    const server = await listening(http2.createServer((_req, res) => res.end('ok')));
    const session = await h2Session(server);
    try {
      const hs = await handoff.serve(tmpPath('control.sock'), { web: server }, { drainTimeout: 20_000, idleGrace: 100 });
      const goaway = once(session, 'goaway');
      const start = Date.now();
      await hs.stop();
      const took = Date.now() - start;
      await goaway;
      assert.ok(took < 10_000, `the drain took ${took} ms of its 20000 ms timeout`);
    } finally {
      session.destroy();
    }
  });
});

describe('drain: whatever is left at the deadline is closed', () => {
  it("an http.Server's upgraded (WebSocket-style) connection", async () => {
    const server = await listening(http.createServer());
    const upgraded = new Promise<net.Socket>((resolve) =>
      server.on('upgrade', (_req, socket: net.Socket) => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
        resolve(socket);
      }),
    );
    const req = http.request({ port: portOf(server), host: '127.0.0.1', headers: { Connection: 'Upgrade', Upgrade: 'test' } });
    req.end();
    const [, client] = (await once(req, 'upgrade')) as [http.IncomingMessage, net.Socket];
    const serverSide = await upgraded;
    const closed = once(client, 'close');
    await drain(server, { timeout: 200 });
    assert.equal(serverSide.destroyed, true, 'closed by the time drain() resolved');
    await closed; // and the client sees it
  });

  it("a plain net.Server's connection", async () => {
    const accepted: net.Socket[] = [];
    const server = await listening(net.createServer((s) => accepted.push(s)));
    const client = net.connect(portOf(server), '127.0.0.1');
    client.on('error', () => {});
    await once(server, 'connection');
    const closed = once(client, 'close');
    await drain(server, { timeout: 200 });
    assert.equal(accepted[0]!.destroyed, true, 'closed by the time drain() resolved');
    await closed;
  });
});

describe('drain: the clock', () => {
  it('a wall-clock step back does not keep an idle connection open until the deadline', async () => {
    const server = await listening(http.createServer((_req, res) => res.end('ok')));
    const agent = new http.Agent({ keepAlive: true });
    const realNow = Date.now;
    try {
      await new Promise<void>((resolve, reject) =>
        http.get({ port: portOf(server), host: '127.0.0.1', agent }, (res) => res.resume().on('end', resolve)).on('error', reject),
      );
      const start = performance.now();
      const drained = drain(server, { timeout: 10_000, idleGrace: 100 });
      Date.now = () => realNow() - 3600e3; // e.g. NTP steps the clock back an hour
      await drained;
      const took = performance.now() - start;
      assert.ok(took < 5000, `the idle connection was closed only at the deadline (${Math.round(took)} ms)`);
    } finally {
      Date.now = realNow;
      agent.destroy();
    }
  });
});

describe('drain: bad arguments', () => {
  it('reject with ERR_INVALID_ARG_TYPE, never throw synchronously', async () => {
    const server = net.createServer();
    const bad: Array<() => Promise<void>> = [
      () => drain(null as never),
      () => drain(42 as never),
      () => drain({} as never),
      () => drain('abc' as never),
      () => drain([server, 42] as never),
      () => drain(server, null as never),
      () => drain(server, 42 as never),
    ];
    for (const call of bad) {
      let p: Promise<void> | undefined;
      assert.doesNotThrow(() => (p = call()));
      await assert.rejects(p!, { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    }
    await assert.rejects(drain(server, { timeout: -1 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  });
});
