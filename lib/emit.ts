// Emitting to user callbacks from inside a batch (a read batch, an accept batch, a tick of events).
import type { EventEmitter } from 'node:events';

function rethrow(err: unknown): never {
  throw err;
}

/**
 * Emits `event` and, when a listener throws, lets the caller finish its batch: the error is thrown
 * again on the next tick, so it still reaches 'uncaughtException' (as a throw from a `net.Socket`
 * listener does) but cannot strand the rest of the batch (accepted fds, messages, 'end', 'close').
 */
export function emitGuarded(emitter: EventEmitter, event: string, arg?: unknown): void {
  try {
    if (arg === undefined) emitter.emit(event);
    else emitter.emit(event, arg);
  } catch (err) {
    process.nextTick(rethrow, err);
  }
}
