// Adoption: what a descriptor is (inspect), and turning one into a net.Server, net.Socket or
// dgram.Socket; fdOf() goes the other way. Guards the traps Node falls into with fds.
import cluster from 'node:cluster';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { binding, constants, type NativeAddress } from './native';
import { FdpassError, FdpassSystemError } from './errors';
import { kindOf } from './names';
import { invalidArgType, validateFd, validateInteger, validateObject } from './validate';

export type FdKind = 'socket' | 'file' | 'pipe' | 'char' | 'block' | 'directory' | 'symlink' | 'unknown';

export type SocketAddressInfo =
  { family: 'IPv4' | 'IPv6'; address: string; port: number } | { family: 'unix'; path: string; abstract: boolean; unnamed: boolean };

export interface SocketInfo {
  domain: 'unix' | 'inet' | 'inet6' | 'other';
  type: 'stream' | 'seqpacket' | 'dgram' | 'other';
  protocol: number;
  listening: boolean;
  connected: boolean;
  /** A TCP socket whose connect() is still under way (handshake not finished): neither listening nor connected. */
  connecting: boolean;
  local: SocketAddressInfo | undefined;
  peer: SocketAddressInfo | undefined;
}

export interface FdInfo {
  fd: number;
  kind: FdKind;
  cloexec: boolean;
  nonblocking: boolean;
  /** Present when kind is 'socket'. */
  socket?: SocketInfo;
}

function kindOfMode(mode: number): FdKind {
  switch (mode) {
    case constants.S_IFSOCK:
      return 'socket';
    case constants.S_IFREG:
      return 'file';
    case constants.S_IFIFO:
      return 'pipe';
    case constants.S_IFCHR:
      return 'char';
    case constants.S_IFBLK:
      return 'block';
    case constants.S_IFDIR:
      return 'directory';
    case constants.S_IFLNK:
      return 'symlink';
    default:
      return 'unknown';
  }
}

function address(a: NativeAddress | undefined): SocketAddressInfo | undefined {
  if (a === undefined) return undefined;
  if (a.family === constants.AF_INET) return { family: 'IPv4', address: a.address, port: a.port };
  if (a.family === constants.AF_INET6) return { family: 'IPv6', address: a.address, port: a.port };
  if (a.family === constants.AF_UNIX) return { family: 'unix', path: a.address, abstract: a.abstract, unnamed: a.unnamed };
  return undefined;
}

/** Says what a descriptor is. File, pipe, socket (domain, type, listening, addresses), flags. */
export function inspect(fd: number): FdInfo {
  validateFd(fd);
  const raw = binding.inspect(fd);
  const info: FdInfo = { fd, kind: kindOfMode(raw.mode), cloexec: raw.cloexec, nonblocking: raw.nonblocking };
  if (raw.isSocket) {
    const d = raw.domain;
    info.socket = {
      domain: d === constants.AF_UNIX ? 'unix' : d === constants.AF_INET ? 'inet' : d === constants.AF_INET6 ? 'inet6' : 'other',
      type: kindOf(raw.type ?? -1) ?? 'other',
      protocol: raw.protocol ?? 0,
      listening: raw.listening ?? false,
      connected: raw.connected ?? false,
      connecting: raw.connecting ?? false,
      local: address(raw.local),
      peer: address(raw.peer),
    };
  }
  return info;
}

/** A TCP or Unix stream socket (what net.Server and net.Socket drive); not a Unix seqpacket one. */
export function isStreamSocket(s: SocketInfo | undefined): s is SocketInfo & { type: 'stream' } {
  return s !== undefined && s.type === 'stream' && s.domain !== 'other';
}

/** A UDP socket, over IPv4 or IPv6 (what dgram.Socket drives). */
export function isUdpSocket(s: SocketInfo | undefined): s is SocketInfo & { type: 'dgram' } {
  return s !== undefined && s.type === 'dgram' && (s.domain === 'inet' || s.domain === 'inet6');
}

export function wrongKind(fd: number, want: string, info: FdInfo): FdpassError {
  const s = info.socket;
  const kinds: Record<FdKind, string> = {
    socket: 'a socket',
    file: 'a file',
    pipe: 'a pipe',
    char: 'a character device',
    block: 'a block device',
    directory: 'a directory',
    symlink: 'a symbolic link',
    unknown: 'an unknown kind of descriptor',
  };
  const article = s?.domain === 'unix' ? 'a' : 'an'; // a unix, an inet, an inet6, an other
  const state = s?.listening ? ' (listening)' : s?.connecting ? ' (still connecting)' : '';
  const got = s ? `${article} ${s.domain} ${s.type} socket${state}` : kinds[info.kind];
  return new FdpassError('ERR_FDPASS_WRONG_FD_KIND', `fd ${fd} is ${got}, not ${want}`);
}

