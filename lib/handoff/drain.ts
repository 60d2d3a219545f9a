// How the old process lets go of its listeners after a hand-off (and drain() at a stop): close its
// copies (close, never shutdown), then drain their connections the way HAProxy and Envoy do, each
// protocol in its own file: HTTP/1.x (drain-http1.ts: `Connection: close`, idle keep-alive connections
// closed after `idleGrace`), HTTP/2 (drain-http2.ts: GOAWAY), anything else (drainer.ts: left to end).
// With `closeSpread` each connection's turn comes at its own moment over that window (close-turns.ts).
// Times are monotonic (performance.now()): a wall-clock step must not cut or prolong the turns.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { debuglog } from 'node:util';
import { closeQuietly } from '../fds';
import { isHttp1, isHttp2 } from '../http-kind';
import { invalidArgType, outOfRange, validateInteger, validateObject } from '../validate';
import { drainHttp1 } from './drain-http1';
import { drainHttp2 } from './drain-http2';
import { drainPlain, type Drainer } from './drainer';
import type { HandoffListener } from './listeners';

const debug = debuglog('fdpass');

/**
 * Closes this process's copies of the listeners and drains their connections; resolves once every
 * connection has ended, or at `drainTimeout` after cutting what is left. Never throws: a listener that
 * is already closed is skipped. `migrating` gives the drainer of a server whose connections move to
 * the new process instead (undefined: drained as usual).
 */
export async function closeAndDrain(
  listeners: Iterable<HandoffListener>,
  opts: { drainTimeout: number; idleGrace: number; closeSpread: number },
  migrating?: (server: net.Server) => Drainer | undefined,
): Promise<void> {
  const drainers: Drainer[] = [];
  for (const l of listeners) {
    try {
      const migrator = l instanceof net.Server ? migrating?.(l) : undefined;
      if (migrator !== undefined) drainers.push(migrator);
      else if (typeof l === 'number') closeQuietly([l]);
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
