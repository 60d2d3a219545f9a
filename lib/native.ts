// The one place the addon is loaded; NativeBinding types every native function.
import * as path from 'node:path';
import { FdpassError, systemError } from './errors';

/** What `inspect` returns for a socket's local or peer address. */
export interface NativeAddress {
  family: number;
  address: string;
  port: number;
  abstract: boolean;
  unnamed: boolean;
}

export interface NativeFdInfo {
  mode: number;
  isSocket: boolean;
  cloexec: boolean;
  nonblocking: boolean;
  domain?: number;
  type?: number;
  protocol?: number;
  listening?: boolean;
  local?: NativeAddress;
  connected?: boolean;
  /** A TCP socket still in its handshake (SYN_SENT/SYN_RECV). */
  connecting?: boolean;
  peer?: NativeAddress;
}

/**
 * onRead of a ChannelPoller: `count` messages arrived in one batch, described in readInfo (layout:
 * NativeChannelPollerConstructor), their bytes in the readBuffer; both are overwritten by the next batch, so
 * the callback copies out what it keeps.
 */
export type NativeMessagesCallback = (count: number, eof: boolean, errno: number, syscall: string | undefined) => void;

/** What both pollers have (native/poll_base.h). */
export interface NativePollerBase {
  readStart(): void;
  readStop(): void;
  /** Stops polling and closes the socket. */
  close(): void;
  ref(): void;
  unref(): void;
  readonly fd: number;
}

/** A connected socket's poller (native/channel_poller.h). */
export interface NativeChannelPoller extends NativePollerBase {
  /**
   * Sends `data` with the descriptors staged in sendFds[0, nfds). 0 when the kernel took the whole
   * message, else an id that onSent later reports.
   */
  send(data: Uint8Array | null, nfds: number): number;
  /**
   * Sends `count` (<= SEND_BATCH) messages in as few sendmmsg calls as the kernel allows, each with
   * its own descriptors; what it does not take is queued in order, as send() queues. Message i has
   * layout[2i] bytes, back to back in `data`, and layout[2i + 1] descriptors, back to back in
   * `layout` from SEND_BATCH_FDS (layout: SEND_BATCH_LAYOUT_LENGTH int32s). 0 when the kernel took
   * every message, else the id of the last queued one, which onSent later reports. Throws the system
   * error when the kernel refuses the first message; a later refusal reaches onError through the queue.
   */
  sendBatch(data: Uint8Array, layout: Int32Array, count: number): number;
  /** Closes the received fds JS has not handed to the application (those past readTaken[0]): close() leaves them held. */
  dropHeld(): void;
  readonly queued: number;
}

