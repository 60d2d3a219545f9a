// Emitting to user callbacks from inside a batch (a read batch, an accept batch, a tick of events).
import type { EventEmitter } from 'node:events';
import { inspect } from 'node:util';

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

/**
 * What a user callback threw, as an Error to report: itself when it is one, else an Error that shows
 * it. String() throws for a value with no toString (an object with no prototype): inspect() does not.
 */
export function asError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  let shown: string;
  try {
    shown = String(thrown);
  } catch {
    shown = inspect(thrown);
  }
  return new Error(shown);
}
