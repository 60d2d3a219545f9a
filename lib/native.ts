// The one place the addon is loaded; NativeBinding types every native function.
import * as path from 'node:path';

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
  peer?: NativeAddress;
}

/** onRead for accept mode: the accepted descriptors. */
export type NativeReadCallback = (
  datas: Array<Buffer | null> | number[],
  fdLists: Array<number[] | number | undefined> | undefined,
  eof: boolean,
  errno: number,
  syscall: string,
) => void;

/**
 * onRead for message mode: `count` messages arrived in one batch. Their layout and descriptors are in
 * the readInfo array (see NativePollerConstructor), their bytes back to back in the readBuffer; both
 * are overwritten by the next batch, so the callback copies out what it keeps.
 */
export type NativeMessagesCallback = (count: number, eof: boolean, errno: number, syscall: string | undefined) => void;

export interface NativePoller {
  /**
   * Sends `data` with the descriptors staged in sendFds[0, nfds). 0 when the kernel took the whole
   * message, else an id that onSent later reports.
   */
  send(data: Uint8Array | null, nfds: number): number;
  readStart(): void;
  readStop(): void;
  close(): void;
  ref(): void;
  unref(): void;
  readonly fd: number;
  readonly queued: number;
}

export interface NativePollerConstructor {
  /**
   * Message mode. readBuffer (at least bufferSize bytes; the spare room lets one batch hold several
   * messages) and readInfo (READ_INFO_LENGTH int32s, shareable by every poller) carry each read batch
   * to onRead; sendFds (253 int32s, shareable) carries the descriptors of send(). readInfo layout:
   * [0] messages, [1] descriptors, per message i [2 + 2i] byte length (-1: dropped) and [3 + 2i]
   * descriptor count (dropped: flags 1 MSG_CTRUNC | 2 MSG_TRUNC), descriptors from 2 + 2 * READ_BUDGET.
   */
  new (
    fd: number,
    mode: 0,
    socketType: number,
    bufferSize: number,
    onRead: NativeMessagesCallback,
    onSent: (lastId: number) => void,
    onError: (errno: number, syscall: string, failedId: number) => void,
    readBuffer: Uint8Array,
    readInfo: Int32Array,
    sendFds: Int32Array,
  ): NativePoller;
  /** Accept mode: onRead(fds, undefined, false, errno, syscall) with the accepted descriptors. */
  new (
    fd: number,
    mode: 1,
    socketType: number,
    bufferSize: number,
    onRead: NativeReadCallback,
    onSent: (lastId: number) => void,
    onError: (errno: number, syscall: string, failedId: number) => void,
  ): NativePoller;
  /** Most messages one read batch delivers. */
  readonly READ_BUDGET: number;
  /** Length readInfo must have. */
  readonly READ_INFO_LENGTH: number;
}

export interface NativeBinding {
  setErrorFactory(factory: (errno: number, syscall: string) => Error): void;
  Poller: NativePollerConstructor;
  socketPair(type: number): [number, number];
  unixListen(type: number, name: string, abstract: boolean, backlog: number, mode: number): number;
  unixConnect(type: number, name: string, abstract: boolean): number;
  peerCred(fd: number): [number, number, number];
  inetBind(
    family: number,
    type: number,
    host: string,
    port: number,
    backlog: number,
    v6only: number,
    reusePort: boolean,
  ): number;
  inspect(fd: number): NativeFdInfo;
  dup(fd: number): number;
  close(fd: number): void;
  /** Sets FD_CLOEXEC on fd (fcntl F_SETFD). */
  setCloexec(fd: number): void;
  /** Closes fds[0, count) in one call; returns the first errno (negative) or 0. */
  closeFds(fds: Int32Array, count: number): number;
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

// node-gyp-build: build/Release first, then a matching prebuilds/<platform>-<arch>/ binary.
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const binding = require('node-gyp-build')(path.join(__dirname, '..')) as NativeBinding;
export const constants = binding.constants;