export interface NativeChannelPollerConstructor {
  /**
   * readBuffer (at least bufferSize bytes; the spare room lets one batch hold several
   * messages; shareable by every poller of a thread) and readInfo (READ_INFO_LENGTH int32s, shareable
   * by every poller) carry each read batch
   * to onRead; sendFds (253 int32s) carries the descriptors of send().
   *
   * readInfo's layout, the one description of it (native/channel_poller.cc fills it, lib/read-batch.ts reads
   * it; the offsets are the static constants below, exported by the addon):
   * - [0] the batch's message count, [1] its descriptor count;
   * - per message i, [READ_INFO_MESSAGES + 2i] its byte length and [READ_INFO_MESSAGES + 2i + 1] its
   *   descriptor count; a dropped message has length -1 and, in place of the count, why it was dropped
   *   (DROPPED_CTRUNC | DROPPED_TRUNC);
   * - from READ_INFO_FDS, every descriptor of the batch, message after message;
   * - from READ_INFO_CRED, per message i, the sender's [pid, uid, gid] (SO_PASSCRED sockets; pid -1
   *   when the message carried no credentials).
   * The bytes of the batch's messages lie back to back in readBuffer, from 0. A poller reads with
   * recvmmsg into full-size slots of readBuffer (bufferSize bytes each, as many as it
   * holds, up to READ_BUDGET) and moves each message down to lie after the previous one.
   *
   * The poller keeps owning the received descriptors until JS hands their message to the application
   * and adds their count to readTaken[0] (one Int32Array per poller; the poller resets it to 0 at each
   * batch): the rest close on dropHeld(), GC of the poller, or env teardown. When the constructor
   * throws, `fd` is still the caller's.
   */
  new (
    fd: number,
    socketType: number,
    bufferSize: number,
    onRead: NativeMessagesCallback,
    onSent: (lastId: number) => void,
    onError: (errno: number, syscall: string, failedId: number) => void,
    readBuffer: Uint8Array,
    readInfo: Int32Array,
    sendFds: Int32Array,
    readTaken: Int32Array,
  ): NativeChannelPoller;
  /** Most messages one read batch delivers. */
  readonly READ_BUDGET: number;
  /** Most messages one sendBatch() takes. */
  readonly SEND_BATCH: number;
  /** Where sendBatch()'s layout holds the descriptors, and the length it must have. */
  readonly SEND_BATCH_FDS: number;
  readonly SEND_BATCH_LAYOUT_LENGTH: number;
  /** Where readInfo's per-message [byte length, descriptor count] pairs start. */
  readonly READ_INFO_MESSAGES: number;
  /** Where readInfo's descriptors start. */
  readonly READ_INFO_FDS: number;
  /** Flags of a dropped message: it lost descriptors (MSG_CTRUNC) / data (MSG_TRUNC). */
  readonly DROPPED_CTRUNC: number;
  readonly DROPPED_TRUNC: number;
  /** Where readInfo's per-message sender credentials start: [pid, uid, gid] each, pid -1 when absent. */
  readonly READ_INFO_CRED: number;
  /** Length readInfo must have. */
  readonly READ_INFO_LENGTH: number;
}

/**
 * A listening socket's poller (native/accept_poller.h): onAccept(fds, errno, syscall) with each batch of
 * accepted descriptors (JS's at once) and the error that ended it (0: none). When the constructor
 * throws, `fd` is still the caller's.
 */
export type NativeAcceptPollerConstructor = new (
  fd: number,
  onAccept: (fds: number[], errno: number, syscall: string) => void,
  onError: (errno: number, syscall: string) => void,
) => NativePollerBase;

export interface NativeBinding {
  setErrorFactory(factory: (errno: number, syscall: string) => Error): void;
  ChannelPoller: NativeChannelPollerConstructor;
  AcceptPoller: NativeAcceptPollerConstructor;
  socketPair(type: number): [number, number];
  /**
   * Binds (and listens, but for datagrams). A socket file in the way is replaced only when stale
   * (connecting to it is refused): the one stale-socket rule, in native/sys/unix_socket.cc.
   */
  unixListen(type: number, name: string, abstract: boolean, backlog: number, mode: number): number;
  unixConnect(type: number, name: string, abstract: boolean): number;
  peerCred(fd: number): [number, number, number];
  inetBind(family: number, type: number, host: string, port: number, backlog: number, v6only: number, reusePort: boolean): number;
  inspect(fd: number): NativeFdInfo;
  dup(fd: number): number;
  /** listen(2) on a bound stream socket (throws the system error; the fd stays open). */
  listen(fd: number, backlog: number): void;
  close(fd: number): void;
  /** Sets FD_CLOEXEC on fd (fcntl F_SETFD). */
  setCloexec(fd: number): void;
  /** Closes fds[0, count) in one call; returns the first errno (negative) or 0. */
  closeFds(fds: Int32Array, count: number): number;
  /** waitpid(pid, WNOHANG): [pid, raw status] once it has exited and is reaped, null while it runs. */
  waitpid(pid: number): [number, number] | null;
  /** prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process. */
  setChildSubreaper(): void;
  /** Sends the SO_REUSEPORT group's new connections to the sockets at `indices[0..count)` (bind order) only; count 0: to all. */
  steerReusePort(fd: number, family: number, indices: Int32Array, count: number): void;
  /** send(2) of `data` with MSG_DONTWAIT on a connected stream socket: the bytes taken (EAGAIN throws). */
  sendNoWait(fd: number, data: Uint8Array): number;
  constants: {
    SOCK_STREAM: number;
    SOCK_DGRAM: number;
    SOCK_SEQPACKET: number;
    AF_UNIX: number;
    AF_INET: number;
    AF_INET6: number;
    S_IFSOCK: number;
    S_IFREG: number;
    S_IFIFO: number;
    S_IFCHR: number;
    S_IFBLK: number;
    S_IFDIR: number;
    S_IFLNK: number;
    MAX_FDS_PER_MESSAGE: number;
  };
}

