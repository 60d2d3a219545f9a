// How the old process lets go of its listeners after a hand-off: close its copies (close, never
// shutdown), then drain its connections the way HAProxy and Envoy do. HTTP/1.x: every further
// response says `Connection: close`; a keep-alive connection is closed only once it has stayed idle
// for `idleGrace`. HTTP/2: GOAWAY, so clients open their next streams on a new connection.
// With `closeSpread` (HAProxy's close-spread-time), each connection's turn comes at its own moment,
// drawn uniformly over that window, so keep-alive clients do not all reconnect to a cold successor at once.
// Times are monotonic (performance.now()): a wall-clock step must not cut or prolong the turns.
// Closing an idle keep-alive connection at once races with the client's next request on it (the
// client then sees a reset): that is what broke every keep-alive client on every hand-off.
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { debuglog } from 'node:util';
import { closeQuietly } from '../fds';
import { isHttp1, isHttp2, type HttpLike } from '../http-kind';
import { invalidArgType, outOfRange, validateInteger, validateObject } from '../validate';
import type { HandoffListener } from './listeners';

const debug = debuglog('fdpass');

// Node keeps an http(s).Server's connections (HTTPParser objects with .socket) behind this symbol;
// closeIdleConnections() reads the same list.
interface ConnectionsList {
  all(): Array<{ socket: net.Socket }>;
  idle(): Array<{ socket: net.Socket }>;
}

function symbolValue<T>(obj: object, description: string): T | undefined {
  const sym = Object.getOwnPropertySymbols(obj).find((s) => s.description === description);
  return sym === undefined ? undefined : ((obj as Record<symbol, unknown>)[sym] as T);
}

const NGHTTP2_NO_ERROR = 0; // not imported: node:http2 loads only for apps that use it

