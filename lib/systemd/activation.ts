// Socket activation (sd_listen_fds(3)): the descriptors systemd hands a service from fd 3 on, with
// their names; adopting them by name; and handing descriptors to a child the same way.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type * as dgram from 'node:dgram';
import * as net from 'node:net';
import { debuglog } from 'node:util';
import { binding, checkPlatform } from '../native';
import { FdpassError } from '../errors';
import { fdOf, inspect, isStreamSocket, isUdpSocket, toDgram, toServer, type FdInfo, type FdLike } from '../adopt';
import { closeQuietly } from '../fds';
import { invalidArgType, invalidArgValue, validateObject } from '../validate';
import { UNNAMED, validateFdName } from './names';
import { ownPidShell } from './own-pid';
import { softLimit } from '../proc';

const debug = debuglog('fdpass');

/** sd_listen_fds(3): passed descriptors start at 3 (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** One descriptor handed to this process by socket activation or the fd store. */
export interface ListenFd {
  /** The descriptor number (3, 4, ...). It is yours: adopt it or close it. */
  fd: number;
  /** Its name from LISTEN_FDNAMES (`FileDescriptorName=`, `FDNAME=`), or `'unknown'` when none was set. */
  name: string;
  /** What {@link inspect} says of it (after it was marked CLOEXEC). */
  info: FdInfo;
}

export interface ListenFdsOptions {
  /**
   * Remove LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment once the descriptors are
   * taken, so that children do not see them. Default true.
   */
  unsetEnvironment?: boolean;
}

// What this process already took: a second call must not hand out the same descriptors again, even
// when the environment was kept.
let taken: string | undefined;

function envError(message: string): FdpassError {
  return new FdpassError('ERR_FDPASS_SYSTEMD_ENV', message);
}

function unsetListenEnv(): void {
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_FDNAMES;
}

/**
 * Takes the descriptors systemd passed to this process, as `sd_listen_fds_with_names(3)` does. That
 * is socket activation, or the fd store on a restart: it reads LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES, and returns `[]` when LISTEN_PID is not this process (the variables are then left
 * alone). The descriptors are marked CLOEXEC; by default the three variables are removed afterwards. A second
 * call returns `[]`: each descriptor is handed out once.
 *
 * Throws ERR_FDPASS_SYSTEMD_ENV when the variables are malformed (e.g. fewer names than descriptors),
 * and the system error (EBADF) when a descriptor they announce is not open.
 */
export function listenFds(opts: ListenFdsOptions = {}): ListenFd[] {
  validateObject(opts, 'options');
  const unset = opts.unsetEnvironment ?? true;
  if (typeof unset !== 'boolean') throw invalidArgType('options.unsetEnvironment', 'of type boolean', unset);
  const { LISTEN_PID: pidText, LISTEN_FDS: countText, LISTEN_FDNAMES: namesText } = process.env;
  if (pidText === undefined) {
    debug('listenFds: LISTEN_PID is not set: no descriptors were passed');
    return [];
  }
  if (!/^[1-9][0-9]*$/.test(pidText)) throw envError(`LISTEN_PID is not a process id: '${pidText}'`);
  if (Number(pidText) !== process.pid) {
    debug('listenFds: LISTEN_PID=%s is not this process (%d): nothing taken', pidText, process.pid);
    return [];
  }
  const key = `${pidText}/${countText ?? ''}/${namesText ?? ''}`;
  if (taken === key) {
    debug('listenFds: these descriptors were already taken');
    return [];
  }
  if (countText === undefined || !/^[0-9]+$/.test(countText)) {
    throw envError(`LISTEN_FDS is not a count of descriptors: '${countText ?? ''}'`);
  }
  const count = Number(countText);
  // No process can hold more descriptors than RLIMIT_NOFILE allows: a larger count is malformed, and
  // must be refused before anything is allocated per descriptor.
  const limit = softLimit('Max open files'); // RLIMIT_NOFILE; Infinity when unlimited or unknown
  if (count > 0x7fffffff - LISTEN_FDS_START || LISTEN_FDS_START + count > limit) {
    throw envError(
      `LISTEN_FDS is too large: ${countText} descriptors from fd ${LISTEN_FDS_START} on${Number.isFinite(limit) ? `, over this process's limit of ${limit} (RLIMIT_NOFILE)` : ''}`,
    );
  }
  // sd_listen_fds_with_names: no LISTEN_FDNAMES means every name is "unknown"; a different count is EINVAL.
  let names: string[] | undefined;
  if (namesText !== undefined) {
    names = count === 0 && namesText === '' ? [] : namesText.split(':');
    if (names.length !== count) {
      throw envError(`LISTEN_FDNAMES has ${names.length} name(s) for ${count} descriptor(s): '${namesText}'`);
    }
  }
  // Check every descriptor before touching any (EBADF names the first closed one), and before
  // allocating anything per descriptor: what is built below is bounded by what is open.
  for (let fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + count; fd++) inspect(fd);
  const fds = Array.from({ length: count }, (_, i) => LISTEN_FDS_START + i);
  for (const fd of fds) binding.setCloexec(fd);
  taken = key;
  if (unset) unsetListenEnv();
  const result = fds.map((fd, i) => ({ fd, name: names?.[i] ?? UNNAMED, info: inspect(fd) }));
  debug(
    'listenFds: took %j',
    result.map((r) => `${r.fd}:${r.name}`),
  );
  return result;
}

