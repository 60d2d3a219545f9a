// What /proc says of processes: a process's state, parent and children, for zombie checks and
// process-tree walks, and whether it has exited, with every descriptor it held closed; its memory and
// CPU time; and this process's soft resource limits.
import * as fs from 'node:fs';

// include/linux/sched.h: set on each thread as it starts do_exit(), before its descriptors close.
const PF_EXITING = 0x4;

/** What /proc/<pid>/stat says of a process: state letter (R, S, Z, X, ...), parent, flags, threads, CPU time. */
export interface ProcStat {
  state: string;
  ppid: number;
  flags: number;
  threads: number;
  /** utime + stime, in USER_HZ ticks. */
  cpuTicks: number;
}

/** `pid`'s /proc/<pid>/stat, or undefined when it is gone. */
export function procStat(pid: number): ProcStat | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid pgrp session tty tpgid flags ... utime(14th) stime ... num_threads(20th) ...":
  // comm may hold spaces and parentheses, so parse after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const number = (i: number): number => {
    const n = Number(fields[i]);
    return Number.isInteger(n) ? n : -1;
  };
  return { state: fields[0] ?? '', ppid: number(1), flags: number(6), threads: number(17), cpuTicks: number(11) + number(12) };
}

const exited = (s: ProcStat | undefined): boolean => s === undefined || ((s.state === 'Z' || s.state === 'X') && s.threads <= 1);

/**
 * True when `pid` has exited: no such process, or a zombie waiting for its parent whose threads have
 * all exited too (a zombie group leader can outlive its other threads' last syscalls). Every
 * descriptor it held is then closed: a socket it listened on refuses connections.
 */
export function processGone(pid: number): boolean {
  return exited(procStat(pid));
}

/**
 * True when `pid` has exited or has begun to: it is closing its descriptors or has closed them. Never
 * for pid 0, SO_PEERCRED's pid of a process in a pid namespace this one cannot see: nothing is known.
 */
export function processExiting(pid: number): boolean {
  if (pid <= 0) return false;
  const s = procStat(pid);
  return s === undefined || s.state === 'Z' || s.state === 'X' || (s.flags & PF_EXITING) !== 0;
}

/** The parent pid of `pid`, or undefined if it is gone. */
export function parentOf(pid: number): number | undefined {
  const ppid = procStat(pid)?.ppid;
  return ppid === undefined || ppid < 0 ? undefined : ppid;
}

// Every process /proc lists, with its stat (those gone meanwhile left out).
function* allProcesses(): Generator<[number, ProcStat]> {
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (s !== undefined) yield [Number(name), s];
  }
}

/**
 * The children of `pid` (none when it is gone): /proc/PID/task/TID/children of each of its threads (an
 * orphan is reparented to one of a subreaper's threads), or a scan of /proc without that file
 * (a kernel without CONFIG_PROC_CHILDREN).
 */
export function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tasks) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync(`/proc/${pid}/task/${tid}`)) {
        return [...allProcesses()].filter(([, s]) => s.ppid === pid).map(([child]) => child);
      }
      continue; // the thread exited
    }
    for (const c of text.split(' ')) if (c !== '' && c !== '\n') out.push(Number(c));
  }
  return out;
}

/**
 * The processes of these users (by /proc/<pid>'s owner) that have begun to exit and are not gone:
 * the kernel may still be closing their descriptors.
 */
export function processesExiting(uids: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const [pid, s] of allProcesses()) {
    if ((s.flags & PF_EXITING) === 0 || exited(s)) continue;
    try {
      if (uids.has(fs.statSync(`/proc/${pid}`).uid)) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Waits until `pid` is gone ({@link processGone}). A process that hangs up a socket as it exits has
 * not closed its other descriptors yet (the kernel closes them one by one, newest first): a listener
 * of its may still accept for a while. Resolves false if it is still there after `ms`.
 */
export async function whenGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (let wait = 1; !processGone(pid); wait = Math.min(wait * 2, 20)) {
    if (Date.now() >= end) return false;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  return true;
}

/** What a process has used: resident memory (VmRSS) and CPU time (user + system). */
export interface ProcUsage {
  rssBytes: number;
  cpuMs: number;
}

// /proc/<pid>/stat counts CPU time in USER_HZ ticks, 100 a second on every Linux ABI.
const USER_HZ = 100;

/** `pid`'s memory and CPU time, or undefined when it is gone. */
export function procUsage(pid: number): ProcUsage | undefined {
  const stat = procStat(pid);
  if (stat === undefined) return undefined;
  try {
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1];
    return { rssBytes: Number(rss ?? 0) * 1024, cpuMs: (stat.cpuTicks * 1000) / USER_HZ };
  } catch {
    return undefined;
  }
}

/**
 * A soft limit of this process from /proc/self/limits, by its row name ('Max stack size', 'Max open
 * files'); Infinity when unlimited or unreadable.
 */
export function softLimit(name: string): number {
  try {
    const line = fs
      .readFileSync('/proc/self/limits', 'latin1')
      .split('\n')
      .find((l) => l.startsWith(name));
    const soft = line?.slice(name.length).trim().split(/\s+/)[0];
    return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft);
  } catch {
    return Infinity;
  }
}
