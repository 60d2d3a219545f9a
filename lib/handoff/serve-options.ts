// serve()'s options: their types (with the TSDoc an editor shows), their checks and their defaults.
// The upgrader checks and forwards the same ones.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { isHttp2 } from '../http-kind';
import type { PeerCredentials } from '../message';
import { invalidArgType, invalidArgValue, validateObject, validateInteger } from '../validate';
import { validateCloseSpread, type DrainOptions } from './drain';

const DEFAULT_TIMEOUT = 30_000;

export interface ServeOptions {
  /** Which peers may take the listeners. Default: the same uid as this process (or root). */
  allow?: (peer: PeerCredentials) => boolean;
  /**
   * How long the new process has, from its hello to saying "ready". Default 30 s. Also how long a
   * connection may stay silent before its hello: it is then told ERR_FDPASS_TIMEOUT and closed. A
   * connection that has not said hello never holds up another taker.
   */
  readyTimeout?: number;
  /** After the hand-off, how long in-flight requests get before connections are cut. Default 30 s. */
  drainTimeout?: number;
  /**
   * While draining, how long an idle HTTP keep-alive connection is left open for the client's next
   * request (answered with `Connection: close`) before it is closed; also how long an HTTP/2 session
   * stays open after its GOAWAY (it then closes once its streams are done). Default 1000 ms.
   */
  idleGrace?: number;
  /**
   * After the hand-off, the window in ms over which connections are let go one by one instead of all
   * at once (HAProxy's `close-spread-time`), so that the new process, still cold, does not meet every
   * keep-alive client at the same moment: closed by the drain (see {@link DrainOptions.closeSpread}),
   * or with `migrate` moved. Each connection's turn comes at a moment drawn uniformly in
   * [0, closeSpread) after the hand-off; until then it is served here with keep-alive as before, and
   * from then on it moves as soon as it is between requests (or, if it cannot move, is drained).
   * Default 0 (all at once); must be less than `drainTimeout`, and `closeSpread + idleGrace` should
   * be too, or the deadline cuts the last connections.
   */
  closeSpread?: number;
  /** Permission bits of the control socket file. Default 0o600. */
  mode?: number;
  /**
   * Move connections to the new process instead of draining them (issue 23). Default false. Each
   * idle HTTP/1.1 keep-alive connection of an offered plain `http.Server` (TCP or Unix) goes to the
   * new process once it is ready, and one busy then goes once its response is out; the new process
   * serves them in the http.Server it adopted under the same name. With `closeSpread` these moves
   * are spread over that window, as the drain's closes are (one option for letting go of
   * connections, moved or closed). TLS and HTTP/2 connections cannot move (their session state
   * stays in this process) and are drained. Any other connection can be moved with the server's
   * `offer()` (`hs.offer()`) until the drain ends, when the application chooses.
   */
  migrate?: boolean;
}

/** Options of a HandoffServer's `offer()` (`hs.offer()`) and an Upgrader's (`up.offer()`). */
export interface OfferOptions {
  /** The application's state of the connection, a JSON value the new process receives with it. */
  state?: unknown;
  /**
   * Bytes read from the socket that the application has not processed yet (e.g. a partial frame
   * in its parser); the new process reads them first, before the bytes Node still buffers.
   */
  unread?: Buffer;
}

/** @internal serve()'s options that shape a hand-off, defaults filled in. */
export interface ServeTiming {
  readyTimeout: number;
  drainTimeout: number;
  idleGrace: number;
  closeSpread: number;
  migrate: boolean;
}

/** @internal The defaults of serve()'s options: 30 s to be ready and to drain, 1 s idle grace, no spread, no migration. */
export function serveTiming(opts: ServeOptions): ServeTiming {
  return {
    readyTimeout: opts.readyTimeout ?? DEFAULT_TIMEOUT,
    drainTimeout: opts.drainTimeout ?? DEFAULT_TIMEOUT,
    idleGrace: opts.idleGrace ?? 1000,
    closeSpread: opts.closeSpread ?? 0,
    migrate: opts.migrate ?? false,
  };
}

/**
 * Checks offer()'s arguments: a net.Socket that is not TLS (nor the TCP socket under a TLS session)
 * nor an HTTP/2 server's, options whose `unread` is a Buffer and whose `state` serializes to JSON.
 * @internal also used by the upgrader's offer().
 */
export function validateOffer(socket: unknown, opts: OfferOptions): void {
  if (!(socket instanceof net.Socket)) throw invalidArgType('socket', 'an instance of net.Socket', socket);
  validateObject(opts as unknown, 'options');
  if (opts.unread !== undefined && !Buffer.isBuffer(opts.unread))
    throw invalidArgType('options.unread', 'an instance of Buffer', opts.unread);
  if (opts.state !== undefined) {
    let json: string | undefined;
    try {
      json = JSON.stringify(opts.state);
    } catch (err) {
      throw invalidArgValue('options.state', opts.state, `must be a JSON value (${(err as Error).message})`);
    }
    // A function or a symbol: JSON has no such value, and it would arrive as undefined.
    if (json === undefined) throw invalidArgValue('options.state', opts.state, 'must be a JSON value');
  }
  // A TLS server's connections carry TLS records: under a TLSSocket, the TCP socket is the server's too.
  const server = (socket as net.Socket & { server?: unknown }).server;
  if (socket instanceof tls.TLSSocket || server instanceof tls.Server) {
    throw invalidArgValue('socket', 'a TLS socket', 'cannot move: its TLS session stays in this process');
  }
  // An HTTP/2 server's connection in clear text (h2c): its HPACK tables and streams live in this
  // process's nghttp2 session.
  if (server instanceof net.Server && isHttp2(server)) {
    throw invalidArgValue('socket', 'an HTTP/2 connection', 'cannot move: its HTTP/2 session stays in this process');
  }
}

/**
 * Checks serve()'s timing options (readyTimeout, drainTimeout, idleGrace, closeSpread).
 * @internal also used by upgrader(), which passes them to serve() only at the upgrade.
 */
export function validateServeOptions(opts: ServeOptions): void {
  if (opts.readyTimeout !== undefined) validateInteger(opts.readyTimeout, 'options.readyTimeout', 1, 2 ** 31 - 1);
  if (opts.drainTimeout !== undefined) validateInteger(opts.drainTimeout, 'options.drainTimeout', 0, 2 ** 31 - 1);
  if (opts.idleGrace !== undefined) validateInteger(opts.idleGrace, 'options.idleGrace', 0, 2 ** 31 - 1);
  if (opts.closeSpread !== undefined) {
    validateCloseSpread(opts.closeSpread, 'options.closeSpread', opts.drainTimeout ?? DEFAULT_TIMEOUT, 'options.drainTimeout');
  }
  if (opts.migrate !== undefined && typeof opts.migrate !== 'boolean')
    throw invalidArgType('options.migrate', 'of type boolean', opts.migrate);
}
