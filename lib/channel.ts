// Channel: one Unix-socket endpoint that sends and receives messages carrying descriptors.
// Policy lives here (flow control, framing rules, promises); the native Poller owns the fd and syscalls.
// A read batch is decoded in read-batch.ts, an outgoing message staged in outgoing.ts.
// Why over 350 lines: Channel is one state machine (inbox, waiters, queued sends, reading on/off,
// close) whose private fields every method reads; split further, each part would need them all.
import { EventEmitter } from 'node:events';
import { debuglog } from 'node:util';
import { binding, constants, type NativeChannelPoller } from './native';
import { FdpassError, type FdpassSystemError, systemError } from './errors';
import { closeQuietly } from './fds';
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  MAX_FDS_PER_MESSAGE,
  MAX_MESSAGE_SIZE,
  type Message,
  type OutgoingMessage,
  type PeerCredentials,
} from './message';
import { kindOf, type SocketKind } from './names';
import { OutgoingStage } from './outgoing';
import { READ_INFO, decodeBatch, takeRefused } from './read-batch';
import { invalidArgType, validateFd, validateInteger } from './validate';
import { validateWaitOptions, waitWith, type WaitOptions } from './wait';
import { emitGuarded } from './emit';

const debug = debuglog('fdpass');

export interface ChannelOptions {
  /** Largest message (seqpacket, dgram) or chunk (stream) read at once. Default 64 KiB. */
  maxMessageSize?: number;
  /**
   * As `net`'s: when the peer shuts down its sending side (EOF on a stream or seqpacket channel), emit
   * `'end'` and stay open for sending until you call close(). Default false: the channel closes on EOF.
   */
  allowHalfOpen?: boolean;
  /**
   * Most descriptors a received message may carry, 0 to MAX_FDS_PER_MESSAGE (253, SCM_MAX_FD). A
   * message with more is dropped: its descriptors are closed as it is read and ERR_FDPASS_TOO_MANY_FDS
   * takes its place (as ERR_FDPASS_CTRUNC does), so a peer cannot fill this process's descriptor
   * table. 0: a channel that takes none. Default 253 (any).
   */
  maxFds?: number;
}

interface Waiter {
  resolve: (m: Message) => void;
  reject: (e: unknown) => void;
}

interface PendingSend {
  resolve: () => void;
  reject: (e: unknown) => void;
}

// Most messages one native sendBatch() takes (one sendmmsg when the kernel takes them all).
const SEND_BATCH = binding.ChannelPoller.SEND_BATCH;

// A channel reads with recvmmsg into full-size slots (maxMessageSize each) of its read buffer, up to
// READ_BUDGET slots per call. The buffer is one per thread (module instance), READ_BATCH_BYTES long
// and shared by every channel whose maxMessageSize it holds, as READ_INFO is: a batch is copied out
// of it (decodeBatch) before any user code runs. A channel with larger messages reads into its own.
const READ_BATCH_BYTES = 2 * 1024 * 1024;
let sharedReadBuffer: Buffer | undefined;

function readBufferFor(bufferSize: number): Buffer {
  if (bufferSize > READ_BATCH_BYTES) return Buffer.allocUnsafeSlow(bufferSize);
  sharedReadBuffer ??= Buffer.allocUnsafeSlow(READ_BATCH_BYTES);
  return sharedReadBuffer;
}

function ignore(): void {}

/** Checks ChannelOptions; returns the receive buffer size and the most descriptors a message may carry. */
export function validateChannelOptions(opts: ChannelOptions): { bufferSize: number; maxFds: number } {
  const bufferSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  validateInteger(bufferSize, 'options.maxMessageSize', 1, MAX_MESSAGE_SIZE);
  if (opts.allowHalfOpen !== undefined && typeof opts.allowHalfOpen !== 'boolean') {
    throw invalidArgType('options.allowHalfOpen', 'of type boolean', opts.allowHalfOpen);
  }
  const maxFds = opts.maxFds ?? MAX_FDS_PER_MESSAGE;
  validateInteger(maxFds, 'options.maxFds', 0, MAX_FDS_PER_MESSAGE);
  return { bufferSize, maxFds };
}

/**
 * A connected Unix socket that carries messages with descriptors attached.
 *
 * Events: `'message'` ({@link Message}), `'end'` (the peer closed), `'reject'` (a bindDgram() `allow`
 * refused a datagram's sender: its credentials; the datagram's fds were closed), `'error'` (only emitted when
 * someone listens; otherwise the error rejects the next `receive()`/`send()`), `'drain'` (after
 * {@link Channel.write} returned false, once every queued message has gone out), `'close'`.
 */
