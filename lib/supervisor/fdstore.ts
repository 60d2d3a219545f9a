// The supervisor's fd store, as systemd's (FileDescriptorStoreMax=): a generation sends FDSTORE=1 and
// FDNAME= with descriptors over NOTIFY_SOCKET (sd_pid_notify_with_fds, fdpass's storeFds()); the
// supervisor keeps them and hands them to every later generation after the listeners, their names in
// LISTEN_FDNAMES. FDSTOREREMOVE=1 with FDNAME= drops them. Unlike systemd's, the store does not poll
// its descriptors for hang-ups (FDPOLL=): a descriptor stays until it is removed.
import * as fs from 'node:fs';
import { closeQuietly } from '../fds';
import { isFdName, MAX_FD_NAME_LENGTH } from '../systemd/names';
import type { ExecRoom } from './exec-limits';
import type { LogLevel } from './options';

/** sd_pid_notify_with_fds' name for descriptors stored without FDNAME=, as systemd's. */
export const DEFAULT_STORE_NAME = 'stored';

export interface StoredFd {
  name: string;
  fd: number;
}

// A descriptor for something stored already (same device and inode: the same socket, pipe, memfd)
// is kept once, as systemd does; an app that stores its state again at each start does not fill the store.
function identity(fd: number): string | undefined {
  try {
    const st = fs.fstatSync(fd);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

export class FdStore {
  readonly #max: number;
  readonly #room: () => ExecRoom;
  readonly #fds: Array<StoredFd & { id: string | undefined }> = [];

  /**
   * `max`: how many descriptors the store holds at most (0: FDSTORE=1 is refused, systemd's default).
   * `room`: what a spawn can carry besides the listeners (exec-limits.ts); the store never holds more,
   * or no later generation could be started.
   */
  constructor(max: number, room: () => ExecRoom = () => ({ nameBytes: Infinity, fds: Infinity })) {
    this.#max = max;
    this.#room = room;
  }

  /** The stored descriptors, oldest first: what the next generation gets after the listeners. */
  get fds(): readonly StoredFd[] {
    return this.#fds;
  }

  /**
   * Handles one notify message's FDSTORE=1 / FDSTOREREMOVE=1 with the descriptors it carried, which the
   * store now owns (it keeps them or closes them). Returns log lines saying what it did (a refusal is a
   * 'failure'); none for a
   * message that is about neither (its descriptors are closed).
   */
  handle(fields: ReadonlyMap<string, string>, fds: number[]): { line: string; level: LogLevel }[] {
    const name = fields.get('FDNAME') ?? DEFAULT_STORE_NAME;
    const out: { line: string; level: LogLevel }[] = [];
    if (fields.get('FDSTOREREMOVE') === '1') {
      const gone = this.#fds.filter((s) => s.name === name);
      closeQuietly(gone.map((s) => s.fd));
      this.#fds.splice(0, this.#fds.length, ...this.#fds.filter((s) => s.name !== name));
      out.push({ line: `removed ${gone.length} fd(s) named '${name}' from the fd store (FDSTOREREMOVE=1)`, level: 'info' });
    }
    if (fields.get('FDSTORE') !== '1') {
      closeQuietly(fds); // e.g. BARRIER=1's pipe end: closing it is the answer
      return out;
    }
    if (fds.length === 0) return [...out, { line: 'FDSTORE=1 without descriptors ignored', level: 'failure' }];
    if (!isFdName(name)) {
      closeQuietly(fds);
      return [
        ...out,
        {
          line: `FDSTORE=1 refused: FDNAME '${name}' is not a valid fd name (1-${MAX_FD_NAME_LENGTH} printable ASCII characters, no ':'); ${fds.length} fd(s) closed`,
          level: 'failure',
        },
      ];
    }
    if (this.#max === 0) {
      closeQuietly(fds);
      return [...out, { line: `FDSTORE=1 refused: the fd store is off (--fd-store-max 0); ${fds.length} fd(s) closed`, level: 'failure' }];
    }
    const room = this.#room();
    // Each stored name takes its bytes and a ':' in LISTEN_FDNAMES (names are ASCII).
    let nameBytes = this.#fds.reduce((n, s) => n + s.name.length + 1, 0);
    let kept = 0;
    let dupes = 0;
    let over = 0;
    let unpassable = 0;
    for (const fd of fds) {
      const id = identity(fd);
      if (id !== undefined && this.#fds.some((s) => s.id === id)) {
        closeQuietly([fd]);
        dupes++;
      } else if (this.#fds.length >= this.#max) {
        closeQuietly([fd]);
        over++;
      } else if (nameBytes + name.length + 1 > room.nameBytes || this.#fds.length + 1 > room.fds) {
        closeQuietly([fd]);
        unpassable++;
      } else {
        this.#fds.push({ name, fd, id });
        nameBytes += name.length + 1;
        kept++;
      }
    }
    let line = `stored ${kept} fd(s) named '${name}' (fd store: ${this.#fds.length} of ${this.#max})`;
    if (dupes > 0) line += `; ${dupes} already stored`;
    if (over > 0) line += `; ${over} refused: the fd store is full (--fd-store-max ${this.#max})`;
    if (unpassable > 0) {
      const limit =
        this.#fds.length + 1 > room.fds
          ? `room for ${room.fds} descriptors under RLIMIT_NOFILE`
          : `room for ${room.nameBytes} bytes of names in LISTEN_FDNAMES`;
      line += `; ${unpassable} refused: exec(2) could not pass them to the next generation (${limit})`;
    }
    return [...out, { line, level: dupes + over + unpassable > 0 ? 'failure' : 'info' }];
  }

  close(): void {
    closeQuietly(this.#fds.splice(0).map((s) => s.fd));
  }
}
