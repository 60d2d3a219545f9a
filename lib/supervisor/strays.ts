// Processes of a generation that left its process group (setsid, a daemon's double fork) escape the
// process-group kill. As a child subreaper (prctl PR_SET_CHILD_SUBREAPER) the supervisor inherits
// them once their parent exits, so they stay findable in /proc: every process under the supervisor
// whose ancestors up to it are not processes it spawned itself (generations, the lifeline) is a
// stray. Each is told from its environment as of its exec (FDPASS_GENERATION, inherited from the
// generation that started it), read in /proc/PID/environ.
import * as fs from 'node:fs';
import { procStat } from '../proc';
import { binding } from '../native';

export interface Stray {
  pid: number;
  /** FDPASS_GENERATION of the stray's top process, if readable. */
  generation: number | undefined;
}

function generationOf(pid: number): number | undefined {
  let environ: string;
  try {
    environ = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return undefined;
  }
  const entry = environ.split('\0').find((e) => e.startsWith('FDPASS_GENERATION='));
  return entry === undefined ? undefined : Number(entry.slice('FDPASS_GENERATION='.length));
}

/**
 * The children of `pid` (none when it is gone): /proc/PID/task/TID/children of each of its threads (an
 * orphan is reparented to one of the subreaper's threads), or a scan of /proc without that file
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
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync(`/proc/${pid}/task/${tid}`)) return scanChildren(pid);
      continue; // the thread exited
    }
    for (const c of text.split(' ')) if (c !== '' && c !== '\n') out.push(Number(c));
  }
  return out;
}

function scanChildren(pid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (/^\d+$/.test(name) && procStat(Number(name))?.ppid === pid) out.push(Number(name));
  }
  return out;
}

/** The running processes under this one that are not in `ours` or under them. */
export function findStrays(ours: ReadonlySet<number>): Stray[] {
  const out: Stray[] = [];
  for (const top of childrenOf(process.pid)) {
    if (ours.has(top)) continue;
    const generation = generationOf(top);
    const stack = [top];
    while (stack.length > 0) {
      const pid = stack.pop()!;
      const state = procStat(pid)?.state;
      if (state === undefined || state === 'Z') continue; // gone, or a zombie: it holds nothing (the reaper's)
      out.push({ pid, generation });
      stack.push(...childrenOf(pid));
    }
  }
  return out;
}

/** SIGKILL to each; returns how many were signalled. */
export function killStrays(strays: readonly Stray[]): number {
  let n = 0;
  for (const s of strays) {
    try {
      process.kill(s.pid, 'SIGKILL');
      n++;
    } catch {
      // ESRCH: gone already
    }
  }
  return n;
}

/** Makes this process the subreaper of its descendants; false (with the reason logged) where it cannot. */
export function becomeSubreaper(log: (line: string) => void): boolean {
  try {
    binding.setChildSubreaper();
    return true;
  } catch (err) {
    log(
      `cannot become a child subreaper (${(err as Error).message}): processes a generation moves out of its process group are not stopped with it`,
    );
    return false;
  }
}