export class Channel extends EventEmitter {
  /** The socket kind: 'seqpacket', 'stream' or 'dgram'. */
  readonly type: SocketKind;
  #poller: NativeChannelPoller | null;
  // The native poller even after close: it keeps owning received fds until they are handed out.
  #native: NativeChannelPoller;
  // [0]: how many fds of the batches in #inbox were handed to the application (shared with the poller,
  // which closes the others when the channel is destroyed, collected, or its Worker/process ends).
  #taken = new Int32Array(1);
  #fd: number;
  #inbox: Array<Message | Error> = [];
  #waiters: Waiter[] = [];
  #sends = new Map<number, PendingSend>();
  #paused = false;
  #ended = false; // EOF seen: no more messages will arrive
  #error: Error | null = null;
  #closing: Promise<void> | null = null;
  #closed = false;
  #reading = false; // what the poller was last told (readStart/readStop)
  #needDrain = false; // write() returned false and 'drain' has not been emitted since
  #readBuffer: Buffer;
  readonly #outgoing: OutgoingStage; // its fds are the poller's sendFds
  #peer: PeerCredentials | undefined;
  #onClose: (() => void) | undefined;
  #afterFlush: (() => void) | undefined; // close() waiting for queued sends
  #allow: ((sender: PeerCredentials) => boolean) | undefined; // bindDgram's per-datagram check
  #allowHalfOpen: boolean; // EOF ends reading only; sending goes on until close()
  readonly #maxFds: number; // a message with more is dropped, its fds closed

  /**
   * @internal Use connect(), listen(), socketPair() or openChannel(). Takes ownership of `fd` once it
   * returns; when it throws, `fd` is still the caller's to close.
   */
  constructor(fd: number, type: number, opts: ChannelOptions = {}, onClose?: () => void, allow?: (sender: PeerCredentials) => boolean) {
    super();
    this.#allow = allow;
    this.#allowHalfOpen = opts.allowHalfOpen === true;
    const kind = kindOf(type);
    if (kind === undefined) throw new FdpassError('ERR_FDPASS_WRONG_FD_KIND', `unsupported socket type ${type}`);
    this.type = kind;
    this.#fd = fd;
    this.#onClose = onClose;
    const { bufferSize, maxFds } = validateChannelOptions(opts);
    this.#maxFds = maxFds;
    this.#readBuffer = readBufferFor(bufferSize);
    this.#outgoing = new OutgoingStage(kind);
    this.#poller = new binding.ChannelPoller(
      fd,
      type,
      bufferSize,
      (count, eof, errno, syscall) => this.#onRead(count, eof, errno, syscall ?? 'recvmmsg'),
      (lastId) => this.#onSent(lastId),
      (errno, syscall) => this.#onError(systemError(errno, syscall)),
      this.#readBuffer,
      READ_INFO,
      this.#outgoing.fds,
      this.#taken,
    );
    this.#native = this.#poller;
    this.on('newListener', (event) => {
      if (event === 'message') process.nextTick(() => this.#dispatch());
    });
    this.on('removeListener', (event) => {
      if (event === 'message') this.#updateReading();
    });
    debug('channel fd=%d type=%s open', fd, kind);
  }

  /** The socket's descriptor number (-1 once closed). It stays owned by the channel. */
  get fd(): number {
    return this.#closed ? -1 : this.#fd;
  }

