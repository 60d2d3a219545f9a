// Accept and distribute: a listening socket's connections, accepted in native batches (accept4 until
// EAGAIN, one call into JS per batch), go round robin to worker channels as bare descriptors, each
// channel's share of a batch in one message. No net.Socket is made in this process: making and
// destroying one per connection was most of a Node primary's cost (bench/RESULTS.md).
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { debuglog } from 'node:util';
import { inspect, fdOf, wrongKind } from './adopt';
import { Channel } from './channel';
import { FdpassError, systemError } from './errors';
import { closeFds, closeQuietly } from './fds';
import { binding, checkPlatform, type NativePollerBase } from './native';
import { parseName, type UnixName } from './names';
import { socketInode, unlinkIfOurs } from './socket-file';
import { emitGuarded } from './emit';
import { stopListening } from './handoff/stop-listening';
import { invalidArgType, invalidArgValue } from './validate';

const debug = debuglog('fdpass');

/**
 * Hands the connections of a listening socket to channels, round robin. Emits `'error'` (when someone
 * listens) for a failure that did not stop it: accepting failed (EMFILE and the like: it pauses
 * 100 ms), a channel whose worker is gone (EPIPE and the like at its write: it leaves the rotation,
 * its share goes to the others), a message the kernel refused at once (its connections are closed),
 * every channel gone (accepting waits for {@link Distributor.add}); and `'close'`. Connections handed
 * to a worker that then dies are lost with it (closed), and count in `distributed`.
 */
export class Distributor extends EventEmitter {
  #poller: NativePollerBase | null;
  #fd: number;
  #channels: Channel[] = [];
  #watchers = new Map<Channel, { drain: () => void; close: () => void }>();
  #next = 0;
  #held = true; // not accepting: no channel can take more (or none yet), or paused after an error
  #retry: NodeJS.Timeout | undefined;
  #ref = true; // ref()/unref(): the pause after EMFILE keeps the process alive as the poller does
  #distributed = 0;
  #file: { name: UnixName; inode: number | undefined } | undefined; // a Unix net.Server's socket file

