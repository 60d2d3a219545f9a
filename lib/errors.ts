// Error classes and codes: system errors shaped like Node's own, argument errors with Node's codes,
// and fdpass's own ERR_FDPASS_* failures.
import * as util from 'node:util';

/** Codes of errors that are fdpass's own (not a system call's). */
export type FdpassErrorCode =
  /** A message lost descriptors in the kernel (MSG_CTRUNC): those that arrived were closed. */
  | 'ERR_FDPASS_CTRUNC'
  /** A message was larger than `maxMessageSize` (MSG_TRUNC): dropped, its descriptors closed. */
  | 'ERR_FDPASS_TRUNCATED'
  /** The channel (or hand-off, upgrader) is closed. */
  | 'ERR_FDPASS_CLOSED'
  /** A message without a descriptor where one was expected, or an object with none. */
  | 'ERR_FDPASS_NO_FD'
  /** A message with more descriptors than allowed: dropped, all closed. */
  | 'ERR_FDPASS_TOO_MANY_FDS'
  /** `timeout` elapsed. */
  | 'ERR_FDPASS_TIMEOUT'
  /** `signal` was aborted. */
  | 'ERR_FDPASS_ABORTED'
  /** A descriptor of the wrong kind for this call. */
  | 'ERR_FDPASS_WRONG_FD_KIND'
  /** An unbound socket where a bound one is needed. */
  | 'ERR_FDPASS_UNBOUND'
  /** Not allowed inside a `cluster` worker. */
  | 'ERR_FDPASS_CLUSTER_WORKER'
  /** Another hand-off or upgrade is in progress, or the offered socket is busy. */
  | 'ERR_FDPASS_HANDOFF_BUSY'
  /** The peer speaks another hand-off protocol version. */
  | 'ERR_FDPASS_HANDOFF_VERSION'
  /** The peer broke the hand-off protocol. */
  | 'ERR_FDPASS_HANDOFF_PROTOCOL'
  /** An `allow` policy refused the peer, or the old process hung up. */
  | 'ERR_FDPASS_HANDOFF_REFUSED'
  /** The old process gave up on this one and keeps serving. */
  | 'ERR_FDPASS_HANDOFF_ROLLBACK'
  /** No listener of that name (or it was already taken). */
  | 'ERR_FDPASS_HANDOFF_UNKNOWN_NAME'
  /** `upgrade()` as PID 1 of a pid namespace: use `fdpass run`. */
  | 'ERR_FDPASS_UPGRADE_PID1'
  /** systemd's environment variables are malformed. */
  | 'ERR_FDPASS_SYSTEMD_ENV'
  /** Not Linux: the call needs Linux. */
  | 'ERR_FDPASS_UNSUPPORTED_PLATFORM';

// Every FdpassErrorCode, checked complete by the type (a code missing here does not compile).
const FDPASS_ERROR_CODES: Record<FdpassErrorCode, true> = {
  ERR_FDPASS_CTRUNC: true,
  ERR_FDPASS_TRUNCATED: true,
  ERR_FDPASS_CLOSED: true,
  ERR_FDPASS_NO_FD: true,
  ERR_FDPASS_TOO_MANY_FDS: true,
  ERR_FDPASS_TIMEOUT: true,
  ERR_FDPASS_ABORTED: true,
  ERR_FDPASS_WRONG_FD_KIND: true,
  ERR_FDPASS_UNBOUND: true,
  ERR_FDPASS_CLUSTER_WORKER: true,
  ERR_FDPASS_HANDOFF_BUSY: true,
  ERR_FDPASS_HANDOFF_VERSION: true,
  ERR_FDPASS_HANDOFF_PROTOCOL: true,
  ERR_FDPASS_HANDOFF_REFUSED: true,
  ERR_FDPASS_HANDOFF_ROLLBACK: true,
  ERR_FDPASS_HANDOFF_UNKNOWN_NAME: true,
  ERR_FDPASS_UPGRADE_PID1: true,
  ERR_FDPASS_SYSTEMD_ENV: true,
  ERR_FDPASS_UNSUPPORTED_PLATFORM: true,
};

/** True for a code this fdpass knows (e.g. one a peer sent, which may be another version's). */
export function isFdpassErrorCode(code: string): code is FdpassErrorCode {
  return Object.hasOwn(FDPASS_ERROR_CODES, code);
}

// Errors of descriptor passing that libuv's map (util.getSystemErrorMap) does not name, by Linux errno.
const BEYOND_LIBUV = new Map<number, [string, string]>([
  // sendmsg(2): descriptors in flight past the sender's RLIMIT_NOFILE (unix(7), without CAP_SYS_RESOURCE)
  [-109, ['ETOOMANYREFS', 'too many references: descriptors in flight beyond RLIMIT_NOFILE']],
]);

/** A failed system call, shaped like Node's own system errors: `code`, negative `errno`, `syscall`. */
export class FdpassSystemError extends Error {
  declare readonly code: string;
  declare readonly errno: number;
  declare readonly syscall: string;
  declare readonly path?: string;
  declare readonly address?: string;
  declare readonly port?: number;

  constructor(errno: number, syscall: string, extra: { path?: string; address?: string; port?: number } = {}) {
    const [code, description] = util.getSystemErrorMap().get(errno) ?? BEYOND_LIBUV.get(errno) ?? ['UNKNOWN', 'unknown error'];
    let message = `${syscall} ${code}: ${description}`;
    if (extra.address !== undefined) {
      message += extra.port !== undefined ? ` ${extra.address}:${extra.port}` : ` ${extra.address}`;
    } else if (extra.path !== undefined) {
      message += ` '${extra.path}'`;
    }
    super(message);
    // Own enumerable properties, as Node's system errors have them.
    Object.assign(this, { code, errno, syscall });
    if (extra.path !== undefined) Object.assign(this, { path: extra.path });
    if (extra.address !== undefined) Object.assign(this, { address: extra.address });
    if (extra.port !== undefined) Object.assign(this, { port: extra.port });
  }
}
Object.defineProperty(FdpassSystemError.prototype, 'name', { value: 'FdpassSystemError', configurable: true });

/** A failure that is fdpass's own; `code` is one of the `ERR_FDPASS_*` codes. */
export class FdpassError extends Error {
  declare readonly code: FdpassErrorCode;
  constructor(code: FdpassErrorCode, message: string) {
    super(message);
    Object.assign(this, { code });
  }
}
Object.defineProperty(FdpassError.prototype, 'name', { value: 'FdpassError', configurable: true });

/** Adds `path`/`address` context to a system error thrown by a native call. */
export function withContext<T>(fn: () => T, extra: { path?: string; address?: string; port?: number }): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof FdpassSystemError) throw new FdpassSystemError(err.errno, err.syscall, extra);
    throw err;
  }
}

export function systemError(errno: number, syscall: string): FdpassSystemError {
  return new FdpassSystemError(errno, syscall);
}
