// Hot restart: an old process hands its listening sockets to a new one over a control socket,
// closes its own copies only after the new one says it is ready, then drains (DESIGN.md §7).
// The very same sockets move, so connections waiting in the accept queue are never dropped.
import * as dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { debuglog } from 'node:util';
import { Channel, MAX_FDS_PER_MESSAGE, closeQuietly, type PeerCredentials } from './channel';
import { connect, listen, sameUser, type ChannelServer } from './endpoints';
import { FdpassError, FdpassSystemError } from './errors';
import { fdOf, inspect, toDgram, toServer } from './adopt';
import { invalidArgType, invalidArgValue, validateInteger, validateObject } from './validate';

const debug = debuglog('fdpass');

/** The control protocol's version; a peer speaking another one is refused cleanly. */
export const HANDOFF_PROTOCOL_VERSION = 1;

/** What the old process can hand over: servers (net, http, https, Unix), UDP sockets, raw fds. */
export type HandoffListener = net.Server | dgram.Socket | number;

export type ListenerKind = 'tcp' | 'unix' | 'udp' | 'other';

export interface ServeOptions {
  /** Which peers may take the listeners. Default: the same uid as this process (or root). */
  allow?: (peer: PeerCredentials) => boolean;
  /** How long the new process has, from connecting to saying "ready". Default 30 s. */
  readyTimeout?: number;
  /** After the hand-off, how long in-flight requests get before connections are cut. Default 30 s. */
  drainTimeout?: number;
  /** Permission bits of the control socket file. Default 0o600. */
  mode?: number;
}

export interface TakeOptions {
  /** Take only these listeners (default: all). An unknown name is an error. */
  names?: string[];
  /** Give up on an unresponsive old process after this long. Default 30 s. */
  timeout?: number;
  /** Which old processes to trust. Default: the same uid as this process (or root). */
  allow?: (peer: PeerCredentials) => boolean;
}

type Wire =
  | { v: number; type: 'hello'; names?: string[] }
  | { v: number; type: 'listeners'; entries: Array<{ name: string; kind: ListenerKind }> }
  | { v: number; type: 'done'; count: number }
  | { v: number; type: 'ready' }
  | { v: number; type: 'ack' }
  | { v: number; type: 'error'; code: string; message: string };

// JSON text per batch stays well under the default 64 KiB message size.
const MAX_BATCH_BYTES = 48 * 1024;

type WireBody = Wire extends infer T ? (T extends unknown ? Omit<T, 'v'> : never) : never;

function encode(msg: WireBody): Buffer {
  return Buffer.from(JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION, ...msg }));
}

function decode(data: Buffer): Wire {
  let msg: unknown;
  try {
    msg = JSON.parse(data.toString('utf8'));
  } catch {
    throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', 'the peer sent a message that is not JSON');
  }
  const m = msg as { v?: unknown; type?: unknown };
  if (m === null || typeof m !== 'object' || typeof m.type !== 'string') {
    throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', 'the peer sent a malformed message');
  }
  if (m.v !== HANDOFF_PROTOCOL_VERSION) {
    throw new FdpassError('ERR_FDPASS_HANDOFF_VERSION', `the peer speaks hand-off protocol version ${String(m.v)}, this process ${HANDOFF_PROTOCOL_VERSION}`);
  }
  return msg as Wire;
}

