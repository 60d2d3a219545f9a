// ChannelServer: a listening Unix socket that accepts channels from the peers its `allow` lets in.
import { EventEmitter } from 'node:events';
import { debuglog } from 'node:util';
import { binding, constants, type NativePollerBase } from './native';
import { Channel, type ChannelOptions } from './channel';
import { closeQuietly } from './fds';
import type { PeerCredentials } from './message';
import { systemError } from './errors';
import type { SocketKind, UnixName } from './names';
import { emitGuarded } from './emit';
import { socketInode, unlinkIfOurs } from './socket-file';

const debug = debuglog('fdpass');

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

/** The default peer check: the same uid as this process, or root. */
export function sameUser(peer: PeerCredentials): boolean {
  const uid = process.getuid?.() ?? -1;
  return peer.uid === uid || peer.uid === 0;
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
