// The drain of an HTTP/2 server: GOAWAY at each session's turn, so clients open their next streams
// on a new connection; the session is closed `idleGrace` later, once its streams are done.
import type * as http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import { closeTurns } from './close-turns';
import { connectionsOf, sessionsOf } from './connections';
import type { Drainer } from './drainer';
import { stopListening } from './stop-listening';

const NGHTTP2_NO_ERROR = 0; // not imported: node:http2 loads only for apps that use it

export function drainHttp2(server: http2.Http2Server, idleGrace: number, closeSpread: number): Drainer {
  const sessions = new Set<http2.ServerHttp2Session>();
  const add = (s: http2.ServerHttp2Session): void => {
    if (sessions.has(s)) return;
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  };
  sessionsOf(server).forEach(add);
  const turnOf = closeTurns<http2.ServerHttp2Session>(performance.now(), closeSpread);
  // At the session's turn, GOAWAY naming the last stream processed: open streams finish, the client
  // opens its next ones elsewhere, and a stream it sent as the GOAWAY was on the way is refused by it
  // within a round trip (never processed, safe to retry: RFC 9113 §8.7). idleGrace later, close()
  // ends the session once its streams are done. (nghttp2 stops reading once its GOAWAY is out and no
  // stream is open, so the client's own hang-up is only seen then; closing at once instead could
  // reset the connection before the client has read the GOAWAY.) RFC 9113 §6.8's first GOAWAY naming
  // 2^31-1, with streams crossing it still served, cannot be sent from Node: session.goaway() is
  // nghttp2_submit_goaway, after which nghttp2 ignores every new stream, so such a "notice" held a
  // crossing stream unanswered until the final GOAWAY, idleGrace later.
  const told = new Map<http2.ServerHttp2Session, number>();
  const visit = (s: http2.ServerHttp2Session, now: number): void => {
    if (s.closed || s.destroyed) return;
    const since = told.get(s);
    if (since === undefined) {
      if (now < turnOf(s)) return;
      s.goaway(NGHTTP2_NO_ERROR, 0); // 0: the last stream processed
      told.set(s, now);
    } else if (now - since >= idleGrace) {
      s.close();
    }
  };
  server.on('session', (s: http2.ServerHttp2Session) => {
    // accepted just before our close took effect
    add(s);
    visit(s, performance.now());
  });
  const start = performance.now();
  sessions.forEach((s) => visit(s, start));
  const closed = stopListening(server);
  return {
    closed,
    sweep(now) {
      for (const s of sessions) visit(s, now);
    },
    cut() {
      for (const s of sessions) s.destroy();
      for (const socket of connectionsOf(server)) socket.destroy(); // e.g. TLS sessions opened before we met the server
    },
  };
}
