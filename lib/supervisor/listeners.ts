// The supervisor's listeners: bound once from `--listen` specs (lib/cli/listen-spec.ts parses them), or
// inherited from a systemd above it (socket activation), then handed to every generation as fds 3, 4, ...
import * as fs from 'node:fs';
import * as net from 'node:net';
import { closeQuietly } from '../fds';
import { withContext } from '../errors';
import { binding, constants } from '../native';
import { listenFds } from '../systemd';
import { parseName } from '../names';

export type ListenerProto = 'tcp' | 'udp' | 'unix';

export interface ListenerSpec {
  /** Its LISTEN_FDNAMES entry: an fd name (systemd/names.ts isFdName). */
  name: string;
  proto: ListenerProto;
  /** tcp/udp: the address (IPv6 without brackets, may carry a %zone); unix: the path or @abstract. */
  host: string;
  port: number;
  /** How the user wrote it, for logs. */
  text: string;
}

export interface Listener {
  name: string;
  fd: number;
  /**
   * --sockets per-worker: one SO_REUSEPORT socket per worker slot (slotFds[0] is `fd`), the same in
   * every generation; absent: `fd` is shared by every worker.
   */
  slotFds?: number[];
  /** With slotFds: their address family (AF_INET or AF_INET6). */
  family?: number;
  /** tcp://127.0.0.1:8080, unix:/run/app.sock, inherited:3 ... */
  describe: string;
  /** A Unix socket path this supervisor created and removes on exit. */
  unlinkOnClose?: string;
}

/**
 * Binds one listener. TCP and Unix stream listeners listen with `backlog`; Unix socket files get
 * `mode` (owner-only by default). One socket is shared by every generation, which is what keeps queued
 * connections across a reload. With `slots` > 1 (--sockets per-worker), a TCP or UDP listener is
 * `slots` SO_REUSEPORT sockets on one address, one per worker slot, each also kept across reloads;
 * the kernel spreads connections (datagrams) between them by a hash of the peer's address.
 */
export function bindListener(spec: ListenerSpec, opts: { backlog: number; mode: number; slots: number }): Listener {
  if (spec.proto === 'unix') {
    const name = parseName(spec.host, 'listener path');
    if (!name.abstract) refuseNonSocket(name.name);
    // unixListen replaces a socket file only when connecting to it is refused (ECONNREFUSED: no one is
    // bound). A live socket of another type (EPROTOTYPE) or one with a full backlog (EAGAIN) keeps its
    // name, and this fails with EADDRINUSE.
    const fd = withContext(() => binding.unixListen(constants.SOCK_STREAM, name.name, name.abstract, opts.backlog, opts.mode), {
      path: name.display,
    });
    return { name: spec.name, fd, describe: spec.text, ...(name.abstract ? {} : { unlinkOnClose: name.name }) };
  }
  const family = net.isIPv6(spec.host.split('%')[0]!) ? constants.AF_INET6 : constants.AF_INET;
  const type = spec.proto === 'tcp' ? constants.SOCK_STREAM : constants.SOCK_DGRAM;
  const reusePort = opts.slots > 1;
  const bind = (port: number, reuse = reusePort): number =>
    withContext(
      // v6only 1 for an IPv6 address: [::]:80 and 0.0.0.0:80 can then both be listed.
      () =>
        binding.inetBind(
          family,
          type,
          spec.host,
          port,
          spec.proto === 'tcp' ? opts.backlog : -1,
          family === constants.AF_INET6 ? 1 : -1,
          reuse,
        ),
      { address: spec.host, port },
    );
  // SO_REUSEPORT would join a group another process of this user already has on that port (another
  // instance, old code) and split its connections with it: a plain bind first fails with EADDRINUSE.
  if (reusePort && spec.port !== 0) closeQuietly([bind(spec.port, false)]);
  const fd = bind(spec.port);
  const port = binding.inspect(fd).local?.port ?? spec.port;
  const where = family === constants.AF_INET6 ? `[${spec.host}]` : spec.host;
  const listener: Listener = { name: spec.name, fd, describe: `${spec.proto}:${where}:${port}` };
  if (!reusePort) return listener;
  // The others on the port the first got (port 0 picks one).
  const slotFds = [fd];
  try {
    while (slotFds.length < opts.slots) slotFds.push(bind(port));
  } catch (err) {
    closeQuietly(slotFds);
    if ((err as NodeJS.ErrnoException).code === 'EMFILE')
      (err as Error).message +=
        ` (--sockets per-worker binds ${opts.slots} sockets per listener: raise the descriptor limit, ulimit -n, or use --sockets shared)`;
    throw err;
  }
  return { ...listener, slotFds, family, describe: `${listener.describe} (${opts.slots} SO_REUSEPORT sockets)` };
}

// A regular file or directory at a listener path is someone's data, never replaced.
function refuseNonSocket(path: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
}

/**
 * Listeners handed to this process by socket activation (systemd, or another `fdpass run`), as
 * listenFds() takes them (LISTEN_PID checked, variables removed). Each is moved to a CLOEXEC
 * duplicate, so that no spawn leaks it at its old number.
 */
export function inheritedListeners(): Listener[] {
  return listenFds().map((l) => {
    const copy = binding.dup(l.fd);
    closeQuietly([l.fd]);
    return { name: l.name, fd: copy, describe: `inherited fd ${l.fd}` };
  });
}

export function closeListeners(listeners: Listener[]): void {
  closeQuietly(listeners.flatMap((l) => l.slotFds ?? [l.fd]));
  for (const l of listeners) {
    if (l.unlinkOnClose === undefined) continue;
    try {
      fs.unlinkSync(l.unlinkOnClose);
    } catch {
      // gone already
    }
  }
}
