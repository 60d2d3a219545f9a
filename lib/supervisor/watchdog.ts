// The watchdogs of `fdpass run`. Upstream: the supervisor owns the unit's watchdog (systemd's
// WatchdogSec=, WATCHDOG_USEC for its own pid) and pings it itself at half the interval. Downstream:
// each generation gets WATCHDOG_USEC (--watchdog, or the unit's) and, once it is ready, must send
// WATCHDOG=1 within every interval, as systemd asks of a service; a silent one hangs, and is stopped
// as systemd would stop it (`onMissed`), the supervisor restarting it with the listeners open.
// Every time here is monotonic (performance.now()): a wall-clock step (NTP, `date -s`) must neither
// stop healthy generations nor spare hung ones.
import { performance } from 'node:perf_hooks';
import type { WorkerState } from './worker';
import type { Log } from './options';

/** A worker as the watchdog sees it. */
export interface Watched {
  readonly state: WorkerState;
  describe(): string;
}

export interface WatchdogOptions<G extends Watched> {
  /** µs within which the systemd above expects WATCHDOG=1 from us; undefined: no one above asks. */
  upstreamUsec: number | undefined;
  /** µs each generation gets as WATCHDOG_USEC; undefined: generations are not watched. */
  generationUsec: number | undefined;
  /** The live generations. */
  live: () => Iterable<G>;
  /** ms a generation `onMissed` stopped may take to exit before the supervisor stops pinging upstream. */
  killGraceMs: number;
  /** Sends WATCHDOG=1 to the systemd above. */
  pingUpstream: () => void;
  /** A generation hangs: stop it (it exits as a failed generation, and is replaced). */
  onMissed: (gen: G, why: string) => void;
  log: Log;
}

// Node's timers overflow above 2^31-1 ms (they then fire at once).
const MAX_TIMER_MS = 0x7fffffff;

function msOf(usec: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.floor(usec / 1000)));
}

export class Watchdogs<G extends Watched> {
  readonly #o: WatchdogOptions<G>;
  /** The last WATCHDOG=1 of each generation (monotonic ms, as every time below). */
  #lastPing = new Map<G, number>();
  /** When the watchdog first saw each generation ready: its watch starts there. */
  #readyAt = new Map<G, number>();
  /** Generations already told their WATCHDOG_USEC= was ignored (once each, not at every message). */
  #badUsecLogged = new Set<G>();
  /** A generation's own WATCHDOG_USEC= override, in ms. */
  #override = new Map<G, number>();
  /** Generations `onMissed` stopped, and when. */
  #fired = new Map<G, number>();
  #upstreamTimer: NodeJS.Timeout | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  #upstreamHeld = false;

  constructor(opts: WatchdogOptions<G>) {
    this.#o = opts;
    if (opts.upstreamUsec !== undefined) {
      this.#upstreamTimer = setInterval(() => this.#tickUpstream(), msOf(opts.upstreamUsec / 2));
      this.#upstreamTimer.unref();
      this.#tickUpstream();
    }
    if (opts.generationUsec !== undefined) {
      // Checked 10 times an interval: a hung generation is stopped at most 1.1 intervals after its last ping.
      this.#checkTimer = setInterval(() => this.check(), msOf(opts.generationUsec / 10));
      this.#checkTimer.unref();
    }
    const { upstreamUsec: up, generationUsec: each } = opts;
    if (up === undefined && each === undefined) return;
    const gens = each === undefined ? 'generations are not watched' : `each generation must ping within ${each / 1e6} s once ready`;
    opts.log(`watchdog: ${up !== undefined ? `pinging systemd every ${up / 2e6} s; ` : ''}${gens}`, 'info');
  }

  /** What each generation's environment gets (WATCHDOG_PID is its own pid, set by its shell). */
  get env(): Record<string, string> {
    return this.#o.generationUsec === undefined ? {} : { WATCHDOG_USEC: String(this.#o.generationUsec) };
  }

  /** A notify message of `gen` with its WATCHDOG= and WATCHDOG_USEC= fields. */
  onMessage(gen: G, fields: Map<string, string>): void {
    const usec = fields.get('WATCHDOG_USEC');
    if (usec !== undefined && this.#o.generationUsec !== undefined) {
      // sd_notify(3): a new timeout for this service, which also counts as a ping.
      if (/^[1-9][0-9]{0,15}$/.test(usec)) {
        this.#override.set(gen, msOf(Number(usec)));
        this.#lastPing.set(gen, performance.now());
      } else if (!this.#badUsecLogged.has(gen)) {
        this.#badUsecLogged.add(gen);
        this.#o.log(`${gen.describe()}: WATCHDOG_USEC=${usec} ignored: not a positive number of microseconds (said once)`, 'failure');
      }
    }
    const dog = fields.get('WATCHDOG');
    if (dog === '1') this.#lastPing.set(gen, performance.now());
    else if (dog === 'trigger') this.#fire(gen, 'sent WATCHDOG=trigger');
  }

  /** Stops every generation that is ready and silent for longer than its interval. */
  check(): void {
    const now = performance.now();
    const live = this.#prune();
    if (this.#o.generationUsec === undefined) return;
    for (const g of live) {
      // systemd.service(5): "The watchdog is activated when the start-up is completed"; a stopping
      // generation (draining) is no longer watched.
      if (g.state !== 'ready') continue;
      // Its watch starts when first seen ready here, at most a tenth of an interval after it was.
      const readyAt = this.#readyAt.get(g) ?? now;
      this.#readyAt.set(g, readyAt);
      const ms = this.#override.get(g) ?? msOf(this.#o.generationUsec);
      const since = Math.max(readyAt, this.#lastPing.get(g) ?? 0);
      if (now - since > ms) {
        const last = this.#lastPing.has(g)
          ? `no WATCHDOG=1 for ${((now - since) / 1000).toFixed(1)} s`
          : `no WATCHDOG=1 since it was ready`;
        this.#fire(g, `missed its watchdog (${last}; interval ${ms / 1000} s)`);
      }
    }
  }

  // Forgets the generations that have exited; returns the live ones.
  #prune(): Set<G> {
    const live = new Set(this.#o.live());
    for (const map of [this.#lastPing, this.#override, this.#fired, this.#readyAt, this.#badUsecLogged]) {
      for (const g of map.keys()) if (!live.has(g)) map.delete(g);
    }
    return live;
  }

  #fire(gen: G, why: string): void {
    if (this.#fired.has(gen) || gen.state === 'stopping' || gen.state === 'exited') return;
    this.#fired.set(gen, performance.now());
    this.#o.onMissed(gen, why);
  }

  // While the supervisor's event loop runs, it keeps its generations in check itself: it pings. It
  // stops only when a generation it gave up on has not exited within the grace (e.g. in D state), so
  // that systemd's watchdog then acts on the whole unit.
  #tickUpstream(): void {
    const now = performance.now();
    this.#prune();
    const stuck = [...this.#fired].find(([, at]) => now - at > this.#o.killGraceMs);
    if (stuck !== undefined) {
      if (!this.#upstreamHeld) {
        this.#o.log(`${stuck[0].describe()} did not exit after it missed its watchdog: no longer pinging systemd's watchdog`, 'failure');
      }
      this.#upstreamHeld = true;
      return;
    }
    this.#upstreamHeld = false;
    this.#o.pingUpstream();
  }

  close(): void {
    clearInterval(this.#upstreamTimer);
    clearInterval(this.#checkTimer);
    this.#lastPing.clear();
    this.#override.clear();
    this.#fired.clear();
    this.#readyAt.clear();
    this.#badUsecLogged.clear();
  }
}
