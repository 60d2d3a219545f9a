// A generation of `fdpass run`'s command: the workers started together by the first start or by one
// reload, one per slot (--workers N). It serves once every slot's worker has said READY=1; a worker
// that crashes is restarted in its slot (with that slot's backoff), in the same generation.
import type { Restarts } from './restart';
import type { Worker } from './worker';

export class Generation {
  /** Each slot's worker: the running one, or the last one until its restart. */
  readonly workers: Array<Worker | undefined>;
  /** Each slot's crash-restart backoff and start limit. */
  readonly restarts: Restarts[];
  /** Each slot's pending restart. */
  readonly restartTimers: Array<NodeJS.Timeout | undefined>;
  /** How often each slot's worker was restarted. */
  readonly restartCounts: number[];
  /** The next slot a reload starts (its workers start --reload-concurrency at a time). */
  nextSlot = 0;
  /** Every slot's worker has been ready once: the generation serves. */
  serving = false;
  /** Resolves once every slot's worker has been ready. */
  readonly allReady: Promise<'ready'>;
  #allReady!: (r: 'ready') => void;
  /** Resolves with the first failure of a worker while the generation is a reload's new one. */
  readonly failed: Promise<string>;
  #failed!: (why: string) => void;
  /** Who waits in whenEmpty(). */
  #emptyWaiters: Array<() => void> = [];

  constructor(
    readonly id: number,
    readonly size: number,
    newRestarts: () => Restarts,
  ) {
    this.workers = new Array<Worker | undefined>(size).fill(undefined);
    this.restarts = Array.from({ length: size }, newRestarts);
    this.restartTimers = new Array<NodeJS.Timeout | undefined>(size).fill(undefined);
    this.restartCounts = new Array<number>(size).fill(0);
    this.allReady = new Promise((resolve) => (this.#allReady = resolve));
    this.failed = new Promise((resolve) => (this.#failed = resolve));
  }

  /** The workers that have not exited. */
  live(): Worker[] {
    return this.workers.filter((w): w is Worker => w !== undefined && w.state !== 'exited');
  }

  /** How many slots have a ready worker. */
  readyCount(): number {
    return this.workers.filter((w) => w?.state === 'ready').length;
  }

  /** A worker became ready: the generation serves once every slot has been ready. */
  workerReady(): void {
    if (this.serving || this.workers.some((w) => w?.readyAt === undefined)) return;
    this.serving = true;
    this.#allReady('ready');
  }

  fail(why: string): void {
    this.#failed(why);
  }

  /** No worker runs and no restart is pending. */
  #empty(): boolean {
    return this.live().length === 0 && this.restartTimers.every((t) => t === undefined);
  }

  /**
   * Resolves once the generation is empty (at once if it is now): asked at the time, since a generation
   * that emptied (every worker crashed during a reload) can have its slots restarted by the rollback.
   */
  whenEmpty(): Promise<void> {
    if (this.#empty()) return Promise.resolve();
    return new Promise((resolve) => this.#emptyWaiters.push(resolve));
  }

  #checkEmpty(): void {
    if (this.#empty()) for (const resolve of this.#emptyWaiters.splice(0)) resolve();
  }

  /** A worker exited: whenEmpty() resolves when none runs and no restart is pending. */
  workerExited(): void {
    this.#checkEmpty();
  }

  cancelRestarts(): void {
    for (let slot = 0; slot < this.size; slot++) {
      clearTimeout(this.restartTimers[slot]);
      this.restartTimers[slot] = undefined;
    }
    this.#checkEmpty();
  }

  /** 'generation 2 (pid 123)' with one worker (its process), 'generation 2 (4 workers)' with more. */
  describe(): string {
    if (this.size === 1) return this.workers[0]?.describe() ?? `generation ${this.id}`;
    return `generation ${this.id} (${this.size} workers)`;
  }

  /** For STATUS=: what serves. */
  servingText(): string {
    if (this.size === 1) return `${this.describe()} serving`;
    return `generation ${this.id}: ${this.readyCount()} of ${this.size} workers serving`;
  }
}
