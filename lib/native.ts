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

/** onRead for message mode: data[i] null means truncated, and then fds[i] is a flag number. */
export type NativeReadCallback = (
  datas: Array<Buffer | null> | number[],
  fdLists: Array<number[] | number | undefined> | undefined,
  eof: boolean,
  errno: number,
  syscall: string,
) => void;

export interface NativePoller {
  /** 0 when the kernel took the whole message, else an id that onSent later reports. */
  send(data: Uint8Array | null, fds: number[] | null): number;
  readStart(): void;
  readStop(): void;
  close(): void;
  ref(): void;
  unref(): void;
  readonly fd: number;
  readonly queued: number;
}

export interface NativePollerConstructor {
  new (
    fd: number,
    mode: 0 | 1,
    socketType: number,
    bufferSize: number,
    onRead: NativeReadCallback,
    onSent: (lastId: number) => void,
    onError: (errno: number, syscall: string, failedId: number) => void,
  ): NativePoller;
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
