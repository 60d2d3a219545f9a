// --watch's reloads: a change under a watched path reloads once the tree has been quiet for --watch-delay
// ms; a change during a reload reloads again once that reload is done (its outcome may predate the change).
import * as path from 'node:path';
import { TreeWatcher } from './watch';
import { ignoreMatcher } from './watch-ignore';
import type { Log } from './options';

export interface WatchReloadOptions {
  paths: string[];
  /** --watch-ignore globs. */
  ignore: string[];
  /** ms of quiet after a change before the reload. */
  delay: number;
  /** Whether a reload is under way (a change then waits for followUp()). */
  busy: () => boolean;
  reload: (source: string) => void;
  log: Log;
}

export class WatchReload {
  readonly #o: WatchReloadOptions;
  readonly #watchers: TreeWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #again = false;

  constructor(o: WatchReloadOptions) {
    this.#o = o;
    const ignored = ignoreMatcher(o.ignore);
    try {
      for (const p of o.paths) this.#watchers.push(new TreeWatcher(p, ignored, (name) => this.#onChange(p, name), o.log));
    } catch (err) {
      this.close(); // a path gone since the CLI checked it: nothing stays watched
      throw err;
    }
  }

  // `name`: relative to the watched path p ('' for p itself).
  #onChange(p: string, name: string): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#o.busy()) {
        this.#o.log(`--watch: ${name || p} changed during a reload: reloading again once it is done`, 'info');
        this.#again = true;
        return;
      }
      this.#o.reload(`--watch: ${name ? path.join(p, name) : p} changed`);
    }, this.#o.delay);
  }

  /** After a reload: reloads again if something changed during it. */
  followUp(): void {
    if (!this.#again) return;
    this.#again = false;
    setImmediate(() => this.#o.reload('--watch: changes during the last reload'));
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#watchers.splice(0).forEach((w) => w.close());
  }
}
