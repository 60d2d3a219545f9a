// PID 1's and a subreaper's duty: orphans (a generation's children whose parent exited) are
// reparented to it, and libuv waits only for the children it spawned. On each SIGCHLD, find this
// process's zombie children in /proc that are not its own generations (libuv reaps those, and needs
// their status) and wait for them by pid. Needs the pid namespace's own /proc, as every container has.
import { childrenOf, procStat } from '../proc';
import { binding } from '../native';

export class OrphanReaper {
  readonly #ours: () => ReadonlySet<number>;
  readonly #onChild = (): void => {
    // After libuv's own SIGCHLD handling has had its turn.
    setImmediate(() => this.reap());
  };
  #timer: NodeJS.Timeout;

  constructor(ours: () => ReadonlySet<number>) {
    this.#ours = ours;
    process.on('SIGCHLD', this.#onChild);
    // SIGCHLD can coalesce with one libuv consumed first; a slow sweep catches what that hides.
    this.#timer = setInterval(() => this.reap(), 5000);
    this.#timer.unref();
  }

  /** Reaps every zombie child that is not one of ours; returns how many. */
  reap(): number {
    const ours = this.#ours();
    let reaped = 0;
    for (const pid of childrenOf(process.pid)) {
      if (ours.has(pid)) continue;
      const stat = procStat(pid);
      if (stat === undefined || stat.state !== 'Z' || stat.ppid !== process.pid) continue;
      try {
        if (binding.waitpid(pid) !== null) reaped++;
      } catch {
        // ECHILD: not ours after all (e.g. a /proc from another pid namespace)
      }
    }
    return reaped;
  }

  close(): void {
    process.off('SIGCHLD', this.#onChild);
    clearInterval(this.#timer);
  }
}
