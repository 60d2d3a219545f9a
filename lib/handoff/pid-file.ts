// The upgrader's pid file: names the process serving the listeners, for scripts that signal it.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';

// The files this process names itself in, removed at its exit (unless they name another by then).
const ownPidFiles = new Set<string>();

/**
 * Writes `pid` and a newline to `path`, atomically. The temporary file gets an unpredictable name,
 * created with O_EXCL ('wx'), which also refuses a symlink at that name: whoever may write in the
 * directory cannot make this process (often root) write through a link planted at the name. rename()
 * replaces a link at `path` itself, never follows it.
 */
export function writePidFile(path: string, pid: number): void {
  const tmp = `${path}.${randomBytes(8).toString('hex')}.tmp`;
  let created = false;
  try {
    const fd = fs.openSync(tmp, 'wx', 0o644);
    created = true;
    try {
      fs.fchmodSync(fd, 0o644); // readable by the scripts that signal it, whatever the umask
      fs.writeSync(fd, `${pid}\n`);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
  } catch (err) {
    if (created) fs.rmSync(tmp, { force: true });
    throw err;
  }
  if (pid !== process.pid) return;
  if (ownPidFiles.size === 0) process.once('exit', removeOwnPidFiles);
  ownPidFiles.add(path);
}

function removeOwnPidFiles(): void {
  for (const path of ownPidFiles) {
    try {
      if (fs.readFileSync(path, 'latin1') === `${process.pid}\n`) fs.unlinkSync(path);
    } catch {
      // gone already, or unreadable: nothing of ours to remove
    }
  }
}