function kindOfListener(fd: number): ListenerKind {
  const s = inspect(fd).socket;
  if (s === undefined) return 'other';
  if (s.type === 'dgram' && (s.domain === 'inet' || s.domain === 'inet6')) return 'udp';
  if (s.type === 'stream' && s.domain === 'unix') return 'unix';
  if (s.type === 'stream' && (s.domain === 'inet' || s.domain === 'inet6')) return 'tcp';
  return 'other';
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

/** Splits entries into messages of at most 253 fds and MAX_BATCH_BYTES of JSON. */
function batches<T extends { name: string }>(entries: T[]): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const e of entries) {
    const size = Buffer.byteLength(e.name) + 40;
    if (current.length === MAX_FDS_PER_MESSAGE || (current.length > 0 && bytes + size > MAX_BATCH_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(e);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function validateListeners(listeners: unknown): Map<string, HandoffListener> {
  validateObject(listeners, 'listeners');
  const map = new Map<string, HandoffListener>();
  for (const [name, value] of Object.entries(listeners)) {
    if (Buffer.byteLength(name) > 1024) throw invalidArgValue(`listeners.${name.slice(0, 20)}...`, name, 'has a name longer than 1024 bytes');
    if (!(typeof value === 'number' || value instanceof net.Server || value instanceof dgram.Socket)) {
      throw invalidArgType(`listeners.${name}`, 'of type number or an instance of net.Server or dgram.Socket', value);
    }
    map.set(name, value);
  }
  if (map.size === 0) throw invalidArgValue('listeners', listeners, 'must name at least one listener');
  return map;
}

/**
 * The old process's side: serves a control socket from which one new process at a time can take the
 * listeners. Events:
 * - `'start'` (peer): a new process connected and asked for the listeners
 * - `'rollback'` (error, peer): it failed before saying ready; nothing changed here, we keep serving
 * - `'handoff'` (peer): it is ready; our copies are closed and draining has begun
 * - `'drained'`: every connection of ours has ended (or the drain deadline cut them)
 * - `'error'`: a problem with the control socket itself
 */
export class HandoffServer extends EventEmitter {
  /** Resolves once the listeners were handed off and this process has drained. */
  readonly drained: Promise<void>;
  #control: ChannelServer;
  #listeners: Map<string, HandoffListener>;
  #opts: Required<Pick<ServeOptions, 'readyTimeout' | 'drainTimeout'>>;
  #busy = false;
  #done = false;
  #resolveDrained!: () => void;

  /** @internal Use serve(). */
  constructor(control: ChannelServer, listeners: Map<string, HandoffListener>, opts: ServeOptions) {
    super();
    this.#control = control;
    this.#listeners = listeners;
    this.#opts = { readyTimeout: opts.readyTimeout ?? 30_000, drainTimeout: opts.drainTimeout ?? 30_000 };
    this.drained = new Promise((resolve) => (this.#resolveDrained = resolve));
    control.on('connection', (ch: Channel) => void this.#session(ch));
    control.on('error', (err: Error) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
      else debug('handoff control socket: %s', err.message);
    });
  }

  /** The control socket's path (or '\0name'). */
  get path(): string {
    return this.#control.path;
  }

  /** True while a new process is taking the listeners. */
  get busy(): boolean {
    return this.#busy;
  }

  /** Stops offering the listeners (they stay open and keep serving here). */
  close(): Promise<void> {
    return this.#control.close();
  }

  async #session(ch: Channel): Promise<void> {
    if (this.#busy || this.#done) {
      debug('handoff: refusing a second peer while busy');
      await ch.send({ data: encode({ type: 'error', code: 'ERR_FDPASS_HANDOFF_BUSY', message: 'another hand-off is in progress' }) }).catch(() => {});
      await ch.close();
      return;
    }
    this.#busy = true;
    const peer = ch.peer;
    const deadline = Date.now() + this.#opts.readyTimeout;
    const remaining = (): number => Math.max(1, deadline - Date.now());
    try {
      const hello = decode((await this.#receive(ch, remaining())).data);
      if (hello.type !== 'hello') throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected hello, got ${hello.type}`);
      this.emit('start', peer);
      const names = hello.names ?? [...this.#listeners.keys()];
      const unknown = names.filter((n) => !this.#listeners.has(n));
      if (unknown.length > 0) {
        throw new FdpassError('ERR_FDPASS_HANDOFF_UNKNOWN_NAME', `no listener named ${unknown.map((n) => `'${n}'`).join(', ')}`);
      }
      const entries = names.map((name) => {
        const fd = fdOf(this.#listeners.get(name)!, `listeners.${name}`);
        return { name, fd, kind: kindOfListener(fd) };
      });
      for (const batch of batches(entries)) {
        await ch.send({ data: encode({ type: 'listeners', entries: batch.map(({ name, kind }) => ({ name, kind })) }), fds: batch.map((e) => e.fd) });
      }
      await ch.send({ data: encode({ type: 'done', count: entries.length }) });
      const ready = decode((await this.#receive(ch, remaining())).data);
      if (ready.type !== 'ready') throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected ready, got ${ready.type}`);
    } catch (err) {
      this.#busy = false;
      const reason = err instanceof Error ? err : new Error(String(err));
      debug('handoff: rollback (%s)', reason.message);
      const code = (reason as FdpassError).code;
      if (code === 'ERR_FDPASS_HANDOFF_PROTOCOL' || code === 'ERR_FDPASS_HANDOFF_VERSION' || code === 'ERR_FDPASS_HANDOFF_UNKNOWN_NAME') {
        // Tell the peer why, so it fails with the same code instead of a bare disconnect.
        await ch.send({ data: encode({ type: 'error', code, message: reason.message }) }).catch(() => {});
      }
      ch.destroy();
      this.emit('rollback', reason, peer);
      return;
    }
    // The new process serves: from here on, ours go.
    this.#done = true;
    await this.#control.close();
    const closing = this.#closeListeners();
    await ch.send({ data: encode({ type: 'ack' }) }).catch(() => {});
    await ch.close();
    this.#busy = false;
    debug('handoff: complete to pid %d', peer.pid);
    this.emit('handoff', peer);
    await this.#drain(closing);
    this.emit('drained');
    this.#resolveDrained();
  }

  async #receive(ch: Channel, timeout: number): Promise<{ data: Buffer }> {
    const m = await ch.receive({ timeout }).catch((err: FdpassError) => {
      if (err.code === 'ERR_FDPASS_CLOSED') throw new FdpassError('ERR_FDPASS_CLOSED', 'the new process disconnected before it was ready');
      if (err.code === 'ERR_FDPASS_TIMEOUT') throw new FdpassError('ERR_FDPASS_TIMEOUT', `the new process was not ready within ${this.#opts.readyTimeout} ms`);
      throw err;
    });
    closeQuietly(m.fds); // the new process has no business sending us fds
    return m;
  }

  // close(), never shutdown(): shutdown would reset the queue the new process now accepts from.
  // Resolves for each server once its last connection has ended.
  #closeListeners(): { closed: Promise<void>; httpServers: http.Server[] } {
    const waits: Promise<void>[] = [];
    const httpServers: http.Server[] = [];
    for (const l of this.#listeners.values()) {
      if (typeof l === 'number') closeQuietly([l]);
      else if (l instanceof dgram.Socket) l.close();
      else {
        if (typeof (l as http.Server).closeIdleConnections === 'function') httpServers.push(l as http.Server);
        const restore = keepSocketPath(l);
        waits.push(new Promise<void>((resolve) => l.close(() => resolve())));
        restore?.();
      }
    }
    return { closed: Promise.all(waits).then(() => {}), httpServers };
  }

  // Lets in-flight requests finish; keep-alive connections are closed as soon as they are idle; at the
  // deadline whatever is left is cut.
  async #drain({ closed, httpServers }: { closed: Promise<void>; httpServers: http.Server[] }): Promise<void> {
    const sweep = setInterval(() => httpServers.forEach((s) => s.closeIdleConnections()), 100);
    httpServers.forEach((s) => s.closeIdleConnections());
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        debug('handoff: drain deadline reached, closing remaining connections');
        httpServers.forEach((s) => s.closeAllConnections());
        resolve();
      }, this.#opts.drainTimeout);
    });
    await Promise.race([closed, deadline]);
    clearInterval(sweep);
    clearTimeout(timer);
  }
}

