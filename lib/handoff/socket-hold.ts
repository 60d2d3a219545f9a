// Holding a connected net.Socket still while its descriptor moves to another process: reading stops at
// the handle (libuv), so bytes the client sends from then on stay in the kernel and travel with the
// descriptor; the bytes Node already read that nobody consumed are copied out to go along. Both by
// the handle Node keeps on every net.Socket (`_handle`: readStop/readStart and its `reading` flag,
// which net.Socket's own pause()/resume() consult); `socket.pause()` alone does not stop libuv, and an
// HTTP parser that consumes the handle reads past it.
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
 * Stops `socket`'s reading at its handle; returns what undoes it (reading resumes as before). Null
 * when the socket has no handle (closed).
 */
export function holdReading(socket: net.Socket): (() => void) | null {
  const handle = handleOf(socket);
  if (handle === null) return null;
  const wasReading = handle.reading === true;
  handle.readStop();
  handle.reading = false;
  return () => {
    if (!wasReading || socket.destroyed || handleOf(socket) !== handle) return;
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
