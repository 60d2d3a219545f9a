// Which connections a server has. Node lists them nowhere that covers them all: http's list holds
// parsers, so a connection taken over by an 'upgrade' handler (WebSocket) leaves it; net and http2
// servers keep none. Two sources together: the connections seen since fdpass met the server (serve(),
// Inheritance.server()), and the process's open handles (process._getActiveHandles(), undocumented
// but present since Node 0.x), where each accepted socket carries `.server` from accept on. The
// handle list omits unref'd sockets, the tracking those accepted before fdpass met the server.
import type * as http2 from 'node:http2';
import * as net from 'node:net';
import { isHttp2 } from '../http-kind';

const tracked = new WeakMap<net.Server, Set<net.Socket>>();
const h2Sessions = new WeakMap<net.Server, Set<http2.ServerHttp2Session>>();

/** Starts tracking a server's connections, and an HTTP/2 server's sessions (no-op when already tracked). */
export function trackConnections(server: net.Server): void {
  if (tracked.has(server)) return;
  const sockets = new Set<net.Socket>();
  tracked.set(server, sockets);
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  if (!isHttp2(server)) return;
  const sessions = new Set<http2.ServerHttp2Session>();
  h2Sessions.set(server, sessions);
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
}

/** Every connection `server` accepted that is still open (a TLS server's: the TCP sockets under TLS). */
export function connectionsOf(server: net.Server): net.Socket[] {
  const all = new Set(tracked.get(server));
  const handles = (process as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
  for (const h of handles) if (h instanceof net.Socket && (h as { server?: unknown }).server === server) all.add(h);
  return [...all].filter((s) => !s.destroyed);
}

/** The open sessions of an HTTP/2 server, tracked or found on its connections' sockets. */
export function sessionsOf(server: http2.Http2Server): Set<http2.ServerHttp2Session> {
  const sessions = new Set(h2Sessions.get(server));
  for (const socket of connectionsOf(server)) {
    const s = sessionOf(socket);
    if (s !== undefined) sessions.add(s);
  }
  return sessions;
}

// The HTTP/2 session a server socket is bound to. Node keeps it on the socket, under a symbol whose
// name says "session", or (Node 20, whose kBoundSession import is undefined) under the key 'undefined'.
// A TLS session is bound to the TLSSocket, which nothing reachable from the TCP socket names.
function sessionOf(socket: net.Socket): http2.ServerHttp2Session | undefined {
  const keys: Array<string | symbol> = [
    ...Object.getOwnPropertySymbols(socket).filter((k) => /session/i.test(k.description ?? '')),
    'undefined',
  ];
  for (const key of keys) {
    const value = (socket as unknown as Record<string | symbol, unknown>)[key];
    if (typeof (value as http2.ServerHttp2Session | undefined)?.goaway === 'function') return value as http2.ServerHttp2Session;
  }
  return undefined;
}