  /** True once close()/destroy() ran or the channel failed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The peer's { pid, uid, gid } from SO_PEERCRED (meaningful for stream and seqpacket). */
  get peer(): PeerCredentials {
    if (this.#peer === undefined) {
      if (this.#closed) throw new FdpassError('ERR_FDPASS_CLOSED', 'the channel is closed');
      const [pid, uid, gid] = binding.peerCred(this.#fd);
      this.#peer = { pid, uid, gid };
    }
    return this.#peer;
  }

  /**
   * Sends one message. Resolves once the kernel has taken it. The fds stay yours: you may close them
   * as soon as this returns, even if the message had to wait (it then holds duplicates).
   */
  send(msg: OutgoingMessage): Promise<void> {
    let data: ReturnType<OutgoingStage['stage']>;
    try {
      data = this.#outgoing.stage(msg);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closed || this.#closing !== null || this.#poller === null) {
      return Promise.reject(this.#error ?? new FdpassError('ERR_FDPASS_CLOSED', 'the channel is closed'));
    }
    if (data === 'noop') return Promise.resolve();
    let id: number;
    try {
      id = this.#poller.send(data, this.#outgoing.count);
    } catch (err) {
      return Promise.reject(err);
    }
    if (id === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.#sends.set(id, { resolve, reject }));
  }

  /**
   * Sends one message without a promise, for senders of many messages. Returns `true` when the
   * kernel took the message at once, `false` when it had to be queued because the socket's buffer is
   * full: it still goes out, in order, but wait for the `'drain'` event before writing more (`if
   * (!channel.write(m)) await once(channel, 'drain')`). The fds stay yours, as with {@link
   * Channel.send}: you may close them as soon as this returns.
   *
   * Throws what `send()` would reject with: TypeError/RangeError for a bad message, ERR_FDPASS_CLOSED
   * (or the channel's error) once closed, and the system error when the kernel refuses the message at
   * once (e.g. EPIPE). A queued message that fails later fails the channel: `'error'` (when someone
   * listens) and `'close'`, and later calls throw that error. `close()` waits for queued messages.
   *
   * `callback`, when given, is called once, on a later tick, as Node's `stream.write()` calls its own:
   * with `null` once the kernel has taken the whole message, with the error when a queued message
   * failed. Not called when `write()` throws: the message never left then.
   */
  write(msg: OutgoingMessage, callback?: (err: Error | null) => void): boolean {
    if (callback !== undefined && typeof callback !== 'function') throw invalidArgType('callback', 'of type function', callback);
    const data = this.#outgoing.stage(msg);
    const poller = this.#poller;
    if (this.#closed || this.#closing !== null || poller === null) {
      throw this.#error ?? new FdpassError('ERR_FDPASS_CLOSED', 'the channel is closed');
    }
    const id = data === 'noop' ? 0 : poller.send(data, this.#outgoing.count);
    if (id === 0) {
      if (callback !== undefined) process.nextTick(callback, null);
      // Nothing was queued before a message the kernel took at once either: the queue is empty.
      return data === 'noop' ? !this.#needDrain : true;
    }
    this.#sends.set(
      id,
      callback === undefined
        ? { resolve: ignore, reject: ignore }
        : { resolve: () => process.nextTick(callback, null), reject: (err) => process.nextTick(callback, err as Error) },
    );
    this.#needDrain = true;
    return false;
  }

  /**
   * Sends several messages at once, each with its own descriptors, in as few system calls as the
   * kernel allows (`sendmmsg`, up to 32 messages a call) instead of one `sendmsg` each. The message rules
   * and the return value are {@link Channel.write}'s: `false` when some had to be queued (they still
   * go out, in order; wait for `'drain'`). Message boundaries are kept on seqpacket and dgram channels.
   * The fds stay yours: you may close them as soon as this returns.
   *
   * Every message is checked before any is sent: a bad one throws and none goes. A system error
   * throws only when the kernel refuses the first message; after that, a failure fails the channel,
   * as for a queued `write()`.
   */
  writeMany(messages: readonly OutgoingMessage[]): boolean {
    if (!Array.isArray(messages)) throw invalidArgType('messages', 'an instance of Array', messages);
    const total = messages.length;
    const stage = this.#outgoing;
    if (total > SEND_BATCH) stage.checkAll(messages); // staging checks the first batch itself
    let queued = false;
    for (let from = 0; from < total; from += SEND_BATCH) {
      const to = Math.min(total, from + SEND_BATCH);
      const data = stage.stageBatch(messages, from, to);
      const poller = this.#poller;
      if (this.#closed || this.#closing !== null || poller === null) {
        throw this.#error ?? new FdpassError('ERR_FDPASS_CLOSED', 'the channel is closed');
      }
      if (stage.count === 0) continue;
      const id = poller.sendBatch(data, stage.layout, stage.count);
      if (id !== 0) {
        this.#sends.set(id, { resolve: ignore, reject: ignore });
        queued = true;
      }
    }
    if (!queued) return !this.#needDrain;
    this.#needDrain = true;
    return false;
  }

  /** True after {@link Channel.write} returned false, until `'drain'`. */
  get writableNeedDrain(): boolean {
    return this.#needDrain;
  }

  /**
   * Resolves with the next message. Rejects with ERR_FDPASS_CLOSED once the peer closed and every
   * message has been taken, with ERR_FDPASS_CTRUNC when a message lost descriptors in the kernel
   * (those that arrived are closed), or with the channel's error.
   */
  receive(opts?: WaitOptions): Promise<Message> {
    try {
      validateWaitOptions(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    const next = this.#take();
    if (next !== undefined) {
      this.#updateReading();
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    }
    if (this.#ended || this.#closed) return Promise.reject(this.#endError());
    let waiter: Waiter;
    return waitWith<Message>(
      'receive',
      opts,
      (resolve, reject) => {
        waiter = { resolve, reject };
        this.#waiters.push(waiter);
        this.#updateReading();
      },
      () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        this.#updateReading();
      },
    );
  }

  /** Iterates over messages until the peer closes. Reads only while the loop asks for more. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Message, void, undefined> {
    for (;;) {
      let m: Message;
      try {
        m = await this.receive();
      } catch (err) {
        if ((err as FdpassError).code === 'ERR_FDPASS_CLOSED' && this.#error === null) return;
        throw err;
      }
      yield m;
    }
  }

  /** Stops `'message'` events and reading until `resume()`. */
  pause(): this {
    this.#paused = true;
    this.#updateReading();
    return this;
  }

  /** Restarts `'message'` events and reading after `pause()`. */
  resume(): this {
    this.#paused = false;
    process.nextTick(() => this.#dispatch());
    return this;
  }

  /** Lets the process exit while this channel waits for messages. */
  unref(): this {
    this.#poller?.unref();
    return this;
  }

  /** Keeps the process alive while this channel waits for messages, undoing `unref()`. */
  ref(): this {
    this.#poller?.ref();
    return this;
  }

  /**
   * Closes the channel once every queued message has gone out. Messages received but not taken are
   * dropped and their descriptors closed.
   */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    this.#closing = new Promise<void>((resolve) => {
      if (this.#closed) {
        // Already shut by EOF or an error: what is still unread goes now.
        this.destroy();
        return resolve();
      }
      this.once('close', () => resolve());
      if (this.#sends.size === 0) {
        this.destroy();
      } else {
        this.#setReading(false);
        this.#afterFlush = () => this.destroy(); // run by #onSent or #shutdown once #sends is empty
      }
    });
    return this.#closing;
  }

  /** Closes the channel now. */
  destroy(err?: Error): void {
    this.#shutdown(err ?? null);
    this.#inbox.length = 0;
    this.#native.dropHeld(); // the fds of the messages just dropped: never handed out, still native's
  }

  // The one place a message leaves the inbox for the application: its fds are counted as handed out
  // before any user code can see them.
  #take(): Message | Error | undefined {
    for (;;) {
      const m = this.#inbox.shift();
      if (m === undefined) return m;
      if (m instanceof Error) {
        const fds = takeRefused(m); // a maxFds refusal's: handed out, to be closed here
        this.#taken[0]! += fds.length;
        closeQuietly(fds);
        return m;
      }
      this.#taken[0]! += m.fds.length;
      if (this.#allow === undefined || this.#admits(m)) return m;
    }
  }

  // bindDgram's `allow`: a datagram from a refused sender is dropped, its fds closed, 'reject' emitted.
  #admits(m: Message): boolean {
    let ok = false;
    try {
      ok = m.cred !== undefined && this.#allow!(m.cred) === true;
    } catch (err) {
      debug('channel fd=%d: allow threw: %s', this.#fd, (err as Error).message);
      if (this.listenerCount('error') > 0) emitGuarded(this, 'error', err);
    }
    if (!ok) {
      debug('channel fd=%d rejected a datagram from %o (%d fds closed)', this.#fd, m.cred, m.fds.length);
      closeQuietly(m.fds);
      emitGuarded(this, 'reject', m.cred);
    }
    return ok;
  }

  #shutdown(err: Error | null): void {
    if (this.#closed) return;
    this.#closed = true;
    if (err !== null && this.#error === null) this.#error = err;
    this.#poller?.close();
    this.#poller = null;
    const failure = this.#error ?? new FdpassError('ERR_FDPASS_CLOSED', 'the channel was closed before the message was sent');
    for (const s of this.#sends.values()) s.reject(failure);
    this.#sends.clear();
    this.#runAfterFlush(); // a close() that waited for those sends: its destroy() drops the inbox
    if (this.#inbox.length === 0) this.#rejectWaiters();
    debug('channel fd=%d closed%s', this.#fd, err ? ` (${err.message})` : '');
    this.#onClose?.();
    process.nextTick(() => {
      if (err !== null && this.listenerCount('error') > 0) emitGuarded(this, 'error', err);
      emitGuarded(this, 'close');
    });
  }

  #endError(): Error {
    return this.#error ?? new FdpassError('ERR_FDPASS_CLOSED', this.#ended ? 'the peer closed the channel' : 'the channel is closed');
  }

  #rejectWaiters(): void {
    const waiters = this.#waiters.splice(0);
    const err = this.#endError();
    for (const w of waiters) w.reject(err);
  }

  // One read batch: decoded into the inbox before any user code runs.
  #onRead(count: number, eof: boolean, errno: number, syscall: string): void {
    decodeBatch(count, this.#readBuffer, this.#maxFds, this.#fd, this.#inbox);
    if (eof) {
      this.#ended = true;
      debug('channel fd=%d: peer closed', this.#fd);
    }
    this.#dispatch();
    if (errno !== 0) {
      this.#onError(systemError(errno, syscall));
    } else if (eof) {
      process.nextTick(() => emitGuarded(this, 'end'));
      if (!this.#allowHalfOpen) this.#shutdown(null);
    }
  }

  #onSent(lastId: number): void {
    for (const [id, s] of this.#sends) {
      // Ids are uint32 and wrap (native skips 0): "after lastId" in serial-number arithmetic.
      const ahead = (id - lastId) >>> 0;
      if (ahead !== 0 && ahead < 0x80000000) break;
      this.#sends.delete(id);
      s.resolve();
    }
    // Every queued message (send() or write()) is in #sends: none left means the queue is empty.
    if (this.#sends.size > 0) return;
    if (this.#needDrain) {
      this.#needDrain = false;
      emitGuarded(this, 'drain');
    }
    this.#runAfterFlush();
  }

  #runAfterFlush(): void {
    const fn = this.#afterFlush;
    this.#afterFlush = undefined;
    fn?.();
  }

  #onError(err: FdpassSystemError): void {
    debug('channel fd=%d error: %s', this.#fd, err.message);
    this.#shutdown(err);
  }

  // Hands inbox entries to waiting receive() calls first, then to 'message' listeners.
  #dispatch(): void {
    while (this.#inbox.length > 0 && this.#waiters.length > 0) {
      const m = this.#take();
      if (m === undefined) break;
      const w = this.#waiters.shift()!;
      if (m instanceof Error) w.reject(m);
      else w.resolve(m);
    }
    while (this.#inbox.length > 0 && !this.#paused && this.listenerCount('message') > 0) {
      const m = this.#take();
      if (m === undefined) break;
      if (m instanceof Error) {
        // Never silent, never a crash: without an 'error' listener it becomes a process warning.
        if (this.listenerCount('error') > 0) emitGuarded(this, 'error', m);
        else process.emitWarning(m);
      } else {
        // A throwing listener must not strand the rest of the batch, the EOF or 'close'.
        emitGuarded(this, 'message', m);
      }
    }
    if ((this.#ended || this.#closed) && this.#inbox.length === 0) this.#rejectWaiters();
    this.#updateReading();
  }

  // Flow control: read only while someone is waiting; otherwise fds stay queued in the kernel.
  #updateReading(): void {
    if (this.#poller === null) return;
    const wanted =
      !this.#ended && // after EOF (half-open) there is nothing more to read
      this.#inbox.length === 0 &&
      (this.#waiters.length > 0 || (!this.#paused && this.listenerCount('message') > 0));
    this.#setReading(wanted);
  }

  // Tells the poller only about changes: one native call per change, not per batch.
  #setReading(wanted: boolean): void {
    if (this.#poller === null || wanted === this.#reading) return;
    this.#reading = wanted;
    if (wanted) this.#poller.readStart();
    else this.#poller.readStop();
  }
}

/**
 * Wraps a connected Unix socket that you hold, or a bound Unix datagram socket, in a `Channel`. The
 * channel takes ownership of `fd`; when this throws (ERR_FDPASS_WRONG_FD_KIND for a listening,
 * unconnected or non-Unix socket), `fd` is still yours.
 */
export function openChannel(fd: number, opts: ChannelOptions = {}): Channel {
  validateFd(fd);
  const info = binding.inspect(fd);
  const kind = info.isSocket && info.domain === constants.AF_UNIX ? kindOf(info.type ?? -1) : undefined;
  if (kind === undefined) {
    throw new FdpassError('ERR_FDPASS_WRONG_FD_KIND', `fd ${fd} is not a Unix stream, seqpacket or datagram socket`);
  }
  if (info.listening === true) {
    throw new FdpassError('ERR_FDPASS_WRONG_FD_KIND', `fd ${fd} is a listening socket: use listen() to accept connections`);
  }
  // A datagram socket needs no peer to receive: one bound to a name is a legitimate receiver.
  const bound = kind === 'dgram' && info.local !== undefined && !info.local.unnamed;
  if (info.connected !== true && !bound) {
    throw new FdpassError(
      'ERR_FDPASS_WRONG_FD_KIND',
      kind === 'dgram' ? `fd ${fd} is a datagram socket neither connected nor bound to a name` : `fd ${fd} is not connected`,
    );
  }
  return new Channel(fd, info.type!, opts);
}
