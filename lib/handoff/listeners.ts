// The listeners a hand-off carries, as the old process's application gives them: their type, the
// check of a name -> listener object, and a listener's descriptor while it is still open.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { debuglog } from 'node:util';
import { fdOf, inspect } from '../adopt';
import { invalidArgType, invalidArgValue, validateObject } from '../validate';
import { MAX_NAME_BYTES, checkNames } from './protocol';

const debug = debuglog('fdpass');

/** What the old process can hand over: servers (net, http, https, http2, Unix), UDP sockets, raw fds. */
export type HandoffListener = net.Server | dgram.Socket | number;

// The listener's fd, or undefined when this process has closed it (it is then not offered).
export function liveFd(l: HandoffListener): number | undefined {
  try {
    const fd = fdOf(l);
    if (typeof l === 'number') inspect(fd); // EBADF: closed by the application
    return fd;
  } catch (err) {
    debug('handoff: a listener has no open descriptor: %s', (err as Error).message);
    return undefined;
  }
}

/** Checks a name -> listener object; returns it as a Map. */
export function validateListeners(listeners: unknown): Map<string, HandoffListener> {
  validateObject(listeners, 'listeners');
  const map = new Map<string, HandoffListener>();
  for (const [name, value] of Object.entries(listeners)) {
    if (checkNames([name]) !== undefined) {
      throw invalidArgValue(`listeners['${name.slice(0, 20)}']`, name, `must be named by 1 to ${MAX_NAME_BYTES} bytes`);
    }
    if (!(typeof value === 'number' || value instanceof net.Server || value instanceof dgram.Socket)) {
      throw invalidArgType(`listeners.${name}`, 'of type number or an instance of net.Server or dgram.Socket', value);
    }
    map.set(name, value);
  }
  if (map.size === 0) throw invalidArgValue('listeners', listeners, 'must name at least one listener');
  return map;
}
