// sd_notify(3) over fdpass's own datagram channel: readiness, reload, stop, status, main pid, the
// watchdog, and the fd store (FDSTORE=1 with the descriptors as SCM_RIGHTS).
import { debuglog } from 'node:util';
import { connect } from '../endpoints';
import { MAX_FDS_PER_MESSAGE } from '../message';
import { fdOf, type FdLike } from '../adopt';
import { invalidArgType, invalidArgValue, validateInteger, validateObject } from '../validate';
import { validateFdName, validateFieldName, validateFieldValue } from './names';

const debug = debuglog('fdpass');

/** What to tell systemd; every field is optional, the ones given go out in one datagram. */
export interface NotifyState {
  /** `READY=1`: start-up finished (Type=notify), or a reload finished. */
  ready?: boolean;
  /**
   * `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC now, which systemd 253+ requires for
   * Type=notify-reload): a reload began; send `ready: true` when it is done.
   */
  reloading?: boolean;
  /** `STOPPING=1`: shutting down. */
  stopping?: boolean;
  /** `STATUS=`: one line of free text shown by `systemctl status`. */
  status?: string;
  /** `MAINPID=`: the service's main process is now this pid (e.g. a successor it spawned). */
  mainPid?: number;
  /** `ERRNO=`: the service failed with this errno (positive). */
  errno?: number;
  /** `EXTEND_TIMEOUT_USEC=`: ask for this many more microseconds for the start, stop or reload in progress. */
  extendTimeoutUsec?: number;
  /** `WATCHDOG=1` (true) keeps the watchdog happy; `WATCHDOG=trigger` ('trigger') fires it now. */
  watchdog?: boolean | 'trigger';
  /** `WATCHDOG_USEC=`: a new watchdog timeout, in microseconds. */
  watchdogUsec?: number;
  /** Further fields, sent as `KEY=value` after the ones above (e.g. `{ NOTIFYACCESS: 'all' }`). */
  fields?: Record<string, string | number>;
}

export interface NotifyOptions {
  /** The socket to send to; default `$NOTIFY_SOCKET` (a path, or an abstract name as `@name`). */
  socket?: string;
  /** Remove NOTIFY_SOCKET from the environment after sending (as sd_notify's `unset_environment`). Default false. */
  unsetEnvironment?: boolean;
}

function flag(state: NotifyState, key: keyof NotifyState): boolean {
  const v = state[key];
  if (v === undefined || v === false) return false;
  if (v !== true) throw invalidArgType(`state.${key}`, 'of type boolean', v);
  return true;
}

