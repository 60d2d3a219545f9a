// HTTP/2 draining: each session gets one GOAWAY naming the last stream processed, so a stream the
// client sent while that GOAWAY was on its way is refused as soon as the client reads it (a round
// trip), never held. A proxy between client and server holds the server's bytes back to make the
// crossing happen every time: the client sends its stream after the server sent its GOAWAY and before
// the client has read it.
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { handoff } from 'fdpass';
import { selfSignedCert } from '../bench/apps/tls-cert';
import { tmpPath } from './helpers/tmp';

/** A TCP proxy to `port` for one connection whose server-to-client direction can be held back. */
async function holdingProxy(port: number): Promise<{ port: number; hold(): void; release(): void; heldBytes(): number; close(): void }> {
  let holding = false;
  const held: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  let toClient: net.Socket | undefined;
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    toClient = client;
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {}); // either side's close ends both
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d: Buffer) => upstream.write(d));
    upstream.on('data', (d: Buffer) => (holding ? held.push(d) : client.write(d)));
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    hold: () => (holding = true),
    release: () => {
      holding = false;
      for (const d of held.splice(0)) toClient?.write(d);
    },
    heldBytes: () => held.reduce((n, d) => n + d.length, 0),
    close: () => {
      proxy.close();
      for (const s of sockets) s.destroy();
    },
  };
}

function request(session: http2.ClientHttp2Session): Promise<{ status: number | undefined; rstCode: number; at: number }> {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': '/' }, { endStream: true });
    let status: number | undefined;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('error', () => {}); // the outcome is read from rstCode
    stream.on('close', () => resolve({ status, rstCode: stream.rstCode ?? 0, at: Date.now() }));
    stream.resume();
  });
}

describe('drain: HTTP/2', () => {
  it('refuses a stream that crossed its GOAWAY within a round trip, instead of holding it until idleGrace', async () => {
    const idleGrace = 1500;
    const server = http2.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const hs = await handoff.serve(tmpPath('control.sock'), { web: server }, { idleGrace, drainTimeout: 10_000 });
    const proxy = await holdingProxy((server.address() as net.AddressInfo).port);
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
    try {
      session.on('error', () => {});
      const goaway = once(session, 'goaway') as Promise<[number, number]>;
      assert.equal((await request(session)).status, 200, 'the first stream is served');

      proxy.hold();
      const stopped = hs.stop();
      // The server's GOAWAY (frame type 7, 17 bytes with its 9-byte header) is now held in the proxy.
      while (proxy.heldBytes() < 17) await new Promise((resolve) => setTimeout(resolve, 10));
      const crossing = request(session);
      await new Promise((resolve) => setTimeout(resolve, 200)); // the stream reaches the server
      const releasedAt = Date.now();
      proxy.release();

      const [code, lastStreamId] = await goaway;
      assert.equal(code, http2.constants.NGHTTP2_NO_ERROR);
      assert.equal(lastStreamId, 1, 'the GOAWAY names the last stream processed (the first), not 2^31-1');
      const c = await crossing;
      assert.equal(c.status, undefined, 'the crossing stream was not processed');
      assert.equal(c.rstCode, http2.constants.NGHTTP2_REFUSED_STREAM, 'refused: safe to retry');
      assert.ok(c.at - releasedAt < idleGrace / 3, `refused ${c.at - releasedAt} ms after the client could read the GOAWAY`);
      await stopped;
    } finally {
      session.destroy();
      proxy.close();
      server.close();
    }
  });

  // A TLS HTTP/2 server also has closeIdleConnections() (it is a tls.Server): it must still get the
  // HTTP/2 drain, or its sessions are never told to go and hold the old process until drainTimeout.
  for (const allowHTTP1 of [false, true]) {
    it(`a TLS HTTP/2 server's sessions get their GOAWAY at the hand-off (allowHTTP1: ${allowHTTP1})`, async () => {
      const files = selfSignedCert(path.dirname(tmpPath('x')));
      const tls = { key: fs.readFileSync(files.key), cert: fs.readFileSync(files.cert) };
      const server = http2.createSecureServer({ ...tls, allowHTTP1 }, (_req, res) => res.end('ok'));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const hs = await handoff.serve(tmpPath('control.sock'), { web: server }, { idleGrace: 2000, drainTimeout: 3000 });
      const session = http2.connect(`https://127.0.0.1:${(server.address() as net.AddressInfo).port}`, {
        ca: tls.cert,
        rejectUnauthorized: false,
      });
      try {
        session.on('error', () => {});
        const goaway = once(session, 'goaway').then(() => 'goaway');
        const closed = once(session, 'close').then(() => 'close');
        assert.equal((await request(session)).status, 200, 'the first stream is served');
        const stopped = hs.stop();
        // Given the HTTP/1 drain, the session saw nothing at all, not even at drainTimeout.
        let timer: NodeJS.Timeout | undefined;
        const nothing = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('nothing within 5 s'), 5000)));
        assert.equal(await Promise.race([goaway, closed, nothing]), 'goaway', 'GOAWAY before the connection closed');
        clearTimeout(timer);
        session.close();
        await stopped; // the old side finishes its drain once the session has gone
      } finally {
        session.destroy();
        server.close();
      }
    });
  }
});
