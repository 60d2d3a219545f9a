// --watch: one inotify watch per directory that is not ignored (fs.watch, non-recursive), added for
// directories created later and dropped for removed ones. Not fs.watch({ recursive: true }): on
// Linux, Node 20 adds a watch for every directory under the root, ignored ones included, so a large
// node_modules took the user's whole inotify limit (other programs then get ENOSPC).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Log } from './options';

function limitText(err: NodeJS.ErrnoException): string | undefined {
  if (err.code === 'ENOSPC')
    return `the inotify watch limit is reached (sysctl fs.inotify.max_user_watches = ${readLimit('max_user_watches')})`;
  if (err.code === 'EMFILE')
    return `no inotify instance or descriptor is left (sysctl fs.inotify.max_user_instances = ${readLimit('max_user_instances')}, or RLIMIT_NOFILE)`;
  return undefined;
}

function readLimit(name: string): string {
  try {
    return fs.readFileSync(`/proc/sys/fs/inotify/${name}`, 'utf8').trim();
  } catch {
    return '?';
  }
}

export class TreeWatcher {
  readonly #root: string;
  readonly #ignored: (relative: string) => boolean;
  readonly #onChange: (relative: string) => void;
  readonly #log: Log;
  /** By absolute path: the root, and each directory watched under it. */
  readonly #watchers = new Map<string, fs.FSWatcher>();
  #closed = false;

  /**
   * Watches `root` (a file, or a directory and the directories under it that `ignored` does not
   * match, by their path relative to root). `onChange` gets the changed path relative to root ('' for
   * root itself). Unwatchable directories are logged, never thrown: a watch limit costs reloads, not
   * the supervisor.
   */
  constructor(root: string, ignored: (relative: string) => boolean, onChange: (relative: string) => void, log: Log) {
    this.#root = path.resolve(root);
    this.#ignored = ignored;
    this.#onChange = onChange;
    this.#log = log;
    if (fs.statSync(this.#root).isDirectory()) this.#addTree(this.#root);
    else this.#watch(this.#root, () => this.#onChange(''));
  }

  /** How many directories (or the one file) are watched. */
  get size(): number {
    return this.#watchers.size;
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  #relative(abs: string): string {
    return path.relative(this.#root, abs);
  }

  // Watches each directory before reading it: one created in between is then seen by its parent's watch.
  #addTree(top: string): void {
    const stack = [top];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      if (this.#watchers.has(dir)) continue;
      const limit = this.#watch(dir, (name) => this.#onEvent(dir, name));
      if (limit !== undefined) {
        this.#log(
          `--watch: ${limit}: ${dir}${stack.length > 0 ? ` and ${stack.length} more directories` : ''} not watched; --watch-ignore what need not be watched, or raise the limit`,
          'failure',
        );
        return;
      }
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        continue; // removed meanwhile (its parent's event drops it), or unreadable
      }
      for (const e of entries) {
        if (!e.isDirectory()) continue; // a symlink to a directory is not followed: no loops
        const child = path.join(dir, e.name);
        if (!this.#ignored(this.#relative(child))) stack.push(child);
      }
    }
  }

  // Returns the reason when a system limit refused the watch.
  #watch(target: string, listener: (name: string | null) => void): string | undefined {
    let w: fs.FSWatcher;
    try {
      w = fs.watch(target, { persistent: false }, (_event, name) => listener(name === null ? null : String(name)));
    } catch (err) {
      const limit = limitText(err as NodeJS.ErrnoException);
      if (limit === undefined) this.#log(`--watch: ${target}: ${(err as Error).message}`, 'failure');
      return limit;
    }
    w.on('error', (err) => {
      this.#log(`--watch: ${target}: ${err.message}`, 'failure');
      this.#drop(target);
    });
    this.#watchers.set(target, w);
    return undefined;
  }

  #onEvent(dir: string, name: string | null): void {
    if (this.#closed) return;
    if (!fs.existsSync(dir)) {
      // the watched directory itself was removed or moved away (its own watch reports it)
      this.#drop(dir);
      this.#onChange(this.#relative(dir));
      return;
    }
    const abs = name === null ? dir : path.join(dir, name);
    const rel = this.#relative(abs);
    if (this.#ignored(rel)) return;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(abs);
    } catch {
      st = undefined;
    }
    if (st === undefined) this.#drop(abs);
    else if (st.isDirectory() && abs !== dir) this.#addTree(abs);
    this.#onChange(rel);
  }

  // Stops watching a directory and everything watched under it.
  #drop(abs: string): void {
    for (const [p, w] of this.#watchers) {
      if (p === abs || p.startsWith(`${abs}/`)) {
        w.close();
        this.#watchers.delete(p);
      }
    }
  }
}