/** The datagram text for `state`, without sending it. */
export function notifyMessage(state: NotifyState): string {
  validateObject(state, 'state');
  const lines: string[] = [];
  if (state.mainPid !== undefined) {
    validateInteger(state.mainPid, 'state.mainPid', 1, 0x7fffffff);
    lines.push(`MAINPID=${state.mainPid}`);
  }
  if (flag(state, 'reloading')) {
    // uv_hrtime (process.hrtime) reads CLOCK_MONOTONIC, the clock systemd compares with.
    lines.push('RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`);
  }
  if (flag(state, 'ready')) lines.push('READY=1');
  if (flag(state, 'stopping')) lines.push('STOPPING=1');
  if (state.status !== undefined) {
    if (typeof state.status !== 'string') throw invalidArgType('state.status', 'of type string', state.status);
    lines.push(`STATUS=${validateFieldValue(state.status, 'state.status')}`);
  }
  if (state.errno !== undefined) {
    validateInteger(state.errno, 'state.errno', 0, 4095);
    lines.push(`ERRNO=${state.errno}`);
  }
  if (state.extendTimeoutUsec !== undefined) {
    validateInteger(state.extendTimeoutUsec, 'state.extendTimeoutUsec', 0, Number.MAX_SAFE_INTEGER);
    lines.push(`EXTEND_TIMEOUT_USEC=${state.extendTimeoutUsec}`);
  }
  if (state.watchdog !== undefined && state.watchdog !== false) {
    if (state.watchdog !== true && state.watchdog !== 'trigger') {
      throw invalidArgType('state.watchdog', "of type boolean or 'trigger'", state.watchdog);
    }
    lines.push(state.watchdog === true ? 'WATCHDOG=1' : 'WATCHDOG=trigger');
  }
  if (state.watchdogUsec !== undefined) {
    validateInteger(state.watchdogUsec, 'state.watchdogUsec', 1, Number.MAX_SAFE_INTEGER);
    lines.push(`WATCHDOG_USEC=${state.watchdogUsec}`);
  }
  if (state.fields !== undefined) {
    validateObject(state.fields, 'state.fields');
    for (const [key, value] of Object.entries(state.fields)) {
      validateFieldName(key, 'state.fields');
      lines.push(`${key}=${validateFieldValue(value, `state.fields.${key}`)}`);
    }
  }
  return lines.join('\n');
}

function targetOf(opts: NotifyOptions): string | undefined {
  validateObject(opts, 'options');
  if (opts.socket !== undefined && typeof opts.socket !== 'string') throw invalidArgType('options.socket', 'of type string', opts.socket);
  if (opts.unsetEnvironment !== undefined && typeof opts.unsetEnvironment !== 'boolean') {
    throw invalidArgType('options.unsetEnvironment', 'of type boolean', opts.unsetEnvironment);
  }
  const socket = opts.socket ?? process.env.NOTIFY_SOCKET;
  return socket === '' ? undefined : socket;
}

/** Sends each message as one datagram to `socket`, over one connected fdpass channel. */
async function sendAll(socket: string, messages: Array<{ data: string; fds?: number[] }>): Promise<void> {
  const channel = await connect(socket, { type: 'dgram' });
  try {
    for (const m of messages) await channel.send({ data: m.data, ...(m.fds ? { fds: m.fds } : {}) });
  } finally {
    await channel.close();
  }
}

async function deliver(
  what: string,
  messages: Array<{ data: string; fds?: number[] }>,
  opts: NotifyOptions,
  socket: string | undefined,
): Promise<boolean> {
  if (socket === undefined) {
    debug('%s: NOTIFY_SOCKET is not set (not started by systemd as Type=notify): nothing sent', what);
    return false;
  }
  await sendAll(socket, messages);
  debug(
    '%s: sent %j to %s',
    what,
    messages.map((m) => m.data),
    socket,
  );
  if (opts.unsetEnvironment === true) delete process.env.NOTIFY_SOCKET;
  return true;
}

/**
 * Tells systemd about this service's state (`sd_notify(3)`). It sends one datagram with the fields
 * of `state` to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). Resolves `true` once sent, `false` when
 * there is no NOTIFY_SOCKET (not run by systemd: not an error; `NODE_DEBUG=fdpass` says so). Values
 * with a newline are refused (TypeError ERR_INVALID_ARG_VALUE); send failures reject with the system
 * error (e.g. ECONNREFUSED, ENOENT).
 *
 * @example await notify({ ready: true, status: 'serving on :8080' })
 */
export function notify(state: NotifyState, opts: NotifyOptions = {}): Promise<boolean> {
  try {
    const data = notifyMessage(state);
    if (data === '') throw invalidArgValue('state', state, 'must have at least one field to send');
    return deliver('notify', [{ data }], opts, targetOf(opts));
  } catch (err) {
    return Promise.reject(err);
  }
}

export interface StoreFdsOptions extends NotifyOptions {
  /**
   * false sends `FDPOLL=0`: systemd then keeps the descriptors even when they report EPOLLHUP or
   * EPOLLERR (by default it drops such descriptors from the store). Default true.
   */
  poll?: boolean;
}

/**
 * Puts descriptors into systemd's fd store for this service. That is `FDSTORE=1` and `FDNAME=name`
 * with the fds as SCM_RIGHTS: systemd keeps them while the service restarts and hands them back on
 * its next start through {@link listenFds}, with this name. Needs `FileDescriptorStoreMax=` in the
 * unit (and a NotifyAccess= that admits the sender). Several fds may share a name; more than 253 go
 * in several datagrams. The fds stay yours. Resolves `false` when there is no NOTIFY_SOCKET.
 */
export function storeFds(name: string, fds: readonly FdLike[], opts: StoreFdsOptions = {}): Promise<boolean> {
  try {
    validateFdName(name, 'name');
    if (!Array.isArray(fds)) throw invalidArgType('fds', 'an instance of Array', fds);
    if (fds.length === 0) throw invalidArgValue('fds', fds, 'must be a non-empty array');
    const numbers = fds.map((f, i) => fdOf(f as FdLike, `fds[${i}]`));
    const socket = targetOf(opts);
    if (opts.poll !== undefined && typeof opts.poll !== 'boolean') throw invalidArgType('options.poll', 'of type boolean', opts.poll);
    const data = `FDSTORE=1\nFDNAME=${name}${opts.poll === false ? '\nFDPOLL=0' : ''}`;
    const messages: Array<{ data: string; fds: number[] }> = [];
    for (let i = 0; i < numbers.length; i += MAX_FDS_PER_MESSAGE) {
      messages.push({ data, fds: numbers.slice(i, i + MAX_FDS_PER_MESSAGE) });
    }
    return deliver('storeFds', messages, opts, socket);
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Removes every descriptor named `name` from systemd's fd store (`FDSTOREREMOVE=1`, `FDNAME=name`).
 * Resolves `false` when there is no
 * NOTIFY_SOCKET.
 */
export function removeStoredFds(name: string, opts: NotifyOptions = {}): Promise<boolean> {
  try {
    validateFdName(name, 'name');
    return deliver('removeStoredFds', [{ data: `FDSTOREREMOVE=1\nFDNAME=${name}` }], opts, targetOf(opts));
  } catch (err) {
    return Promise.reject(err);
  }
}
