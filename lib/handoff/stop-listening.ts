// Stopping a server's accepting at a drain, without Node's http close(), which also closes idle
// connections at once (httpServerPreClose): net.Server's own close() leaves the connections to the
// drain. A Unix socket's path stays for the process that took the listener over.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { debuglog } from 'node:util';

const debug = debuglog('fdpass');

/** Closes this process's copy of `server`'s listener; resolves once Node has closed it. */
export function stopListening(server: net.Server): Promise<void> {
  const restore = keepSocketPath(server);
  const closed = new Promise<void>((resolve) => {
    net.Server.prototype.close.call(server, (err?: Error) => {
      if (err) debug('handoff: closing a listener: %s', err.message); // e.g. it was closed already
      resolve();
    });
  });
  restore?.();
  return closed;
}

/**
 * libuv unlinks a Unix socket's path when the server that bound it closes (uv_pipe_close), which would
 * take the name away from the new process. Keep a second hard link across the close and move it back:
 * the name is missing only between libuv's unlink and the rename, a few microseconds.
 * (A listener adopted from an fd has no path for libuv to unlink; then the spare link just goes.)
 */
function keepSocketPath(server: net.Server): (() => void) | undefined {
  const path = server.address();
  if (typeof path !== 'string' || path.startsWith('\0') || path.startsWith('@')) return undefined;
  const spare = `${path}.fdpass-${process.pid}`;
  try {
    if (!fs.lstatSync(path).isSocket()) return undefined;
    fs.linkSync(path, spare);
  } catch (err) {
    debug('handoff: cannot keep %s across close: %s', path, (err as Error).message);
    return undefined;
  }
  return () => {
    try {
      fs.renameSync(spare, path); // a no-op when libuv left `path` alone (same inode)
      if (fs.existsSync(spare)) fs.unlinkSync(spare);
    } catch (err) {
      debug('handoff: restoring %s: %s', path, (err as Error).message);
    }
  };
}
