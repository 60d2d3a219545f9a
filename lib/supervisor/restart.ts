// Crash restarts of one worker slot of `fdpass run`, as systemd's Restart=: a backoff (at once, then
// 100 ms doubling up to --max-backoff; reset by a worker that served 10 s, or by a reload that
// succeeds), and a start limit over the slot's starts: StartLimitBurst= / StartLimitIntervalSec=, 0 in
// either: none.
export class Restarts {
  readonly #maxBackoff: number;
  readonly #burst: number;
  readonly #interval: number;
  #failures = 0;
  /** When the slot's workers were started. */
  #starts: number[] = [];

  constructor(maxBackoff: number, burst: number, interval: number) {
    this.#maxBackoff = maxBackoff;
    this.#burst = burst;
    this.#interval = interval;
  }

  started(): void {
    this.#starts.push(Date.now());
  }

  reset(): void {
    this.#failures = 0;
  }

  /** A worker that was ready at `readyAt` exited: one that served 10 s resets the backoff. */
  exited(readyAt: number | undefined): void {
    if (readyAt !== undefined && Date.now() - readyAt > 10_000) this.#failures = 0;
  }

  /** A failure: the delay before the restart, or undefined when that start would pass the limit. */
  next(): number | undefined {
    const delay = this.#failures === 0 ? 0 : Math.min(100 * 2 ** (this.#failures - 1), this.#maxBackoff);
    this.#failures++;
    return this.#limited(Date.now() + delay) ? undefined : delay;
  }

  /** Why the supervisor gives up, once next() said so. */
  get limitText(): string {
    const burst = this.#burst;
    const s = this.#interval / 1000;
    return `${burst} starts within ${s} s (--start-limit-burst ${burst}, --start-limit-interval ${s})`;
  }

  // Whether a start at `at` would be one too many (systemd's check at each start).
  #limited(at: number): boolean {
    if (this.#burst === 0 || this.#interval === 0) return false;
    this.#starts = this.#starts.filter((t) => at - t < this.#interval);
    return this.#starts.length >= this.#burst;
  }
}
