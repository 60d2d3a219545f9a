// Holding a connected net.Socket still while its descriptor moves to another process: reading stops at
// its handle (`_handle`, libuv), so bytes the client sends from then on stay in the kernel and travel
// with the descriptor; the bytes Node already read that nobody consumed are copied out to go along.
// `socket.pause()` alone does not stop libuv, and an HTTP parser that consumes the handle reads past it.
// The hold is enforced: Node starts reading by `_handle.reading = true; _handle.readStart()` (Socket#_read,
// reached by resume(), a 'data' listener, read() and its own read-ahead; an HTTP server's resume), and
// while held that handle's readStart does nothing: `reading` keeps what was asked, done at release.
import type * as net from 'node:net';

interface StreamHandle {
  reading?: boolean;
  readStop(): number;
  readStart(): number;
  writeQueueSize?: number;
}

function handleOf(socket: net.Socket): StreamHandle | null {
  const h = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  return h && typeof h.readStop === 'function' ? h : null;
}

/**
 * Stops `socket`'s reading at its handle; returns what ends the hold: reading restarts if it was on
 * before and nobody asked since, or if the last ask was to read; never on a socket destroyed meanwhile.
 * Null when the socket has no handle (closed).
 */
export function holdReading(socket: net.Socket): (() => void) | null {
  const handle = handleOf(socket);
  if (handle === null) return null;
  const wasReading = handle.reading === true;
  handle.readStop();
  handle.reading = false;
  let asked = false;
  const own = Object.hasOwn(handle, 'readStart');
  const readStart = handle.readStart;
  const held = (): number => {
    asked = true; // net.js set `reading` first; one that pauses the handle clears it
    return 0;
  };
  handle.readStart = held;
  return () => {
    if (handle.readStart === held) {
      if (own) handle.readStart = readStart;
      else Reflect.deleteProperty(handle, 'readStart');
    }
    const read = asked ? handle.reading === true : wasReading;
    if (!read || socket.destroyed || handleOf(socket) !== handle) return;
    handle.reading = true;
    handle.readStart();
  };
}

/** True when everything written to `socket` has reached the kernel (nothing queued in Node or libuv). */
export function writesFlushed(socket: net.Socket): boolean {
  return socket.writableLength === 0 && (handleOf(socket)?.writeQueueSize ?? 0) === 0;
}

/** A copy of the bytes Node read from `socket` that nobody has consumed yet (its readable buffer). */
export function bufferedBytes(socket: net.Socket): Buffer {
  if (socket.readableLength === 0) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for (const chunk of (socket as unknown as { readableBuffer: Iterable<Buffer | string> }).readableBuffer) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  return Buffer.concat(chunks);
}
