// The old process's side of a hand-off with `migrate`, for a plain HTTP/1.x server: instead of being
// drained, each connection moves to the new process once it is between requests (its parser has no
// request begun, no response is pending or unflushed, nothing read is left unparsed); one busy at the
// hand-off keeps being served here until then, with keep-alive as before. The test and the hold of
// its reading are one synchronous block, so a request the client pipelines meanwhile is either read
// here first (the connection is then busy and stays) or left in the kernel to go with the descriptor.
// Connections the new process refuses, and all of them once it has gone, are drained as
// drain-http1.ts does: `Connection: close` on their next response, closed after `idleGrace` idle.
// With a spread (serve's closeSpread), each connection's turn to be let go, moved or else drained,
// comes at its own moment over the window (close-turns.ts): moving all of them at once pauses each
// for a round trip while a successor that is still cold takes them all in (measured: a p99 around a
// hand-off 7x the steady one). Until its turn a connection is served here with keep-alive as before.
import type * as http from 'node:http';
import type * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { HttpLike } from '../http-kind';
import { closeTurns } from './close-turns';
import { connectionsOf } from './connections';
import { type ConnectionsList, inFlight, symbolValue } from './drain-http1';
import type { Drainer } from './drainer';
import type { Migration } from './migration';
import { writesFlushed } from './socket-hold';
import { stopListening } from './stop-listening';

// Between requests: nothing of a request read (the parser's idle list; a connection that never sent
// a byte is not on it, Node's headers timeout counts from its accept), no response pending.
function betweenRequests(socket: net.Socket, idle: Set<net.Socket>): boolean {
  const s = socket as net.Socket & { _httpMessage?: http.ServerResponse | null };
  return (
    !socket.destroyed &&
    s._httpMessage == null &&
    (idle.has(socket) || socket.bytesRead === 0) &&
    socket.readableLength === 0 &&
    writesFlushed(socket)
  );
}

export function migrateHttp1(server: HttpLike, name: string, migration: Migration, idleGrace: number, spread: number): Drainer {
  const connections = symbolValue<ConnectionsList>(server, 'http.server.connections');
  const turnOf = closeTurns<net.Socket>(performance.now(), spread);
  const due = (socket: net.Socket): boolean => performance.now() >= turnOf(socket);
  const moving = new Set<net.Socket>();
  const staying = new Set<net.Socket>(); // refused, or the new process has gone: drained here
  const stays = (socket: net.Socket): boolean => staying.has(socket) || !migration.open;
  const visit = (): void => {
    if (connections === undefined || !migration.open) return;
    const now = performance.now();
    const idle = new Set(connections.idle().map((c) => c.socket));
    for (const { socket } of connections.all()) {
      if (moving.has(socket) || staying.has(socket) || now < turnOf(socket) || !betweenRequests(socket, idle)) continue;
      let offered: Promise<boolean>;
      try {
        offered = migration.offer(socket, 'http1', { listener: name });
      } catch {
        staying.add(socket); // no descriptor left: it is closing anyway
        continue;
      }
      moving.add(socket);
      void offered.then((adopted) => {
        moving.delete(socket);
        if (!adopted) staying.add(socket);
      });
    }
  };
  let scheduled = false;
  const soon = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      visit();
    });
  };
  // A response's end is when its connection may become idle: look then, not only at the next sweep
  // (and only once its turn has come: before, there is nothing to do for it).
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!due(req.socket)) {
      res.once('finish', () => {
        if (due(req.socket)) soon();
      });
    } else if (stays(req.socket)) res.shouldKeepAlive = false;
    else res.once('finish', soon);
  });
  for (const socket of connectionsOf(server)) {
    (socket as net.Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage?.once('finish', soon);
  }
  // Each turn is taken when it comes, not at the next sweep (up to 100 ms later): one timer at a
  // time, set for the earliest turn still ahead. Connections the server meets later (none accepted
  // once the listener is closed) wait for a sweep.
  const turns = (connections?.all() ?? []).map((c) => turnOf(c.socket)).sort((a, b) => a - b);
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  const wake = (): void => {
    timer = undefined;
    visit();
    const now = performance.now();
    while (next < turns.length && turns[next]! <= now) next++;
    // A timer may fire a little early (libuv counts whole ms): then the same turn is waited for again.
    if (next < turns.length && migration.open) timer = setTimeout(wake, Math.max(1, Math.ceil(turns[next]! - now)));
  };
  const stopTurns = (): void => {
    clearTimeout(timer);
    next = turns.length;
  };
  const closed = stopListening(server).then(() => {
    stopTurns();
    const interval = symbolValue<NodeJS.Timeout>(server, 'http.server.connectionsCheckingInterval');
    if (interval !== undefined) clearInterval(interval);
  });
  wake();
  const quiet = new Map<net.Socket, { bytes: number; since: number }>();
  return {
    closed,
    sweep(now) {
      visit();
      if (connections === undefined) return;
      const idle = new Set(connections.idle().map((c) => c.socket));
      for (const { socket } of connections.all()) {
        if (!stays(socket) || moving.has(socket) || now < turnOf(socket)) continue;
        const res = (socket as net.Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage;
        if (res && !res.headersSent) res.shouldKeepAlive = false;
        if (!idle.has(socket) || inFlight(socket)) {
          quiet.delete(socket);
          continue;
        }
        const seen = quiet.get(socket);
        if (seen === undefined || seen.bytes !== socket.bytesRead) quiet.set(socket, { bytes: socket.bytesRead, since: now });
        else if (now - seen.since >= idleGrace) {
          quiet.delete(socket);
          socket.destroy();
        }
      }
    },
    cut() {
      stopTurns();
      server.closeAllConnections();
      for (const socket of connectionsOf(server)) socket.destroy();
    },
  };
}
