// Making channels: connect to a name, listen on one (ChannelServer), socket pairs, datagram sockets.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { debuglog } from 'node:util';
import { binding, constants, type NativePollerBase } from './native';
import { Channel, validateChannelOptions, type ChannelOptions } from './channel';
import { closeQuietly } from './fds';
import type { PeerCredentials } from './message';
import { FdpassError, FdpassSystemError, systemError, withContext } from './errors';
import { parseName, socketTypeOf, type SocketKind, type UnixName } from './names';
import { invalidArgType, validateFunction, validateInteger } from './validate';
import { validateWaitOptions, waitWith, type WaitOptions } from './wait';
import { emitGuarded } from './emit';

const debug = debuglog('fdpass');

export interface ConnectOptions extends ChannelOptions, WaitOptions {
  /** Socket kind; default 'seqpacket'. */
  type?: SocketKind;
}

export interface ListenOptions extends ChannelOptions {
  /** Socket kind; default 'seqpacket'. */
  type?: SocketKind;
  /** listen(2) backlog; default 511 as Node's net. */
  backlog?: number;
  /** Permission bits of a filesystem socket; default 0o600 (owner only). */
  mode?: number;
  /**
   * Decides from the peer's credentials whether a connection is accepted. Default: the same uid as
   * this process (or root). Rejected peers are closed before they can send or receive anything.
   */
  allow?: (peer: PeerCredentials) => boolean;
}

export interface BindDgramOptions extends ChannelOptions {
  /** Permission bits of a filesystem socket; default 0o600 (owner only). */
  mode?: number;
  /**
   * Decides from each datagram's sender credentials (SCM_CREDENTIALS) whether it is delivered. A
   * refused datagram is dropped with its fds closed, and the channel emits `'reject'` with the
   * credentials. Default: every datagram is delivered (the socket file's mode decides who can send).
   */
  allow?: (sender: PeerCredentials) => boolean;
}

export interface SocketPairOptions extends ChannelOptions {
  /** Socket kind; default 'seqpacket'. */
  type?: SocketKind;
}

function validateOptions(opts: unknown, name = 'options'): void {
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) throw invalidArgType(name, 'of type object', opts);
}

/** The inode of the socket file just bound at `name` (undefined for abstract names). */
function socketInode(name: UnixName): number | undefined {
  if (name.abstract) return undefined;
  try {
    return fs.statSync(name.name).ino;
  } catch {
    return undefined;
  }
}

/** Removes the socket file, unless someone else has bound a new one at that path meanwhile. */
function unlinkIfOurs(name: UnixName, inode: number | undefined): void {
  if (inode === undefined) return;
  try {
    if (fs.statSync(name.name).ino === inode) fs.unlinkSync(name.name);
  } catch {
    // already gone
  }
}

/**
 * Wraps a descriptor fdpass just made in its owner (a Channel or ChannelServer). Their constructors
 * (and the native Poller's) never close `fd` when they throw; the caller does, here, along with the
 * socket file it bound.
 */
function adoptOrClose<T>(fd: number, make: () => T, bound?: UnixName): T {
  try {
    return make();
  } catch (err) {
    closeQuietly([fd]);
    if (bound !== undefined && !bound.abstract) fs.rmSync(bound.name, { force: true });
    throw err;
  }
}

/** The default peer check: the same uid as this process, or root. */
export function sameUser(peer: PeerCredentials): boolean {
  const uid = process.getuid?.() ?? -1;
  return peer.uid === uid || peer.uid === 0;
}

/**
 * Connects to a listening Unix socket, or to a datagram socket bound with `bindDgram`. A full accept
 * queue (EAGAIN) is retried with backoff, without blocking, until `timeout` (default 10 s).
 */