function isBound(s: SocketInfo): boolean {
  const a = s.local;
  if (a === undefined) return false;
  return a.family === 'unix' ? !a.unnamed : a.port !== 0;
}

/** Puts the adopter's name in front of an error's message; code, errno, syscall etc. stay as they are. */
function named<E>(err: E, fn: string, fd: number): E {
  if (err instanceof Error) err.message = `${fn}(fd ${fd}): ${err.message}`;
  return err;
}

/** `address`/`port` or `path` of a socket's local address, for a system error. */
function where(s: SocketInfo): { address?: string; port?: number; path?: string } {
  const a = s.local;
  if (a === undefined) return {};
  if (a.family === 'unix') return { path: a.abstract ? `@${a.path}` : a.path };
  return { address: a.address, port: a.port };
}

/**
 * Resolves with a listening server on `fd`, a listening or bound TCP or Unix stream socket. It is a
 * new net.Server, or `server` (such as your http.Server) when given.
 *
 * Ownership: on success the server owns this very descriptor number (`fdOf(server) === fd`) and
 * closes it when it closes. On rejection `fd` is still open and still yours (close it, or try
 * again). For that, everything that can fail happens before Node is given the fd: the kind checks,
 * and for a bound socket that does not listen yet, listen(2) itself (a failure, e.g. EADDRINUSE,
 * rejects with an FdpassSystemError with syscall 'listen'); Node's own `listen({ fd })` closes the
 * fd when listen(2) fails. Refuses an unbound TCP socket (Node would silently bind 0.0.0.0 on a
 * random port) and a TCP socket still connecting.
 */
export function toServer<S extends net.Server = net.Server>(fd: number, server?: S, opts: { backlog?: number } = {}): Promise<S> {
  try {
    validateFd(fd);
    if (server !== undefined && !(server instanceof net.Server)) throw invalidArgType('server', 'an instance of net.Server', server);
    validateObject(opts, 'options');
    const backlog = opts.backlog ?? 511;
    validateInteger(backlog, 'options.backlog', 0, 65535);
    const info = inspect(fd);
    const s = info.socket;
    if (!isStreamSocket(s) || s.connected || s.connecting) {
      throw wrongKind(fd, 'a listening or bound TCP or Unix stream socket', info);
    }
    if (!isBound(s)) {
      throw new FdpassError('ERR_FDPASS_UNBOUND', `fd ${fd} is not bound to an address; Node would bind it to a random port`);
    }
    if (cluster.isWorker) {
      throw new FdpassError(
        'ERR_FDPASS_CLUSTER_WORKER',
        'a cluster worker cannot adopt a listening fd: Node routes listen({ fd }) to the primary',
      );
    }
    if (server?.listening) {
      // Node's own error for a second listen(), raised before the fd is touched.
      throw Object.assign(new Error(`toServer(fd ${fd}): the server is already listening`), { code: 'ERR_SERVER_ALREADY_LISTEN' });
    }
    if (!s.listening) {
      try {
        binding.listen(fd, backlog);
      } catch (err) {
        throw err instanceof FdpassSystemError ? named(new FdpassSystemError(err.errno, err.syscall, where(s)), 'toServer', fd) : err;
      }
    }
    const target = server ?? (net.createServer() as S);
    return new Promise<S>((resolve, reject) => {
      const onError = (err: Error): void => {
        target.off('listening', onListening);
        // Past the checks above only Node's handle.open() can fail (EEXIST: the fd already belongs
        // to a Node handle in this process), and that leaves the fd open.
        reject(named(err, 'toServer', fd));
      };
      const onListening = (): void => {
        target.off('error', onError);
        resolve(target);
      };
      target.once('error', onError);
      target.once('listening', onListening);
      try {
        target.listen({ fd, backlog });
      } catch (err) {
        target.off('error', onError);
        target.off('listening', onListening);
        reject(named(err, 'toServer', fd));
      }
    });
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Returns a `net.Socket` over `fd`, a connected TCP or Unix stream socket, synchronously. The socket
 * owns this very descriptor number; when this throws, `fd` is still open and yours. SEQPACKET and
 * UDP sockets are refused (net.Socket cannot drive them), and so is a TCP socket still connecting.
 */
export function toSocket(fd: number, opts: { allowHalfOpen?: boolean } = {}): net.Socket {
  validateFd(fd);
  const info = inspect(fd);
  const s = info.socket;
  if (!isStreamSocket(s) || s.listening || !s.connected) {
    throw wrongKind(fd, 'a connected TCP or Unix stream socket', info);
  }
  try {
    // Node's constructor throws only before its handle holds the fd (fd type, handle.open()).
    return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: opts.allowHalfOpen ?? false });
  } catch (err) {
    throw named(err, 'toSocket', fd);
  }
}

