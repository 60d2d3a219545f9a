// How the old process lets go of its listeners after a hand-off: close its copies (close, never
// shutdown), then drain its connections the way HAProxy and Envoy do. HTTP/1.x: every further
// response says `Connection: close`; a keep-alive connection is closed only once it has stayed idle
// for `idleGrace`. HTTP/2: GOAWAY, so clients open their next streams on a new connection.
// Closing an idle keep-alive connection at once races with the client's next request on it (the
// client then sees a reset): that is what broke every keep-alive client on every hand-off.
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import * as net from 'node:net';
import { debuglog } from 'node:util';
import { closeQuietly } from '../channel';
import { invalidArgType, validateInteger } from '../validate';
import type { HandoffListener } from './serve';

const debug = debuglog('fdpass');

// Node keeps an http(s).Server's connections (HTTPParser objects with .socket) behind this symbol;
// closeIdleConnections() reads the same list.
interface ConnectionsList {
  all(): Array<{ socket: net.Socket }>;
  idle(): Array<{ socket: net.Socket }>;
}
interface HttpLike extends net.Server {
  closeIdleConnections(): void;
  closeAllConnections(): void;
}

function symbolValue<T>(obj: object, description: string): T | undefined {
  const sym = Object.getOwnPropertySymbols(obj).find((s) => s.description === description);
  return sym === undefined ? undefined : ((obj as Record<symbol, unknown>)[sym] as T);
}

function isHttp1(server: net.Server): server is HttpLike {
  return typeof (server as Partial<HttpLike>).closeIdleConnections === 'function';
}

function isHttp2(server: net.Server): server is http2.Http2Server {
  return typeof (server as Partial<http2.Http2Server>).updateSettings === 'function';
}

// HTTP/2 servers keep no list of their sessions: track them from the moment fdpass meets the server
// (serve() or Inheritance.server()). Sessions opened before that are only cut at the drain deadline.
const NGHTTP2_NO_ERROR = 0; // not imported: node:http2 loads only for apps that use it

const h2Sessions = new WeakMap<net.Server, Set<http2.ServerHttp2Session>>();

/** Starts tracking an HTTP/2 server's sessions (no-op for other servers, or when already tracked). */
export function trackSessions(server: net.Server): void {
  if (!isHttp2(server) || h2Sessions.has(server)) return;
  const sessions = new Set<http2.ServerHttp2Session>();
  h2Sessions.set(server, sessions);
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
}

/**
 * libuv unlinks a Unix socket's path when the server that bound it closes (uv_pipe_close), which would
 * take the name away from the new process. Keep a second hard link across the close and move it back:
 * the name is missing only between libuv's unlink and the rename, a few microseconds.
 * (A listener adopted from an fd has no path for libuv to unlink; then the spare link just goes.)
 */
function keepSocketPath(server: net.Server): (() => void) | undefined {
  const path = server.address();
  if (typeof path !== 'string' || path.startsWith('\0') || path.startsWith('@')) return undefined;
  const spare = `${path}.fdpass-${process.pid}`;
  try {
    if (!fs.lstatSync(path).isSocket()) return undefined;
    fs.linkSync(path, spare);
  } catch (err) {
    debug('handoff: cannot keep %s across close: %s', path, (err as Error).message);
    return undefined;
  }
  return () => {
    try {
      fs.renameSync(spare, path); // a no-op when libuv left `path` alone (same inode)
      if (fs.existsSync(spare)) fs.unlinkSync(spare);
    } catch (err) {
      debug('handoff: restoring %s: %s', path, (err as Error).message);
    }
  };
}

/** One server's drain: started at once, finished (or cut) at the deadline. */
interface Drainer {
  /** Resolves when the server's last connection has ended. */
  closed: Promise<void>;
  /** Called every sweep: closes what has stayed idle long enough. */
  sweep(now: number): void;
  /** The deadline: cut whatever is left. */
  cut(): void;
}

// Stops accepting without Node's http close(), which also closes idle connections at once
// (httpServerPreClose): net.Server's own close() leaves the connections to the drain.
function stopListening(server: net.Server): Promise<void> {
  const restore = keepSocketPath(server);
  const closed = new Promise<void>((resolve) => {
    net.Server.prototype.close.call(server, (err?: Error) => {
      if (err) debug('handoff: closing a listener: %s', err.message); // e.g. it was closed already
      resolve();
    });
  });
  restore?.();
  return closed;
}

function inFlight(socket: net.Socket): boolean {
  const res = (socket as net.Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage;
  return res != null && !res.writableFinished;
}

function drainHttp1(server: HttpLike, idleGrace: number): Drainer {
  const connections = symbolValue<ConnectionsList>(server, 'http.server.connections');
  // Every response from now on ends its connection (Node then writes `Connection: close`).
  server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.shouldKeepAlive = false;
  });
  for (const c of connections?.all() ?? []) {
    const res = (c.socket as net.Socket & { _httpMessage?: http.ServerResponse })._httpMessage;
    if (res && !res.headersSent) res.shouldKeepAlive = false; // in flight: its answer closes
  }
  // An idle connection is closed once nothing has arrived on it for idleGrace.
  const quiet = new Map<net.Socket, { bytes: number; since: number }>();
  const closed = stopListening(server).then(() => {
    const interval = symbolValue<NodeJS.Timeout>(server, 'http.server.connectionsCheckingInterval');
    if (interval !== undefined) clearInterval(interval);
  });
  return {
    closed,
    sweep(now) {
      if (connections === undefined) return; // a Node without the list: the deadline does it
      const idle = new Set(connections.idle().map((c) => c.socket).filter((s) => !inFlight(s)));
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
    },
  };
}

