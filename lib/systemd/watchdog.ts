// The service watchdog (sd_watchdog_enabled(3)): WATCHDOG_USEC/WATCHDOG_PID, and a timer that sends
// WATCHDOG=1 at half the interval.
import { EventEmitter } from 'node:events';
import { debuglog } from 'node:util';
import { FdpassError } from '../errors';
import { validateObject } from '../validate';
import { notify, type NotifyOptions } from './notify';

const debug = debuglog('fdpass');

/**
 * The watchdog interval systemd expects pings within, in microseconds, or `null`. That is
 * `WATCHDOG_USEC` (`WatchdogSec=`); `null` when the watchdog is off for this process (no
 * WATCHDOG_USEC, or WATCHDOG_PID names another process). Throws
 * ERR_FDPASS_SYSTEMD_ENV when the variables are malformed.
 */
export function watchdogInterval(): number | null {
  const usec = process.env.WATCHDOG_USEC;
  if (usec === undefined) return null;
  if (!/^[1-9][0-9]*$/.test(usec) || !Number.isSafeInteger(Number(usec))) {
    throw new FdpassError('ERR_FDPASS_SYSTEMD_ENV', `WATCHDOG_USEC is not a positive count of microseconds: '${usec}'`);
  }
  const pid = process.env.WATCHDOG_PID;
  if (pid !== undefined) {
    if (!/^[1-9][0-9]*$/.test(pid)) throw new FdpassError('ERR_FDPASS_SYSTEMD_ENV', `WATCHDOG_PID is not a process id: '${pid}'`);
    if (Number(pid) !== process.pid) return null;
  }
  return Number(usec);
}

/**
 * Pings systemd's watchdog (`WATCHDOG=1`) at half the interval until {@link Watchdog.stop}. Its timer
 * is unref'd: it never keeps the process alive. Emits `'ping'` after each ping and `'error'` when one
 * could not be sent (only when someone listens; otherwise `NODE_DEBUG=fdpass` shows it).
 */
export class Watchdog extends EventEmitter {
  /** The interval systemd expects pings within, in microseconds. */
  readonly intervalUsec: number;
  #timer: NodeJS.Timeout | null;
  #inFlight: Promise<void> = Promise.resolve();
  #opts: NotifyOptions;

  /** @internal Use startWatchdog(). */
  constructor(intervalUsec: number, opts: NotifyOptions) {
    super();
    this.intervalUsec = intervalUsec;
    this.#opts = opts;
    // Node's timers take at most 2^31-1 ms (about 24.8 days); a longer delay becomes 1 ms.
    const ms = Math.min(2 ** 31 - 1, Math.max(1, Math.floor(intervalUsec / 2000)));
    this.#timer = setInterval(() => this.#ping(), ms);
    this.#timer.unref();
    debug('watchdog: pinging every %d ms (WATCHDOG_USEC=%d)', ms, intervalUsec);
    this.#ping();
  }

  /** True until stop(). */
  get running(): boolean {
    return this.#timer !== null;
  }

  #ping(): void {
    this.#inFlight = notify({ watchdog: true }, this.#opts).then(
      () => {
        if (this.#timer !== null) this.emit('ping');
      },
      (err: Error) => {
        debug('watchdog ping failed: %s', err.message);
        if (this.listenerCount('error') > 0) this.emit('error', err);
      },
    );
  }

  /** Stops pinging; resolves once a ping in flight has gone out (or failed). */
  async stop(): Promise<void> {
    if (this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
      debug('watchdog: stopped');
    }
    await this.#inFlight;
  }
}

/**
 * Starts pinging the watchdog when systemd enabled it for this process. That is when
 * {@link watchdogInterval} is not `null`; otherwise it returns `null` and sends nothing.
 */
export function startWatchdog(opts: NotifyOptions = {}): Watchdog | null {
  validateObject(opts, 'options');
  const usec = watchdogInterval();
  if (usec === null) {
    debug('watchdog: WATCHDOG_USEC is not set for this process: not started');
    return null;
  }
  return new Watchdog(usec, opts);
}
