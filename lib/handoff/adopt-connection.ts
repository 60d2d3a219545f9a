// The new process's side of connection migration: a connection's descriptor arrives with its
// protocol, listener name, state and unread bytes, and becomes a net.Socket. An HTTP/1.1 one is
// handed to the http.Server adopted under the same listener name as a new connection (as if it had
// just been accepted there); any other is given to the application ('connection' event). Whatever
// cannot be adopted is refused: its descriptor is closed here and the old process keeps the
// connection. Reading has not begun when this returns (libuv reads on a later turn of the loop), so
// a refusal after the socket was made still leaves every byte to the old process.
import type { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { toSocket } from '../adopt';
import { closeQuietly } from '../fds';
import { isHttp1 } from '../http-kind';
import type { Wire } from './protocol';

// What net.Server's accept does for each connection, so that the server counts it (close() waits for
// it, maxConnections) and the drain of the next hand-off finds it (socket.server).
function attach(server: net.Server, socket: net.Socket): void {
  const s = socket as net.Socket & { server?: net.Server; _server?: net.Server };
  const counted = server as net.Server & { _connections: number };
  s.server = server;
  s._server = server;
  counted._connections++;
}

/** Adopts one moved connection; returns why it was refused (its fd then closed), or undefined. */
export function adoptConnection(
  w: Extract<Wire, { type: 'connection' }>,
  fd: number,
  servers: ReadonlyMap<string, net.Server>,
  events: EventEmitter,
): string | undefined {
  const server = w.listener === undefined ? undefined : servers.get(w.listener);
  if (w.protocol === 'http1') {
    if (server === undefined || !server.listening || !isHttp1(server) || server instanceof tls.Server) {
      closeQuietly([fd]);
      return `no plain HTTP/1 server was adopted as '${String(w.listener)}'`;
    }
  } else if (events.listenerCount('connection') === 0) {
    closeQuietly([fd]);
    return "the new process has no 'connection' listener";
  }
  // As net.Server's accept does (a maxConnections of 0 is no limit there too); refused, it stays there.
  const max = server?.listening ? server.maxConnections : undefined;
  if (max && (server as net.Server & { _connections: number })._connections >= max) {
    closeQuietly([fd]);
    return `the server adopted as '${String(w.listener)}' has its maxConnections (${max})`;
  }
  let socket: net.Socket;
  try {
    socket = toSocket(fd, { allowHalfOpen: (server as (net.Server & { allowHalfOpen?: boolean }) | undefined)?.allowHalfOpen ?? false });
  } catch (err) {
    closeQuietly([fd]);
    return (err as Error).message;
  }
  if (w.unread !== undefined && w.unread.length > 0) socket.unshift(Buffer.from(w.unread, 'base64'));
  try {
    if (server?.listening) attach(server, socket);
    if (w.protocol === 'http1') server!.emit('connection', socket);
    else events.emit('connection', { socket, state: w.state, listener: w.listener });
  } catch (err) {
    socket.destroy(); // our copy only: the old process keeps the connection
    return `the 'connection' handler threw: ${(err as Error).message}`;
  }
  return undefined;
}
