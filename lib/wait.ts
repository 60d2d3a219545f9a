// Timeouts and AbortSignals for the operations that wait on a peer.
import { FdpassError } from './errors';
import { invalidArgType, validateInteger } from './validate';

export interface WaitOptions {
  /** Give up after this many milliseconds (rejects with ERR_FDPASS_TIMEOUT). */
  timeout?: number;
  /** Give up when this signal aborts (rejects with ERR_FDPASS_ABORTED). */
  signal?: AbortSignal;
}

export function validateWaitOptions(opts: WaitOptions | undefined, name = 'options'): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== 'object') throw invalidArgType(name, 'of type object', opts);
  if (opts.timeout !== undefined) validateInteger(opts.timeout, `${name}.timeout`, 0, 2 ** 31 - 1);
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) {
    throw invalidArgType(`${name}.signal`, 'an instance of AbortSignal', opts.signal);
  }
}

/**
 * Runs `start(resolve, reject)` and settles with it, unless the timeout or signal comes first; then
 * `cancel()` runs (to withdraw whatever `start` registered) and the promise rejects.
 */
export function waitWith<T>(
  what: string,
  opts: WaitOptions | undefined,
  start: (resolve: (v: T) => void, reject: (e: unknown) => void) => void,
  cancel: () => void,
): Promise<T> {
  const signal = opts?.signal;
  if (signal?.aborted) {
    return Promise.reject(new FdpassError('ERR_FDPASS_ABORTED', `${what} was aborted`));
  }
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const giveUp = (err: Error): void => {
      done();
      cancel();
      reject(err);
    };
    const onAbort = (): void => giveUp(new FdpassError('ERR_FDPASS_ABORTED', `${what} was aborted`));
    if (opts?.timeout !== undefined) {
      timer = setTimeout(() => giveUp(new FdpassError('ERR_FDPASS_TIMEOUT', `${what} timed out after ${opts.timeout} ms`)), opts.timeout);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    start(
      (v) => {
        done();
        resolve(v);
      },
      (e) => {
        done();
        reject(e);
      },
    );
  });
}
