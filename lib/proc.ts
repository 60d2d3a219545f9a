// What /proc says of a process: its state and parent, for zombie checks and process-tree walks.
import * as fs from 'node:fs';

/** State letter (R, S, Z, X, ...) and parent pid of `pid`, or undefined when it is gone. */
export function procStat(pid: number): { state: string; ppid: number } | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  return { state: fields[0] ?? '', ppid: Number.isInteger(ppid) ? ppid : -1 };
}

/** True when `pid` has exited: no such process, or a zombie waiting for its parent. */
export function processGone(pid: number): boolean {
  const s = procStat(pid);
  return s === undefined || s.state === 'Z' || s.state === 'X';
}