  /** @internal Use distribute(). Takes ownership of `fd` (and of the socket file `file`, removed at close). */
  constructor(fd: number, channels: readonly Channel[], file?: UnixName) {
    super();
    this.#fd = fd;
    if (file !== undefined) this.#file = { name: file, inode: socketInode(file) };
    this.#poller = new binding.AcceptPoller(
      fd,
      (fds, errno, syscall) => this.#onAccept(fds, errno, syscall),
      (errno, syscall) => {
        this.#emitError(systemError(errno, syscall));
        void this.close();
      },
    );
    for (const ch of channels) this.add(ch);
    this.#update();
  }

  /** The listening socket's descriptor (-1 once closed). */
  get fd(): number {
    return this.#poller === null ? -1 : this.#fd;
  }

  /** How many connections were handed to a channel so far. */
  get distributed(): number {
    return this.#distributed;
  }

  /** The channels connections go to: those added and still open. */
  get channels(): readonly Channel[] {
    return [...this.#channels];
  }

  /**
   * Adds a channel to the rotation (a worker started later, or one in place of a worker that is gone).
   * A channel that closes leaves the rotation by itself.
   */
  add(channel: Channel): this {
    checkChannel(channel, 'channel');
    if (this.#poller === null) throw new FdpassError('ERR_FDPASS_CLOSED', 'the distributor is closed');
    if (this.#watchers.has(channel)) return this;
    const watch = { drain: () => this.#update(), close: () => this.#drop(channel) };
    channel.on('drain', watch.drain);
    channel.on('close', watch.close);
    this.#watchers.set(channel, watch);
    this.#channels.push(channel);
    this.#update();
    return this;
  }

  /**
   * Stops accepting and closes the listening socket (its connections not yet accepted are refused).
   * The channels stay open.
   */
  close(): Promise<void> {
    if (this.#poller === null) return Promise.resolve();
    this.#poller.close();
    this.#poller = null;
    clearTimeout(this.#retry);
    for (const ch of [...this.#watchers.keys()]) this.#unwatch(ch);
    this.#channels = [];
    if (this.#file !== undefined) unlinkIfOurs(this.#file.name, this.#file.inode); // as the server's close() would
    debug('distributor fd=%d closed after %d connections', this.#fd, this.#distributed);
    return new Promise((resolve) => {
      process.nextTick(() => {
        emitGuarded(this, 'close');
        resolve();
      });
    });
  }

  /** Lets the process exit while this distributor waits for connections. */
  unref(): this {
    this.#ref = false;
    this.#poller?.unref();
    this.#retry?.unref();
    return this;
  }

  /** Keeps the process alive while this distributor waits for connections, undoing `unref()`. */
  ref(): this {
    this.#ref = true;
    this.#poller?.ref();
    this.#retry?.ref();
    return this;
  }

  #onAccept(fds: number[], errno: number, syscall: string): void {
    if (fds.length > 0) this.#hand(fds);
    if (errno !== 0 && this.#poller !== null) {
      // EMFILE/ENFILE/ENOBUFS: pause accepting briefly instead of spinning on a readable socket.
      // Paused before 'error' is emitted: its listener may close() the distributor.
      this.#poller.readStop();
      this.#held = true;
      clearTimeout(this.#retry);
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#update();
      }, 100);
      if (!this.#ref) this.#retry.unref();
      this.#emitError(systemError(errno, syscall));
    }
  }

  // Each fd goes to the next channel that can take more now (any open one when none can): one message
  // per channel. Once written, the kernel or the channel's queue holds its own copies: ours close.
  #hand(fds: number[]): void {
    let pending = fds;
    while (pending.length > 0 && this.#channels.length > 0) {
      const ready = this.#channels.filter((ch) => !ch.writableNeedDrain);
      const pool = ready.length > 0 ? ready : this.#channels;
      const shares = new Map<Channel, number[]>();
      for (const fd of pending) {
        const ch = pool[this.#next++ % pool.length]!;
        const share = shares.get(ch);
        if (share === undefined) shares.set(ch, [fd]);
        else share.push(fd);
      }
      pending = [];
      for (const [ch, share] of shares) {
        try {
          ch.write({ fds: share });
          this.#distributed += share.length;
        } catch (err) {
          if (ch.closed || cannotSend(err)) {
            // Closed, being closed, or its worker gone (a channel nobody reads notices only now):
            // it leaves the rotation and its share goes to the others.
            if (!ch.closed && (err as { code?: unknown }).code !== 'ERR_FDPASS_CLOSED') this.#emitError(err as Error);
            this.#drop(ch);
            pending.push(...share);
          } else {
            // Refused at once with the channel still open (EMFILE duplicating the fds to queue them):
            // these connections are closed, the next ones go on.
            this.#emitError(err as Error);
          }
        }
      }
    }
    // What is still pending had no channel left (#drop said so): those connections close.
    closeFds(fds);
    this.#update();
  }

  // Accepting runs while some channel can take more; with none left it waits (connections wait in
  // the kernel's backlog), as it does while every channel's queue is full.
  #update(): void {
    const poller = this.#poller;
    if (poller === null || this.#retry !== undefined) return;
    const hold = this.#channels.length === 0 || this.#channels.every((ch) => ch.writableNeedDrain);
    if (hold === this.#held) return;
    this.#held = hold;
    if (hold) poller.readStop();
    else poller.readStart();
  }

  #drop(channel: Channel): void {
    if (!this.#watchers.has(channel)) return;
    this.#unwatch(channel);
    this.#channels = this.#channels.filter((ch) => ch !== channel);
    debug('distributor fd=%d: a channel closed, %d left', this.#fd, this.#channels.length);
    if (this.#channels.length === 0) this.#noChannel();
    this.#update();
  }

  #unwatch(channel: Channel): void {
    const watch = this.#watchers.get(channel);
    if (watch === undefined) return;
    channel.off('drain', watch.drain);
    channel.off('close', watch.close);
    this.#watchers.delete(channel);
  }

  #noChannel(): void {
    this.#emitError(new FdpassError('ERR_FDPASS_CLOSED', 'every channel has closed or lost its peer: accepting waits for add()'));
  }

  #emitError(err: Error): void {
    debug('distributor fd=%d: %s', this.#fd, err.message);
    if (this.listenerCount('error') > 0) emitGuarded(this, 'error', err);
  }
}

// A write refused with one of these: the channel can send nothing more (its peer is gone, or it is
// closing: close() waits for what it queued).
const CANNOT_SEND = new Set(['ERR_FDPASS_CLOSED', 'EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'ENOTCONN']);

function cannotSend(err: unknown): boolean {
  return CANNOT_SEND.has(String((err as { code?: unknown } | null)?.code));
}

function checkChannel(value: unknown, name: string): asserts value is Channel {
  if (!(value instanceof Channel)) throw invalidArgType(name, 'an instance of Channel', value);
  if (value.closed) throw new FdpassError('ERR_FDPASS_CLOSED', `${name} is closed`);
}

/**
 * Accepts the connections of `listener` (a listening `net.Server`, TCP or Unix, or the descriptor of
 * a listening socket) in native batches and hands each to one of `channels`, round robin, as a
 * descriptor: each channel's share of a batch arrives as one message whose `fds` are connections
 * (up to 32 a batch); no `net.Socket` is made here. A channel whose queue is full is skipped while
 * another can take more; when none can, accepting pauses (connections wait in the kernel's backlog).
 *
 * A `net.Server` stops listening itself: the distributor holds a duplicate of its listening socket
 * (and a Unix socket's file, removed by `close()` as the server's own close would). A descriptor
 * becomes the distributor's (closed by `close()`); when this throws it is still yours, and a server
 * keeps listening.
 */
export function distribute(listener: net.Server | number, channels: readonly Channel[]): Distributor {
  checkPlatform(); // before a net.Server is stopped, off Linux as on it
  if (!Array.isArray(channels)) throw invalidArgType('channels', 'an instance of Array', channels);
  if (channels.length === 0) throw invalidArgValue('channels', channels, 'must hold at least one channel');
  channels.forEach((ch, i) => checkChannel(ch, `channels[${i}]`));
  if (typeof listener !== 'number' && !(listener instanceof net.Server)) {
    throw invalidArgType('listener', 'of type number or an instance of net.Server', listener);
  }
  const fd = fdOf(listener, 'listener'); // a number: validated there
  const info = inspect(fd);
  if (info.socket?.listening !== true) throw wrongKind(fd, 'a listening socket', info);
  if (typeof listener === 'number') return new Distributor(fd, channels);
  const own = binding.dup(fd);
  const path = listener.address();
  let distributor: Distributor;
  try {
    distributor = new Distributor(own, channels, typeof path === 'string' ? parseName(path) : undefined);
  } catch (err) {
    closeQuietly([own]);
    throw err;
  }
  // Its own descriptor only (a Unix socket keeps its path): the socket listens on ours.
  void stopListening(listener);
  return distributor;
}
