// The socket file a bound Unix socket owns: removed when its owner closes, unless another socket
// has been bound at that path meanwhile.
import * as fs from 'node:fs';
import type { UnixName } from './names';

/** The inode of the socket file just bound at `name` (undefined for abstract names). */
export function socketInode(name: UnixName): number | undefined {
  if (name.abstract) return undefined;
  try {
    return fs.statSync(name.name).ino;
  } catch {
    return undefined;
  }
}

/** Removes the socket file, unless someone else has bound a new one at that path meanwhile. */
export function unlinkIfOurs(name: UnixName, inode: number | undefined): void {
  if (inode === undefined) return;
  try {
    if (fs.statSync(name.name).ino === inode) fs.unlinkSync(name.name);
  } catch {
    // already gone
  }
}