/** What {@link adoptListenFds} made of one passed descriptor. */
export type AdoptedFd =
  | { kind: 'server'; name: string; fd: number; info: FdInfo; server: net.Server }
  | { kind: 'dgram'; name: string; fd: number; info: FdInfo; socket: dgram.Socket }
  | { kind: 'fd'; name: string; fd: number; info: FdInfo };

export interface AdoptListenFdsOptions extends ListenFdsOptions {
  /**
   * The servers to serve listeners on, by name: an instance (e.g. an `http.Server`) takes the one
   * listener of that name; a function is called for each listener of that name and returns the
   * server for it. Listeners of other names get a plain `net.Server`.
   */
  servers?: Record<string, net.Server | (() => net.Server)>;
  /** Descriptors already taken with {@link listenFds}; default: `listenFds(options)` now. */
  fds?: readonly ListenFd[];
}

function isListeningStream(info: FdInfo): boolean {
  const s = info.socket;
  return isStreamSocket(s) && s.listening;
}

function isBoundUdp(info: FdInfo): boolean {
  const s = info.socket;
  return isUdpSocket(s) && !s.connected;
}

/**
 * Takes the passed descriptors and adopts each by what it is. A listening TCP or Unix stream socket
 * becomes a `net.Server` (or serves on the server you name in `servers`), a UDP socket a
 * `dgram.Socket`; anything else (a FIFO, a memfd from the fd store, a connected or Unix datagram
 * socket) stays a number, `kind: 'fd'`, yours to use or close. Resolves in LISTEN_FDS order.
 *
 * If one adoption fails, everything this call took is closed (servers you passed included) and the
 * error rejects.
 */