// Node lists a server's connections nowhere that covers them all: http's list holds parsers, so a
// connection taken over by an 'upgrade' handler (WebSocket) leaves it; net and http2 servers keep
// none. Two sources together: the connections seen since fdpass met the server (serve(),
// Inheritance.server()), and the process's open handles (process._getActiveHandles(), undocumented
// but present since Node 0.x), where each accepted socket carries `.server` from accept on. The
// handle list omits unref'd sockets, the tracking those accepted before fdpass met the server.
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
function connectionsOf(server: net.Server): net.Socket[] {
  const all = new Set(tracked.get(server));
  const handles = (process as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
  for (const h of handles) if (h instanceof net.Socket && (h as { server?: unknown }).server === server) all.add(h);
  return [...all].filter((s) => !s.destroyed);
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

/** When each connection's turn to close comes: drawn uniformly over [start, start + spread). */
function closeTurns<K extends object>(start: number, spread: number): (key: K) => number {
  const turns = new WeakMap<K, number>();
  return (key) => {
    let turn = turns.get(key);
    if (turn === undefined) {
      turn = start + Math.floor(Math.random() * spread);
      turns.set(key, turn);
    }
    return turn;
  };
}

function drainHttp1(server: HttpLike, idleGrace: number, closeSpread: number): Drainer {
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

function drainHttp2(server: http2.Http2Server, idleGrace: number, closeSpread: number): Drainer {
  const sessions = new Set<http2.ServerHttp2Session>();
  const add = (s: http2.ServerHttp2Session): void => {
    if (sessions.has(s)) return;
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  };
  h2Sessions.get(server)?.forEach(add);
  for (const socket of connectionsOf(server)) {
    const s = sessionOf(socket);
    if (s !== undefined) add(s);
  }
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

// A server whose protocol fdpass does not know: its connections end when their clients or the
// application end them, or at the deadline.
function drainPlain(server: net.Server): Drainer {
  return {
    closed: stopListening(server),
    sweep() {},
    cut() {
      for (const socket of connectionsOf(server)) socket.destroy();
    },
  };
}

/**
 * Closes this process's copies of the listeners and drains their connections; resolves once every
 * connection has ended, or at `drainTimeout` after cutting what is left. Never throws: a listener that
 * is already closed is skipped.
 */
export async function closeAndDrain(
  listeners: Iterable<HandoffListener>,
  opts: { drainTimeout: number; idleGrace: number; closeSpread: number },
): Promise<void> {
  const drainers: Drainer[] = [];
  for (const l of listeners) {
    try {
      if (typeof l === 'number') closeQuietly([l]);
      else if (l instanceof dgram.Socket) l.close();
      else if (isHttp1(l)) drainers.push(drainHttp1(l, opts.idleGrace, opts.closeSpread));
      else if (isHttp2(l)) drainers.push(drainHttp2(l, opts.idleGrace, opts.closeSpread));
      else drainers.push(drainPlain(l));
    } catch (err) {
      // e.g. ERR_SOCKET_DGRAM_NOT_RUNNING: the application closed it itself meanwhile.
      debug('handoff: closing a listener: %s', (err as Error).message);
    }
  }
  const waits = drainers.map((d) => d.closed);
  const sweep = setInterval(
    () => {
      const now = performance.now();
      drainers.forEach((d) => d.sweep(now));
    },
    Math.max(10, Math.min(100, opts.idleGrace / 4)),
  );
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
  /**
   * Milliseconds over which the connections' closes are spread (HAProxy's `close-spread-time`);
   * default 0: all at once. Each connection gets its turn at a moment drawn uniformly in
   * [0, closeSpread) after the drain starts; until then it is served with keep-alive as before, the
   * first HTTP/1.x response after it carries `Connection: close`, and an idle connection is closed
   * once it has stayed idle for `idleGrace` past its turn (HTTP/2: the session's first GOAWAY comes
   * at its turn, the final one `idleGrace` later). So keep-alive clients move to the new process a
   * few at a time instead of all at once, and the last may leave up to `closeSpread + idleGrace`
   * after the start. Must be less than `timeout` (a RangeError otherwise); choose
   * `closeSpread + idleGrace` below `timeout` too, or the deadline cuts the last idle connections.
   */
  closeSpread?: number;
}

/**
 * Checks a drain's `closeSpread` against its drain timeout: an integer >= 0 and < the timeout
 * (0 when the timeout is 0), so every connection's turn comes before the deadline cuts it.
 * @internal
 */
export function validateCloseSpread(value: unknown, name: string, timeout: number, timeoutName: string): asserts value is number {
  validateInteger(value, name, 0, 2 ** 31 - 1);
  if (value > 0 && value >= timeout) throw outOfRange(name, `an integer >= 0 and < ${timeoutName} (${timeout})`, value);
}

/**
 * Stops accepting on `servers` and drains their connections gracefully. For a process told to stop
 * (SIGTERM from `fdpass run` or systemd) while clients still hold keep-alive connections: unlike
 * Node's http `close()`, which closes idle keep-alive connections at once (their clients' next
 * request then fails), every further HTTP/1.x response carries `Connection: close`, an idle
 * connection is closed once it has stayed idle for `idleGrace`, HTTP/2 sessions get GOAWAY, and at
 * `timeout` whatever is left is closed. Closing drops only this
 * process's copy of a listener: a listener shared with another process (a new generation) keeps
 * accepting there. Resolves once every connection has ended, or at the deadline once every
 * connection left is closed (upgraded WebSocket connections and plain `net.Server` connections
 * included); rejects only on bad arguments. A WebSocket or plain `net.Server` connection accepted
 * before fdpass met the server (here, or at `handoff.serve()`/`upgrader()`) that the application
 * `unref()`'d is not seen (Node's open-handle list leaves it out): it stays open. With
 * `closeSpread`, connections are let go one by one over that window instead of all at once (see
 * {@link DrainOptions.closeSpread}).
 *
 * @example
 * process.once('SIGTERM', () => fdpass.drain(server).then(() => process.exit(0)));
 */
export function drain(servers: net.Server | dgram.Socket | Iterable<net.Server | dgram.Socket>, opts: DrainOptions = {}): Promise<void> {
  const expected = 'a net.Server, a dgram.Socket or an iterable of them';
  let list: unknown[];
  try {
    if (servers instanceof net.Server || servers instanceof dgram.Socket) list = [servers];
    else if (typeof (servers as Partial<Iterable<unknown>> | null)?.[Symbol.iterator] === 'function' && typeof servers !== 'string')
      list = [...servers];
    else throw invalidArgType('servers', expected, servers);
    for (const s of list) if (!(s instanceof net.Server) && !(s instanceof dgram.Socket)) throw invalidArgType('servers', expected, s);
    validateObject(opts as unknown, 'options');
    if (opts.timeout !== undefined) validateInteger(opts.timeout, 'options.timeout', 0, 2 ** 31 - 1);
    if (opts.idleGrace !== undefined) validateInteger(opts.idleGrace, 'options.idleGrace', 0, 2 ** 31 - 1);
    if (opts.closeSpread !== undefined)
      validateCloseSpread(opts.closeSpread, 'options.closeSpread', opts.timeout ?? 30000, 'options.timeout');
  } catch (err) {
    return Promise.reject(err);
  }
  return closeAndDrain(list as Array<net.Server | dgram.Socket>, {
    drainTimeout: opts.timeout ?? 30000,
    idleGrace: opts.idleGrace ?? 1000,
    closeSpread: opts.closeSpread ?? 0,
  });
}