/**
 * Old process: offers `listeners` (by name) to the next process on the control socket `path`
 * (a filesystem path, owner-only by default, or an abstract name '\0name' / '@name').
 */
export async function serve(path: string, listeners: Record<string, HandoffListener>, opts: ServeOptions = {}): Promise<HandoffServer> {
  const map = validateListeners(listeners);
  validateObject(opts as unknown, 'options');
  if (opts.readyTimeout !== undefined) validateInteger(opts.readyTimeout, 'options.readyTimeout', 1, 2 ** 31 - 1);
  if (opts.drainTimeout !== undefined) validateInteger(opts.drainTimeout, 'options.drainTimeout', 0, 2 ** 31 - 1);
  for (const [name, l] of map) fdOf(l, `listeners.${name}`); // each must have an fd now
  const control = await listen(path, {
    type: 'seqpacket',
    allow: opts.allow ?? sameUser,
    ...(opts.mode !== undefined ? { mode: opts.mode } : {}),
  });
  control.unref(); // waiting for a successor must not keep the process alive
  return new HandoffServer(control, map, opts);
}

/** One listener received from the old process. */
export interface InheritedListener {
  name: string;
  kind: ListenerKind;
  fd: number;
}

/**
 * New process: the listeners taken from the old one. Adopt each (or take its fd), start serving,
 * then call ready(): only then does the old process close its copies.
 */
