// --sockets per-worker: each slot has its own SO_REUSEPORT socket, and the kernel hashes a new
// connection to one of them whether or not that slot's worker runs. Connections hashed to a slot
// whose worker died would wait in its queue until the restart (and longer in a crash loop's
// backoff), so while some slots serve and others do not, the group is steered to the serving ones
// (a classic BPF program, native steerReusePort); once every slot serves, the kernel's hash again.
import { binding } from '../native';
import type { Listener } from './listeners';
import type { Log } from './options';

export class SlotSteering {
  readonly #groups: Array<{ fd: number; family: number }>;
  readonly #log: Log;
  /** What the groups are steered to now: 'all', or the serving slots. */
  #now = 'all';
  /** What the log last said. */
  #logged = 'all';

  constructor(listeners: readonly Listener[], log: Log) {
    this.#groups = listeners.flatMap((l) =>
      l.slotFds !== undefined && l.family !== undefined ? [{ fd: l.slotFds[0]!, family: l.family }] : [],
    );
    this.#log = log;
  }

  /** `serving[slot]`: whether a ready worker (of any generation) has that slot; `quiet`: no log line (a start). */
  update(serving: readonly boolean[], quiet: boolean): void {
    if (this.#groups.length === 0) return;
    const slots = serving.flatMap((s, slot) => (s ? [slot] : []));
    // None serving: nowhere better to send them; they wait in the queues for the restarts.
    const next = slots.length === serving.length || slots.length === 0 ? 'all' : slots.join(', ');
    if (next !== this.#now) {
      const indices = next === 'all' ? new Int32Array(0) : Int32Array.from(slots);
      try {
        for (const g of this.#groups) binding.steerReusePort(g.fd, g.family, indices, indices.length);
      } catch (err) {
        this.#log(`cannot steer new connections away from workers that do not serve: ${(err as Error).message}`, 'failure');
        return;
      }
      this.#now = next;
    }
    if (quiet || next === this.#logged) return;
    this.#logged = next;
    this.#log(
      next === 'all'
        ? 'every worker serves: new connections are spread over all of them again'
        : `new connections go to worker(s) ${next} only, until the others serve again`,
      'info',
    );
  }
}
