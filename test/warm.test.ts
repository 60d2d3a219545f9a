// warmUp(): requests through a server's own TLS, HTTP and handler code over private socket pairs,
// before the process takes traffic. The root hooks check that no descriptor outlives a test.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { warmUp } from 'fdpass';
import { assertArgError, assertFdpassError, bad, failure } from './helpers/errors';
import { tmpPath } from './helpers/tmp';
import { selfSignedCert } from '../bench/apps/tls-cert';

function tlsFiles(): { key: Buffer; cert: Buffer } {
  const { key, cert } = selfSignedCert(path.dirname(tmpPath('x')));
  return { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
}

/** A handler that counts what it saw and answers 200 (or `status`). */
function counting(status = 200): {
  seen: string[];
  sockets: Set<unknown>;
  handler: (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;
} {
  const seen: string[] = [];
  const sockets = new Set<unknown>();
  return {
    seen,
    sockets,
    handler: (req, res) => {
      seen.push(`${req.method} ${req.url} ${String(req.headers['x-warm'])}`);
      sockets.add(req.socket);
      res.statusCode = status;
      res.end('warm');
    },
  };
}

describe('warmUp', () => {
  it('sends an HTTP/1.1 server its requests over fresh connections, with no listener', async () => {
    const c = counting();
    const server = http.createServer(c.handler);
    const started = Date.now();
    const r = await warmUp(server, { requests: 10, requestsPerConnection: 4, pace: 10, path: '/healthz', headers: { 'x-warm': 'yes' } });
    const took = Date.now() - started;
    assert.equal(server.listening, false, 'no listener was needed');
    assert.equal(r.requests, 10);
    assert.equal(r.connections, 3, '4 + 4 + 2 requests');
    assert.deepEqual(r.statuses, { 200: 10 });
    assert.deepEqual(c.seen, Array(10).fill('GET /healthz yes'));
    assert.equal(c.sockets.size, 3, 'each connection carried its requests (keep-alive)');
    // 7 pauses of 10 ms (3 + 3 + 1, between the requests of each connection) over 2 connections at
    // once: one of them waited at least 4 times (a timer counts from the loop's cached time, so it may
    // end up to a few ms early). And no longer than the call itself.
    assert.ok(r.ms >= 30 && r.ms <= took, `ms ${r.ms}, the call took ${took} ms`);
  });

  it('reports non-2xx answers instead of failing', async () => {
    const server = http.createServer(counting(404).handler);
    const r = await warmUp(server, { requests: 3, pace: 0 });
    assert.deepEqual(r.statuses, { 404: 3 });
  });

  it('warms an https server through its TLS, and HTTP/2 servers with and without TLS', async () => {
    const tls = tlsFiles();
    for (const [name, make] of [
      ['https', (h: never) => https.createServer(tls, h)],
      ['http2 secure', (h: never) => http2.createSecureServer(tls, h)],
      ['http2 secure allowHTTP1', (h: never) => http2.createSecureServer({ ...tls, allowHTTP1: true }, h)],
      ['http2 cleartext', (h: never) => http2.createServer(h)],
    ] as const) {
      const c = counting();
      const server = make(c.handler as never) as net.Server;
      const encrypted = new Set<boolean>();
      server.on('secureConnection', () => encrypted.add(true));
      const r = await warmUp(server, { requests: 6, requestsPerConnection: 3, concurrency: 1 });
      assert.deepEqual(r.statuses, { 200: 6 }, name);
      assert.equal(r.connections, 2, name);
      assert.equal(c.seen.length, 6, name);
      assert.equal(encrypted.size, name === 'http2 cleartext' ? 0 : 1, `${name}: TLS handshakes ran on the server`);
      if (name.startsWith('http2'))
        assert.ok(
          c.seen.every((s) => s.startsWith('GET / ')),
          name,
        );
    }
  });

  it('rejects with ERR_FDPASS_TIMEOUT when the server never answers, and closes every connection', async () => {
    const held: http.ServerResponse[] = [];
    const server = http.createServer((_req, res) => held.push(res));
    const closed: Promise<void>[] = [];
    server.on('connection', (s: net.Socket) => closed.push(new Promise((r) => s.once('close', () => r()))));
    const err = await failure(warmUp(server, { requests: 8, concurrency: 2, timeout: 200 }));
    assertFdpassError(err, 'ERR_FDPASS_TIMEOUT', /200 ms/);
    assert.equal(held.length, 2, 'one request waited on each of the two connections');
    await Promise.all(closed); // the server's ends closed too (the hooks check the fds)
  });

  it('rejects with the error of a request the server cut, and stops the other connections', async () => {
    let n = 0;
    const server = http.createServer((req, res) => {
      if (++n === 3) req.socket.destroy();
      else res.end('ok');
    });
    const err = await failure(warmUp(server, { requests: 20, concurrency: 2, pace: 5 }));
    assert.match(err.message, /socket hang up|ECONNRESET|EPIPE/, err.message);
    const seen = n;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(n, seen, 'no request was sent after the failure');
  });

  it('refuses what is not an HTTP server, and bad options', async () => {
    for (const v of [undefined, {}, net.createServer()]) {
      assertArgError(await failure(() => warmUp(bad(v))), TypeError, 'ERR_INVALID_ARG_TYPE', /"server" argument/);
    }
    const server = http.createServer();
    const cases: Array<[object, typeof TypeError | typeof RangeError, string, RegExp]> = [
      [{ requests: 0 }, RangeError, 'ERR_OUT_OF_RANGE', /options\.requests/],
      [{ requests: 1.5 }, RangeError, 'ERR_OUT_OF_RANGE', /options\.requests/],
      [{ requestsPerConnection: '4' }, TypeError, 'ERR_INVALID_ARG_TYPE', /options\.requestsPerConnection/],
      [{ concurrency: 65 }, RangeError, 'ERR_OUT_OF_RANGE', /options\.concurrency/],
      [{ pace: -1 }, RangeError, 'ERR_OUT_OF_RANGE', /options\.pace/],
      [{ timeout: 0 }, RangeError, 'ERR_OUT_OF_RANGE', /options\.timeout/],
      [{ path: 'healthz' }, TypeError, 'ERR_INVALID_ARG_VALUE', /options\.path/],
      [{ headers: { a: 1 } }, TypeError, 'ERR_INVALID_ARG_TYPE', /options\.headers\['a'\]/],
    ];
    for (const [opts, cls, code, message] of cases) {
      assertArgError(await failure(() => warmUp(server, bad(opts))), cls, code, message, JSON.stringify(opts));
    }
    assertArgError(await failure(() => warmUp(server, bad(null))), TypeError, 'ERR_INVALID_ARG_TYPE', /options/);
  });
});