export class Inheritance {
  readonly #channel: Channel;
  readonly #listeners = new Map<string, InheritedListener>();
  #settled = false;

  /** @internal Use take(). */
  constructor(channel: Channel, listeners: InheritedListener[]) {
    this.#channel = channel;
    for (const l of listeners) this.#listeners.set(l.name, l);
  }

  /** The names received. */
  get names(): string[] {
    return [...this.#listeners.keys()];
  }

  /** The old process's credentials. */
  get peer(): PeerCredentials {
    return this.#channel.peer;
  }

  has(name: string): boolean {
    return this.#listeners.has(name);
  }

  /** What kind of socket `name` is. */
  kind(name: string): ListenerKind {
    return this.#get(name).kind;
  }

  /** Takes the raw fd of `name`: it is now yours (it is no longer closed by ready()/abort()). */
  takeFd(name: string): number {
    const l = this.#get(name);
    this.#listeners.delete(name);
    return l.fd;
  }

  /** Adopts a TCP/Unix listener into `server` (e.g. your http.Server), or a new net.Server. */
  async server<S extends net.Server = net.Server>(name: string, server?: S): Promise<S> {
    const l = this.#get(name);
    const adopted = await toServer(l.fd, server);
    this.#listeners.delete(name);
    return adopted;
  }

  /** Adopts a UDP socket. */
  async dgram(name: string): Promise<dgram.Socket> {
    const l = this.#get(name);
    const adopted = await toDgram(l.fd);
    this.#listeners.delete(name);
    return adopted;
  }

  /**
   * Tells the old process this one is serving. Resolves once the old process has closed its copies
   * and its control socket (so this process may serve() the same path for the next generation).
   * Listeners not adopted or taken are closed.
   *
   * `overlap` (ms, default 0): first let both processes accept side by side for that long. A fresh V8
   * serves at about half speed for its first few hundred milliseconds under load, until its handlers
   * are compiled; meanwhile the warm old process takes what this one cannot. Keep it well under the
   * old process's `readyTimeout`.
   */
  async ready(opts: { timeout?: number; overlap?: number } = {}): Promise<void> {
    validateObject(opts as unknown, 'options');
    if (opts.timeout !== undefined) validateInteger(opts.timeout, 'options.timeout', 1, 2 ** 31 - 1);
    if (opts.overlap !== undefined) validateInteger(opts.overlap, 'options.overlap', 0, 2 ** 31 - 1);
    this.#settle();
    try {
      if (opts.overlap) await new Promise((resolve) => setTimeout(resolve, opts.overlap));
      await this.#channel.send({ data: encode({ type: 'ready' }) });
      const ack = decode((await this.#channel.receive({ timeout: opts.timeout ?? 30_000 })).data);
      if (ack.type !== 'ack') throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected ack, got ${ack.type}`);
    } finally {
      await this.#channel.close();
    }
  }

  /** Gives up: closes what was not adopted and disconnects; the old process keeps serving. */
  async abort(): Promise<void> {
    this.#settle();
    this.#channel.destroy();
  }

  #settle(): void {
    if (this.#settled) throw new FdpassError('ERR_FDPASS_CLOSED', 'ready() or abort() was already called');
    this.#settled = true;
    closeQuietly([...this.#listeners.values()].map((l) => l.fd));
    this.#listeners.clear();
  }

  #get(name: string): InheritedListener {
    const l = this.#listeners.get(name);
    if (l === undefined) throw new FdpassError('ERR_FDPASS_HANDOFF_UNKNOWN_NAME', `no inherited listener named '${name}' (or it was already adopted)`);
    return l;
  }
}

/**
 * New process: takes the listeners from the old process serving `path`. Resolves with null when no
 * old process is there (first start: bind fresh sockets), else with an {@link Inheritance}.
 */
export async function take(path: string, opts: TakeOptions = {}): Promise<Inheritance | null> {
  validateObject(opts as unknown, 'options');
  const timeout = opts.timeout ?? 30_000;
  validateInteger(timeout, 'options.timeout', 1, 2 ** 31 - 1);
  if (opts.names !== undefined && (!Array.isArray(opts.names) || opts.names.some((n) => typeof n !== 'string'))) {
    throw invalidArgType('options.names', 'an array of strings', opts.names);
  }
  let channel: Channel;
  try {
    channel = await connect(path, { type: 'seqpacket', timeout });
  } catch (err) {
    if (err instanceof FdpassSystemError && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
      debug('handoff: no old process at %s (%s)', path, err.code);
      return null;
    }
    throw err;
  }
  const received: InheritedListener[] = [];
  try {
    if (!(opts.allow ?? sameUser)(channel.peer)) {
      throw new FdpassError('ERR_FDPASS_HANDOFF_REFUSED', `the process serving '${path}' (uid ${channel.peer.uid}) is not allowed`);
    }
    await channel.send({ data: encode({ type: 'hello', ...(opts.names ? { names: opts.names } : {}) }) }).catch((err: FdpassSystemError) => {
      // A busy old process answers and hangs up at once: its answer is still ours to read.
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') throw err;
    });
    const deadline = Date.now() + timeout;
    for (;;) {
      const m = await channel.receive({ timeout: Math.max(1, deadline - Date.now()) }).catch((err: FdpassError) => {
        if (err.code === 'ERR_FDPASS_CLOSED') {
          throw new FdpassError('ERR_FDPASS_HANDOFF_REFUSED', 'the old process closed the control connection (refused by its allow policy, or it is shutting down)');
        }
        throw err;
      });
      let msg: Wire;
      try {
        msg = decode(m.data);
      } catch (err) {
        closeQuietly(m.fds);
        throw err;
      }
      if (msg.type === 'listeners') {
        if (msg.entries.length !== m.fds.length) {
          closeQuietly(m.fds);
          throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `a batch named ${msg.entries.length} listeners but carried ${m.fds.length} fds`);
        }
        msg.entries.forEach((e, i) => received.push({ name: e.name, kind: e.kind, fd: m.fds[i]! }));
      } else if (msg.type === 'done') {
        if (msg.count !== received.length) {
          throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected ${msg.count} listeners, received ${received.length}`);
        }
        debug('handoff: took %d listeners from pid %d', received.length, channel.peer.pid);
        return new Inheritance(channel, received);
      } else if (msg.type === 'error') {
        const code = msg.code.startsWith('ERR_FDPASS_') ? msg.code : 'ERR_FDPASS_HANDOFF_PROTOCOL';
        throw new FdpassError(code as FdpassError['code'], msg.message);
      } else {
        closeQuietly(m.fds);
        throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `unexpected '${msg.type}' message`);
      }
    }
  } catch (err) {
    closeQuietly(received.map((l) => l.fd));
    channel.destroy();
    throw err;
  }
}
