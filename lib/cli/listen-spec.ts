// `fdpass run --listen` syntax: `[NAME=]ADDRESS` parsed into what the supervisor binds.
import * as net from 'node:net';
import type { ListenerSpec } from '../supervisor/listeners';
import { isFdName, UNNAMED } from '../systemd/names';

// A listener name is an fd name (isFdName: at most 255 characters, no ':') of letters, digits, _ . - only.
const isListenerName = (name: string): boolean => isFdName(name) && /^[A-Za-z0-9_.-]+$/.test(name);

function parsePort(text: string, spec: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new Error(`bad port in listener '${spec}'`);
  return Number(text);
}

function parseHostPort(rest: string, spec: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(rest);
  if (v6) {
    const addr = v6[1]!.split('%')[0]!;
    if (net.isIPv6(addr)) return { host: v6[1]!, port: parsePort(v6[2]!, spec) };
    throw new Error(`'${v6[1]}' in listener '${spec}' is not an IPv6 address`);
  }
  const i = rest.lastIndexOf(':');
  if (i < 0) throw new Error(`listener '${spec}' needs HOST:PORT (IPv6 in brackets: [::1]:8080)`);
  const host = rest.slice(0, i);
  const port = parsePort(rest.slice(i + 1), spec);
  if (host === '' || host === '*') return { host: '0.0.0.0', port };
  if (!net.isIPv4(host)) throw new Error(`'${host}' in listener '${spec}' is not an IPv4 address (IPv6 goes in brackets)`);
  return { host, port };
}

/**
 * Parses one `--listen` value: `[NAME=]ADDRESS`, ADDRESS one of `HOST:PORT` or `tcp:HOST:PORT`
 * (IPv6 as `[::1]:PORT`), `udp:HOST:PORT`, `unix:PATH` (or any value starting with `/` or `./`),
 * `unix:@NAME` for an abstract socket.
 */
export function parseListenerSpec(spec: string): ListenerSpec {
  let name = UNNAMED;
  let rest = spec;
  const eq = /^([A-Za-z0-9_.:-]+)=(.*)$/.exec(spec);
  if (eq && !/^(tcp|udp|unix):/.test(spec)) {
    name = eq[1]!;
    rest = eq[2]!;
  }
  if (!isListenerName(name)) throw new Error(`bad listener name '${name}' (letters, digits, _ . -)`);
  if (rest.startsWith('unix:') || rest.startsWith('/') || rest.startsWith('./')) {
    const path = rest.startsWith('unix:') ? rest.slice(5) : rest;
    if (path === '') throw new Error(`listener '${spec}' needs a path`);
    return { name, proto: 'unix', host: path, port: 0, text: `unix:${path}` };
  }
  if (rest.startsWith('udp:')) {
    const hp = parseHostPort(rest.slice(4), spec);
    return { name, proto: 'udp', ...hp, text: `udp:${rest.slice(4)}` };
  }
  const hp = parseHostPort(rest.startsWith('tcp:') ? rest.slice(4) : rest, spec);
  return { name, proto: 'tcp', ...hp, text: `tcp:${rest.startsWith('tcp:') ? rest.slice(4) : rest}` };
}