/**
 * Resolves with a dgram.Socket over `fd`, a bound UDP socket. On success the socket owns the fd; on
 * rejection `fd` is still open and yours. fd 0 is adopted through a duplicate (then fd 0 is closed):
 * Node's `bind({ fd })` ignores fd 0 and would bind a new socket on a random port instead.
 */
export function toDgram(fd: number, opts: Omit<dgram.SocketOptions, 'type'> = {}): Promise<dgram.Socket> {
  try {
    validateFd(fd);
    const info = inspect(fd);
    const s = info.socket;
    if (!isUdpSocket(s)) {
      throw wrongKind(fd, 'a bound UDP socket', info);
    }
    if (!isBound(s)) throw new FdpassError('ERR_FDPASS_UNBOUND', `fd ${fd} is a UDP socket that is not bound`);
    const socket = dgram.createSocket({ ...opts, type: s.domain === 'inet6' ? 'udp6' : 'udp4' });
    const given = fd === 0 ? binding.dup(fd) : fd;
    // Node emits 'listening' from inside bind({ fd }).
    const listening = new Promise<dgram.Socket>((resolve) => socket.once('listening', () => resolve(socket)));
    try {
      // Synchronous: with { fd } Node opens its handle on the fd at once, and throws (leaving the fd
      // alone) when it cannot; after that the socket owns the fd and no bind error can follow.
      socket.bind({ fd: given });
    } catch (err) {
      if (given !== fd) binding.close(given);
      socket.close();
      throw named(err, 'toDgram', fd);
    }
    if (given !== fd) binding.close(fd);
    return listening;
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Adopts `fd` with `toDgram`, `toSocket` or `toServer`, picked by what it is. A TCP socket still
 * connecting is none of these (ERR_FDPASS_WRONG_FD_KIND). As with each adopter, on rejection `fd` is
 * still open and yours.
 */
export async function adopt(fd: number): Promise<net.Server | net.Socket | dgram.Socket> {
  validateFd(fd);
  const info = inspect(fd);
  const s = info.socket;
  if (isUdpSocket(s)) return toDgram(fd);
  if (isStreamSocket(s) && s.connecting) {
    throw new FdpassError(
      'ERR_FDPASS_WRONG_FD_KIND',
      `fd ${fd} is a TCP socket still connecting: neither listening nor connected yet (adopt it with toSocket once connected)`,
    );
  }
  if (isStreamSocket(s)) return s.connected ? toSocket(fd) : toServer(fd);
  throw wrongKind(fd, 'a TCP, UDP or Unix stream socket', info);
}

/** Anything that has a descriptor fdpass can send. */
export type FdLike = number | net.Server | net.Socket | dgram.Socket;

function dgramHandle(socket: dgram.Socket): { fd?: number } | undefined {
  // dgram keeps its handle behind a private symbol; its `_handle` getter is deprecated (DEP0112).
  for (const sym of Object.getOwnPropertySymbols(socket)) {
    const state = (socket as unknown as Record<symbol, { handle?: { fd?: number } }>)[sym];
    if (sym.description === 'state symbol' && state?.handle) return state.handle;
  }
  return undefined;
}

/**
 * Returns the descriptor behind a listening `net.Server`, a connected `net.Socket` or a bound
 * `dgram.Socket`.
 */
export function fdOf(value: FdLike, name = 'fd'): number {
  if (typeof value === 'number') {
    validateFd(value, name);
    return value;
  }
  let fd: number | undefined;
  if (value instanceof net.Server || value instanceof net.Socket) {
    fd = (value as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  } else if (value instanceof dgram.Socket) {
    fd = dgramHandle(value)?.fd;
  } else {
    throw invalidArgType(name, 'of type number or an instance of net.Server, net.Socket or dgram.Socket', value);
  }
  if (typeof fd !== 'number' || fd < 0) {
    throw new FdpassError('ERR_FDPASS_NO_FD', 'the object has no descriptor (not listening, not connected, not bound, or closed)');
  }
  return fd;
}