export async function adoptListenFds(opts: AdoptListenFdsOptions = {}): Promise<AdoptedFd[]> {
  validateObject(opts, 'options');
  const servers = opts.servers ?? {};
  validateObject(servers, 'options.servers');
  for (const [name, s] of Object.entries(servers)) {
    if (!(s instanceof net.Server) && typeof s !== 'function') {
      throw invalidArgType(`options.servers.${name}`, 'an instance of net.Server or a function', s);
    }
  }
  const fds = opts.fds ?? listenFds(opts);
  if (!Array.isArray(fds)) throw invalidArgType('options.fds', 'an instance of Array', fds);
  // An instance can serve one listener only: refuse before adopting anything.
  for (const [name, s] of Object.entries(servers)) {
    const n = fds.filter((f) => f.name === name && isListeningStream(f.info)).length;
    if (s instanceof net.Server && n > 1) {
      closeQuietly(fds.map((f) => f.fd));
      throw invalidArgValue(
        `options.servers.${name}`,
        '[net.Server]',
        `is one server for ${n} listeners named '${name}': pass a function that returns a server per listener`,
      );
    }
  }
  const adopted: AdoptedFd[] = [];
  let i = 0;
  try {
    for (; i < fds.length; i++) {
      const { fd, name, info } = fds[i]!;
      if (isListeningStream(info)) {
        const given = Object.hasOwn(servers, name) ? servers[name] : undefined;
        const target = typeof given === 'function' ? given() : given;
        const server = await toServer(fd, target);
        adopted.push({ kind: 'server', name, fd, info, server });
      } else if (isBoundUdp(info)) {
        adopted.push({ kind: 'dgram', name, fd, info, socket: await toDgram(fd) });
      } else {
        adopted.push({ kind: 'fd', name, fd, info });
      }
    }
  } catch (err) {
    for (const a of adopted) {
      if (a.kind === 'server') a.server.close();
      else if (a.kind === 'dgram') a.socket.close();
      else closeQuietly([a.fd]);
    }
    closeQuietly(fds.slice(i).map((f) => f.fd));
    throw err;
  }
  return adopted;
}

/** One descriptor to hand to a child with {@link spawnActivated}. */
export interface ActivationFd {
  fd: FdLike;
  /** Its LISTEN_FDNAMES entry; default 'unknown'. */
  name?: string;
}

/**
 * Spawns `command` the way systemd starts a socket-activated service. `fds` land at 3, 4, ... with
 * LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set, so that the child finds them with
 * `sd_listen_fds(3)` (or {@link listenFds}). LISTEN_PID must be the child's
 * own pid, which is only known in the child: the command runs through `/bin/sh -c 'LISTEN_PID=$$;
 * export LISTEN_PID; exec "$0" "$@"'` (exec keeps the pid). The fds stay yours; the child gets
 * copies. `options.stdio` covers fds 0-2 only (default 'inherit').
 */
export function spawnActivated(
  command: string,
  args: readonly string[],
  fds: readonly ActivationFd[],
  opts: Omit<SpawnOptions, 'stdio'> & { stdio?: SpawnOptions['stdio'] } = {},
): ChildProcess {
  if (typeof command !== 'string') throw invalidArgType('command', 'of type string', command);
  if (command.length === 0) throw invalidArgValue('command', command, 'must be a non-empty string');
  if (!Array.isArray(args)) throw invalidArgType('args', 'an instance of Array', args);
  if (!Array.isArray(fds)) throw invalidArgType('fds', 'an instance of Array', fds);
  validateObject(opts, 'options');
  const numbers = fds.map((f, i) => fdOf((f as ActivationFd)?.fd, `fds[${i}].fd`));
  const names = fds.map((f, i) => {
    const name = f.name ?? UNNAMED;
    validateFdName(name, `fds[${i}].name`);
    return name;
  });
  let std: Array<'pipe' | 'ignore' | 'inherit' | 'ipc' | 'overlapped' | number | null | undefined | import('node:stream').Stream>;
  const given = opts.stdio ?? 'inherit';
  if (typeof given === 'string') std = [given, given, given];
  else if (Array.isArray(given) && given.length <= 3) std = [...given];
  else throw invalidArgValue('options.stdio', given, 'must be a string or an array of at most 3 entries (fds 0-2)');
  while (std.length < 3) std.push('inherit');
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), LISTEN_FDS: String(numbers.length), LISTEN_FDNAMES: names.join(':') };
  delete env.LISTEN_PID;
  checkPlatform(); // needs no native call, but passes descriptors the Linux way: fail before spawning
  debug('spawnActivated: %s with %j', command, names);
  return spawn('/bin/sh', ownPidShell(command, args), {
    ...opts,
    env,
    stdio: [...std, ...numbers],
  });
}