export function connect(path: string, opts: ConnectOptions = {}): Promise<Channel> {
  let name: UnixName;
  let type: number;
  try {
    validateOptions(opts);
    name = parseName(path);
    type = socketTypeOf(opts.type);
    validateChannelOptions(opts);
    validateWaitOptions(opts);
  } catch (err) {
    return Promise.reject(err);
  }
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  return waitWith<Channel>(
    `connect to '${name.display}'`,
    { timeout: opts.timeout ?? 10_000, ...(opts.signal ? { signal: opts.signal } : {}) },
    (resolve, reject) => {
      let delay = 1;
      const attempt = (): void => {
        if (cancelled) return;
        try {
          const fd = binding.unixConnect(type, name.name, name.abstract);
          resolve(adoptOrClose(fd, () => new Channel(fd, type, opts)));
        } catch (err) {
          if (err instanceof FdpassSystemError && err.code === 'EAGAIN') {
            debug('connect %s: queue full, retrying in %d ms', name.display, delay);
            timer = setTimeout(attempt, delay);
            delay = Math.min(delay * 2, 100);
            return;
          }
          reject(err instanceof FdpassSystemError ? new FdpassSystemError(err.errno, err.syscall, { path: name.display }) : err);
        }
      };
      attempt();
    },
    () => {
      cancelled = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  );
}

/**
 * A listening Unix socket. Emits `'connection'` with each accepted {@link Channel} whose peer passes
 * `allow`, `'reject'` with the credentials of one that did not, `'error'` and `'close'`.
 */
export class ChannelServer extends EventEmitter {
  readonly type: SocketKind;
  readonly path: string;
  #poller: NativePollerBase | null;
  #name: UnixName;
  #typeNumber: number;
  #opts: ListenOptions;
  #allow: (peer: PeerCredentials) => boolean;
  #inode: number | undefined;
  #retry: NodeJS.Timeout | undefined;

  /** @internal Use listen(). Takes ownership of `fd`. */
  constructor(fd: number, type: number, name: UnixName, opts: ListenOptions) {
    super();
    this.#typeNumber = type;
    this.type = type === constants.SOCK_STREAM ? 'stream' : 'seqpacket';
    this.#name = name;
    this.path = name.abstract ? `\0${name.name}` : name.name;
    this.#opts = opts;
    this.#allow = opts.allow ?? sameUser;
    this.#inode = socketInode(name);
    this.#poller = new binding.AcceptPoller(
      fd,
      (fds, errno, syscall) => this.#onAccept(fds, errno, syscall),
      (errno, syscall) => this.#onFatal(systemError(errno, syscall)),
    );
    this.#poller.readStart();
    debug('listening on %s (%s)', name.display, this.type);
  }

  /** The listening socket's descriptor (-1 once closed). */
  get fd(): number {
    return this.#poller?.fd ?? -1;
  }

  get listening(): boolean {
    return this.#poller !== null;
  }

  /** Returns the name this server listens on. */
  address(): { path: string; abstract: boolean } {
    return { path: this.#name.name, abstract: this.#name.abstract };
  }

  #onAccept(fds: number[], errno: number, syscall: string): void {
    // Every accepted fd gets its Channel (its owner from now on) before any user code runs: a
    // throwing 'connection' handler then cannot strand the rest of the batch as bare numbers.
    const channels: Channel[] = [];
    for (const fd of fds) {
      try {
        channels.push(new Channel(fd, this.#typeNumber, this.#opts));
      } catch (err) {
        closeQuietly([fd]); // the constructor leaves the fd to its caller when it throws
        this.#emitError(err as Error);
      }
    }
    for (const channel of channels) {
      let allowed = false;
      let peer: PeerCredentials | undefined;
      try {
        peer = channel.peer;
        allowed = this.#allow(peer) === true;
      } catch (err) {
        this.#emitError(err as Error);
      }
      if (!allowed) {
        debug('rejected peer %o on %s', peer, this.#name.display);
        channel.destroy();
        emitGuarded(this, 'reject', peer);
        continue;
      }
      emitGuarded(this, 'connection', channel);
    }
    if (errno !== 0) {
      // EMFILE/ENFILE/ENOBUFS: pause accepting briefly instead of spinning on a readable socket.
      this.#emitError(systemError(errno, syscall));
      this.#poller?.readStop();
      this.#retry = setTimeout(() => this.#poller?.readStart(), 100);
      this.#retry.unref();
    }
  }

  #emitError(err: Error): void {
    debug('server %s: %s', this.#name.display, err.message);
    if (this.listenerCount('error') > 0) emitGuarded(this, 'error', err);
  }

  #onFatal(err: Error): void {
    this.#emitError(err);
    void this.close();
  }

  /** Lets the process exit while this server waits for connections. */
  unref(): this {
    this.#poller?.unref();
    return this;
  }

  /** Keeps the process alive while this server waits for connections, undoing `unref()`. */
  ref(): this {
    this.#poller?.ref();
    return this;
  }

  /** Stops accepting and removes the socket file if it is still the one this server created. */
  close(): Promise<void> {
    if (this.#poller === null) return Promise.resolve();
    this.#poller.close();
    this.#poller = null;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    unlinkIfOurs(this.#name, this.#inode);
    debug('server %s closed', this.#name.display);
    return new Promise((resolve) => {
      process.nextTick(() => {
        this.emit('close');
        resolve();
      });
    });
  }
}

/** Listens on a Unix socket and resolves with a `ChannelServer`. */
export function listen(path: string, opts: ListenOptions = {}): Promise<ChannelServer> {
  try {
    validateOptions(opts);
    const name = parseName(path);
    const type = socketTypeOf(opts.type);
    if (type === constants.SOCK_DGRAM) {
      throw new FdpassError('ERR_FDPASS_WRONG_FD_KIND', "datagram sockets do not listen: use bindDgram() for type 'dgram'");
    }
    const backlog = opts.backlog ?? 511;
    validateInteger(backlog, 'options.backlog', 0, 65535);
    const mode = opts.mode ?? 0o600;
    validateInteger(mode, 'options.mode', 0, 0o7777);
    if (opts.allow !== undefined) validateFunction(opts.allow, 'options.allow');
    validateChannelOptions(opts);
    const fd = withContext(() => binding.unixListen(type, name.name, name.abstract, backlog, mode), { path: name.display });
    return Promise.resolve(adoptOrClose(fd, () => new ChannelServer(fd, type, name, opts), name));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Binds a Unix datagram socket and resolves with a `Channel` that receives what is sent to it. Each
 * received message carries its sender's `cred` (SO_PASSCRED), which `allow` can check. Closing the
 * channel removes the socket file.
 */
export function bindDgram(path: string, opts: BindDgramOptions = {}): Promise<Channel> {
  try {
    validateOptions(opts);
    validateChannelOptions(opts);
    const name = parseName(path);
    const mode = opts.mode ?? 0o600;
    validateInteger(mode, 'options.mode', 0, 0o7777);
    if (opts.allow !== undefined) validateFunction(opts.allow, 'options.allow');
    const fd = withContext(() => binding.unixListen(constants.SOCK_DGRAM, name.name, name.abstract, 0, mode), { path: name.display });
    const inode = socketInode(name);
    const onClose = (): void => unlinkIfOurs(name, inode);
    return Promise.resolve(adoptOrClose(fd, () => new Channel(fd, constants.SOCK_DGRAM, opts, onClose, opts.allow), name));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Returns two connected channels, synchronously. One end can go to a child process through spawn's
 * `stdio`.
 */
export function socketPair(opts: SocketPairOptions = {}): [Channel, Channel] {
  validateOptions(opts);
  const type = socketTypeOf(opts.type);
  validateChannelOptions(opts);
  const [a, b] = binding.socketPair(type);
  let first: Channel;
  try {
    first = new Channel(a, type, opts);
  } catch (err) {
    binding.close(a);
    binding.close(b);
    throw err;
  }
  try {
    return [first, new Channel(b, type, opts)];
  } catch (err) {
    first.destroy();
    binding.close(b);
    throw err;
  }
}

/**
 * Waits for the first connection on `server` (used by the path forms of recvFd/recvFds): a one-shot
 * receiver. Every other connection, including one accepted in the same batch as the first, and any
 * after a timeout or abort, is closed at once (its unread message and descriptors released), until
 * the server closes.
 */
export function acceptOne(server: ChannelServer, opts: WaitOptions = {}): Promise<Channel> {
  let take: ((c: Channel) => void) | undefined;
  const onConnection = (c: Channel): void => {
    if (take === undefined) {
      debug('one-shot receiver on %s: refusing a further connection', server.address().path);
      c.destroy();
      return;
    }
    const resolve = take;
    take = undefined;
    resolve(c);
  };
  server.on('connection', onConnection);
  server.once('close', () => server.off('connection', onConnection));
  return waitWith<Channel>(
    `waiting for a connection on '${server.address().path}'`,
    opts,
    (resolve) => {
      take = resolve;
    },
    () => {
      take = undefined;
    },
  );
}
