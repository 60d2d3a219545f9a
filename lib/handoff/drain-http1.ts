// The drain of an HTTP/1.x server: every response once its connection's turn has come says
// `Connection: close`; a keep-alive connection is closed only once it has stayed idle for `idleGrace`.
// Closing an idle keep-alive connection at once races with the client's next request on it (the
// client then sees a reset): that is what broke every keep-alive client on every hand-off.
import type * as http from 'node:http';
import type * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { HttpLike } from '../http-kind';
import { closeTurns } from './close-turns';
import { connectionsOf } from './connections';
import type { Drainer } from './drainer';
import { stopListening } from './stop-listening';

// Node keeps an http(s).Server's connections (HTTPParser objects with .socket) behind this symbol;
// closeIdleConnections() reads the same list.
export interface ConnectionsList {
  all(): Array<{ socket: net.Socket }>;
  idle(): Array<{ socket: net.Socket }>;
}

export function symbolValue<T>(obj: object, description: string): T | undefined {
  const sym = Object.getOwnPropertySymbols(obj).find((s) => s.description === description);
  return sym === undefined ? undefined : ((obj as Record<symbol, unknown>)[sym] as T);
}

export function inFlight(socket: net.Socket): boolean {
  const res = (socket as net.Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage;
  return res != null && !res.writableFinished;
}

export function drainHttp1(server: HttpLike, idleGrace: number, closeSpread: number): Drainer {
  const connections = symbolValue<ConnectionsList>(server, 'http.server.connections');
  const turnOf = closeTurns<net.Socket>(performance.now(), closeSpread);
  // Every response once its connection's turn has come ends the connection (Node then writes
  // `Connection: close`); before it, the connection stays keep-alive.
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (performance.now() >= turnOf(req.socket)) res.shouldKeepAlive = false;
  });
  const closeInFlight = (now: number): void => {
    for (const c of connections?.all() ?? []) {
      const res = (c.socket as net.Socket & { _httpMessage?: http.ServerResponse })._httpMessage;
      if (res && !res.headersSent && now >= turnOf(c.socket)) res.shouldKeepAlive = false; // its answer closes
    }
  };
  closeInFlight(performance.now());
  // An idle connection whose turn has come is closed once nothing has arrived on it for idleGrace.
  const quiet = new Map<net.Socket, { bytes: number; since: number }>();
  const closed = stopListening(server).then(() => {
    const interval = symbolValue<NodeJS.Timeout>(server, 'http.server.connectionsCheckingInterval');
    if (interval !== undefined) clearInterval(interval);
  });
  return {
    closed,
    sweep(now) {
      if (connections === undefined) return; // a Node without the list: the deadline does it
      if (closeSpread > 0) closeInFlight(now); // answers begun before their connection's turn
      const idle = new Set(
        connections
          .idle()
          .map((c) => c.socket)
          .filter((s) => !inFlight(s) && now >= turnOf(s)),
      );
      for (const socket of quiet.keys()) if (!idle.has(socket)) quiet.delete(socket);
      for (const socket of idle) {
        const seen = quiet.get(socket);
        if (seen === undefined || seen.bytes !== socket.bytesRead) {
          quiet.set(socket, { bytes: socket.bytesRead, since: now });
        } else if (now - seen.since >= idleGrace) {
          quiet.delete(socket);
          socket.destroy();
        }
      }
    },
    cut() {
      server.closeAllConnections();
      for (const socket of connectionsOf(server)) socket.destroy(); // upgraded (WebSocket) connections
    },
  };
}