/** `platform-arch` of this process, or FDPASS_TEST_PLATFORM's (tests only: `darwin-arm64`, `win32`). */
function hostPlatform(): { platform: string; arch: string } {
  const forced = process.env.FDPASS_TEST_PLATFORM;
  if (forced === undefined || forced === '') return { platform: process.platform, arch: process.arch };
  const [platform = '', arch = process.arch] = forced.split('-');
  return { platform, arch };
}

/**
 * Off Linux there is no addon (the install step compiles nothing there), yet importing fdpass must work
 * (a bundler or a test runner on a laptop loads an app that imports it): every native function then
 * throws ERR_FDPASS_UNSUPPORTED_PLATFORM, which async callers turn into a rejection. The constants
 * are Linux's ABI values (test/platform.test.ts compares them with the addon's), so that modules
 * reading them at import time load, and MAX_FDS_PER_MESSAGE still says 253.
 */
function unsupportedBinding(): NativeBinding {
  const fail = function unsupported(): never {
    throw unsupportedError();
  };
  const constants: NativeBinding['constants'] = {
    SOCK_STREAM: 1,
    SOCK_DGRAM: 2,
    SOCK_SEQPACKET: 5,
    AF_UNIX: 1,
    AF_INET: 2,
    AF_INET6: 10,
    S_IFSOCK: 0o140000,
    S_IFREG: 0o100000,
    S_IFIFO: 0o010000,
    S_IFCHR: 0o020000,
    S_IFBLK: 0o060000,
    S_IFDIR: 0o040000,
    S_IFLNK: 0o120000,
    MAX_FDS_PER_MESSAGE: 253,
  };
  // The pollers are constructed with `new`: a plain function (not an arrow) so that `new` reaches the throw.
  return new Proxy({ constants } as unknown as NativeBinding, {
    get: (target, key) => (key === 'constants' ? target.constants : fail),
  });
}

function unsupportedError(): FdpassError {
  return new FdpassError(
    'ERR_FDPASS_UNSUPPORTED_PLATFORM',
    `unsupported platform ${host.platform}-${host.arch}: fdpass runs on Linux only (SCM_RIGHTS, SO_REUSEPORT, systemd)`,
  );
}

/**
 * Throws ERR_FDPASS_UNSUPPORTED_PLATFORM off Linux. For what would start something (a process, a
 * listener) before its first native call: the CLI, handoff.upgrader(), spawnActivated().
 */
export function checkPlatform(): void {
  if (unsupported) throw unsupportedError();
}

// node-gyp-build: build/Release first, then a matching prebuilds/<platform>-<arch>/ binary.
// FDPASS_ADDON=/path/to/fdpass.node loads that binary instead: `npm run test:asan` points it at the
// sanitizer build in build-asan/ (children spawned by the tests inherit it). Unset or empty: the default.
const host = hostPlatform();
const unsupported = host.platform !== 'linux';
const addonOverride = process.env.FDPASS_ADDON;
export const binding = (
  unsupported
    ? unsupportedBinding()
    : addonOverride !== undefined && addonOverride !== ''
      ? require(path.resolve(addonOverride))
      : require('node-gyp-build')(path.join(__dirname, '..'))
) as NativeBinding;
export const constants = binding.constants;
// Native code builds its system errors with this factory, so they are FdpassSystemErrors.
if (!unsupported) binding.setErrorFactory(systemError);