function drainHttp2(server: http2.Http2Server, idleGrace: number): Drainer {
  const sessions = h2Sessions.get(server) ?? new Set<http2.ServerHttp2Session>();
  // RFC 9113 §6.8: first a GOAWAY naming the highest stream id (clients stop opening streams here
  // but nothing in flight is refused), then after the grace period the real one; close() waits for
  // the streams still open and ends the session.
  const notice = (s: http2.ServerHttp2Session): void => {
    if (!s.closed && !s.destroyed) s.goaway(NGHTTP2_NO_ERROR, 2 ** 31 - 1);
  };
  server.on('session', notice); // accepted just before our close took effect
  sessions.forEach(notice);
  const closed = stopListening(server);
  const started = Date.now();
  let closing = false;
  return {
    closed,
    sweep(now) {
      if (closing || now - started < idleGrace) return;
      closing = true;
      for (const s of sessions) if (!s.closed && !s.destroyed) s.close();
    },
    cut() {
      for (const s of sessions) s.destroy();
    },
  };
}

/**
 * Closes this process's copies of the listeners and drains their connections; resolves once every
 * connection has ended, or at `drainTimeout` after cutting what is left. Never throws: a listener that
 * is already closed is skipped.
 */
export async function closeAndDrain(listeners: Iterable<HandoffListener>, opts: { drainTimeout: number; idleGrace: number }): Promise<void> {
  const drainers: Drainer[] = [];
  const waits: Promise<void>[] = [];
  for (const l of listeners) {
    try {
      if (typeof l === 'number') closeQuietly([l]);
      else if (l instanceof dgram.Socket) l.close();
      else if (isHttp1(l)) drainers.push(drainHttp1(l, opts.idleGrace));
      else if (isHttp2(l)) drainers.push(drainHttp2(l, opts.idleGrace));
      else waits.push(stopListening(l));
    } catch (err) {
      // e.g. ERR_SOCKET_DGRAM_NOT_RUNNING: the application closed it itself meanwhile.
      debug('handoff: closing a listener: %s', (err as Error).message);
    }
  }
  waits.push(...drainers.map((d) => d.closed));
  const sweep = setInterval(() => {
    const now = Date.now();
    drainers.forEach((d) => d.sweep(now));
  }, Math.max(10, Math.min(100, opts.idleGrace / 4)));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), opts.drainTimeout);
  });
  const how = await Promise.race([Promise.all(waits).then(() => 'drained' as const), deadline]);
  clearInterval(sweep);
  clearTimeout(timer);
  if (how === 'deadline') {
    debug('handoff: drain deadline reached, closing remaining connections');
    drainers.forEach((d) => d.cut());
  }
}

/** Options of {@link drain}. */
export interface DrainOptions {
  /** Milliseconds after which whatever connections are left are closed; default 30000. */
  timeout?: number;
  /** Milliseconds an idle HTTP keep-alive connection may stay open before it is closed; default 1000. */
  idleGrace?: number;
}

/**
 * Stops accepting on `servers` and drains their connections gracefully, for a process told to stop
 * (SIGTERM from `fdpass run` or systemd) while clients still hold keep-alive connections: unlike
 * Node's http `close()`, which closes idle keep-alive connections at once (their clients' next
 * request then fails), every further HTTP/1.x response carries `Connection: close`, an idle
 * connection is closed once it has stayed idle for `idleGrace`, HTTP/2 sessions get GOAWAY, and at
 * `timeout` whatever is left is closed. Closing drops only this process's copy of a listener: a
 * listener shared with another process (a new generation) keeps accepting there. Resolves once every
 * connection has ended; never rejects.
 *
 * @example
 * process.once('SIGTERM', () => fdpass.drain(server).then(() => process.exit(0)));
 */
export function drain(servers: net.Server | dgram.Socket | Iterable<net.Server | dgram.Socket>, opts: DrainOptions = {}): Promise<void> {
  const list = servers instanceof net.Server || servers instanceof dgram.Socket ? [servers] : [...servers];
  for (const s of list) {
    if (!(s instanceof net.Server) && !(s instanceof dgram.Socket)) {
      return Promise.reject(invalidArgType('servers', 'a net.Server, a dgram.Socket or an iterable of them', s));
    }
  }
  try {
    if (opts.timeout !== undefined) validateInteger(opts.timeout, 'options.timeout', 0, 2 ** 31 - 1);
    if (opts.idleGrace !== undefined) validateInteger(opts.idleGrace, 'options.idleGrace', 0, 2 ** 31 - 1);
  } catch (err) {
    return Promise.reject(err);
  }
  return closeAndDrain(list, { drainTimeout: opts.timeout ?? 30000, idleGrace: opts.idleGrace ?? 1000 });
}
