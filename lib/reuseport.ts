// SO_REUSEPORT listeners and UDP sockets on every supported Node version (Node 20 has no reusePort).
import type * as dgram from 'node:dgram';
import * as dns from 'node:dns/promises';
import * as net from 'node:net';
import { binding, constants } from './native';
import { FdpassSystemError, withContext } from './errors';
import { toDgram, toServer } from './adopt';
import { closeQuietly } from './fds';
import { invalidArgType, invalidArgValue, validateInteger, validateObject } from './validate';

export interface ReusePortListenOptions {
  port: number;
  /**
   * Address or host name; default (also for '', as Node's listen) '::' (dual-stack), falling back to
   * '0.0.0.0' without IPv6. An IPv6 address may carry a zone: '::1%lo', 'fe80::1%eth0', 'fe80::1%2'.
   */
  host?: string;
  /** listen(2) backlog; default 511. */
  backlog?: number;
  /** Only IPv6 on an IPv6 address (IPV6_V6ONLY). */
  ipv6Only?: boolean;
  /** Adopt into this server (e.g. an http.Server) instead of a new net.Server. */
  server?: net.Server;
}

export interface ReusePortBindOptions {
  port: number;
  /** As for listenReusePort: '' or none means every address of `type`'s family; IPv6 may carry a zone. */
  host?: string;
  type: 'udp4' | 'udp6';
  ipv6Only?: boolean;
}

async function resolveHost(host: string | undefined, family?: 4 | 6): Promise<{ address: string; family: 4 | 6 }[]> {
  // '' is "no host", as in Node's server.listen({ host: '' }) and dgram's bind({ address: '' }).
  if (host === undefined || host === '') {
    if (family === 4) return [{ address: '0.0.0.0', family: 4 }];
    if (family === 6) return [{ address: '::', family: 6 }];
    return [
      { address: '::', family: 6 },
      { address: '0.0.0.0', family: 4 },
    ];
  }
  const ip = net.isIP(host);
  if (ip !== 0) return [{ address: host, family: ip as 4 | 6 }];
  const found = await dns.lookup(host, family !== undefined ? { family } : {});
  return [{ address: found.address, family: found.family as 4 | 6 }];
}

function checkPortHost(opts: { port: unknown; host?: unknown }, name: string): void {
  validateInteger(opts.port, `${name}.port`, 0, 65535);
  if (opts.host !== undefined && typeof opts.host !== 'string') throw invalidArgType(`${name}.host`, 'of type string', opts.host);
}

// Creates the bound socket, trying each candidate address (the dual-stack default falls back to IPv4).
function bindFirst(
  candidates: { address: string; family: 4 | 6 }[],
  type: number,
  port: number,
  backlog: number,
  ipv6Only?: boolean,
): number {
  let lastError: unknown;
  for (const c of candidates) {
    try {
      return withContext(
        () =>
          binding.inetBind(
            c.family === 6 ? constants.AF_INET6 : constants.AF_INET,
            type,
            c.address,
            port,
            backlog,
            ipv6Only === undefined ? -1 : ipv6Only ? 1 : 0,
            true,
          ),
        { address: c.address, port },
      );
    } catch (err) {
      if (err instanceof FdpassSystemError && err.syscall === 'if_nametoindex') {
        throw invalidArgValue('options.host', c.address, `names a network interface that does not exist (${err.code})`);
      }
      lastError = err;
      if (!(err instanceof FdpassSystemError && err.code === 'EAFNOSUPPORT')) throw err;
    }
  }
  throw lastError;
}

/**
 * Listens on a TCP port with SO_REUSEADDR and SO_REUSEPORT, so that several processes can each have
 * a listener on the same port. Resolves with a listening net.Server.
 */
export async function listenReusePort(opts: ReusePortListenOptions): Promise<net.Server> {
  validateObject(opts, 'options');
  checkPortHost(opts, 'options');
  const backlog = opts.backlog ?? 511;
  validateInteger(backlog, 'options.backlog', 0, 65535);
  if (opts.server !== undefined && !(opts.server instanceof net.Server)) {
    throw invalidArgType('options.server', 'an instance of net.Server', opts.server);
  }
  const fd = bindFirst(await resolveHost(opts.host), constants.SOCK_STREAM, opts.port, backlog, opts.ipv6Only);
  try {
    return await toServer(fd, opts.server, { backlog });
  } catch (err) {
    closeQuietly([fd]); // a rejected toServer leaves the fd open and ours: closed here, once
    throw err;
  }
}

/** Binds a UDP socket with SO_REUSEPORT. Resolves with a bound dgram.Socket. */
export async function bindReusePort(opts: ReusePortBindOptions): Promise<dgram.Socket> {
  validateObject(opts, 'options');
  checkPortHost(opts, 'options');
  if (opts.type !== 'udp4' && opts.type !== 'udp6') throw invalidArgValue('options.type', opts.type, "must be 'udp4' or 'udp6'");
  const family = opts.type === 'udp6' ? 6 : 4;
  if (opts.host !== undefined && net.isIP(opts.host) !== 0 && net.isIP(opts.host) !== family) {
    throw invalidArgValue('options.host', opts.host, `is an IPv${net.isIP(opts.host)} address but options.type is '${opts.type}'`);
  }
  const candidates = await resolveHost(opts.host, family);
  const fd = bindFirst(candidates, constants.SOCK_DGRAM, opts.port, -1, opts.ipv6Only);
  try {
    return await toDgram(fd);
  } catch (err) {
    closeQuietly([fd]); // a rejected toDgram leaves the fd open and ours: closed here, once
    throw err;
  }
}
