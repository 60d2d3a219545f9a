// Error classes and codes: system errors shaped like Node's own, argument errors with Node's codes,
// and fdpass's own ERR_FDPASS_* failures.
import * as util from 'node:util';

/** Codes of errors that are fdpass's own (not a system call's). */
export type FdpassErrorCode =
  | 'ERR_FDPASS_CTRUNC'
  | 'ERR_FDPASS_TRUNCATED'
  | 'ERR_FDPASS_CLOSED'
  | 'ERR_FDPASS_NO_FD'
  | 'ERR_FDPASS_TOO_MANY_FDS'
  | 'ERR_FDPASS_TIMEOUT'
  | 'ERR_FDPASS_ABORTED'
  | 'ERR_FDPASS_WRONG_FD_KIND'
  | 'ERR_FDPASS_UNBOUND'
  | 'ERR_FDPASS_CLUSTER_WORKER'
  | 'ERR_FDPASS_HANDOFF_BUSY'
  | 'ERR_FDPASS_HANDOFF_VERSION'
  | 'ERR_FDPASS_HANDOFF_PROTOCOL'
  | 'ERR_FDPASS_HANDOFF_REFUSED'
  | 'ERR_FDPASS_HANDOFF_ROLLBACK'
  | 'ERR_FDPASS_HANDOFF_UNKNOWN_NAME'
  | 'ERR_FDPASS_UPGRADE_PID1'
  | 'ERR_FDPASS_SYSTEMD_ENV'
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

/** A failed system call, shaped like Node's own system errors: `code`, negative `errno`, `syscall`. */
export class FdpassSystemError extends Error {
  declare readonly code: string;
  declare readonly errno: number;
  declare readonly syscall: string;
  declare readonly path?: string;
  declare readonly address?: string;
  declare readonly port?: number;

  constructor(errno: number, syscall: string, extra: { path?: string; address?: string; port?: number } = {}) {
    const [code, description] = util.getSystemErrorMap().get(errno) ?? ['UNKNOWN', 'unknown error'];
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
