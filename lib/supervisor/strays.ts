// Processes of a generation that left its process group (setsid, a daemon's double fork) escape the
// process-group kill. As a child subreaper (prctl PR_SET_CHILD_SUBREAPER) the supervisor inherits
// them once their parent exits, so they stay findable in /proc: every process under the supervisor
// whose ancestors up to it are not processes it spawned itself (generations, the lifeline) is a
// stray. Each is told from its environment as of its exec (FDPASS_GENERATION and FDPASS_WORKER,
// inherited from the worker that started it), read in /proc/PID/environ.
import * as fs from 'node:fs';
import { childrenOf, procStat } from '../proc';
import { binding } from '../native';
import type { Log } from './options';

export interface Stray {
  pid: number;
  /** FDPASS_GENERATION of the stray's top process, if readable. */
  generation: number | undefined;
  /** Its FDPASS_WORKER (the slot). */
  worker: number | undefined;
}

function workerOf(pid: number): Pick<Stray, 'generation' | 'worker'> {
  let environ: string[];
  try {
    environ = fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
  } catch {
    return { generation: undefined, worker: undefined };
  }
  const value = (name: string): number | undefined => {
    const entry = environ.find((e) => e.startsWith(`${name}=`));
    return entry === undefined ? undefined : Number(entry.slice(name.length + 1));
  };
  return { generation: value('FDPASS_GENERATION'), worker: value('FDPASS_WORKER') };
}

/** The running processes under this one that are not in `ours` or under them. */
export function findStrays(ours: ReadonlySet<number>): Stray[] {
  const out: Stray[] = [];
  for (const top of childrenOf(process.pid)) {
    if (ours.has(top)) continue;
    const of = workerOf(top);
    const stack = [top];
    while (stack.length > 0) {
      const pid = stack.pop()!;
      const state = procStat(pid)?.state;
      if (state === undefined || state === 'Z') continue; // gone, or a zombie: it holds nothing (the reaper's)
      out.push({ pid, ...of });
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

/**
 * Any process still under this one that `ours` does not name (e.g. one whose environment no longer
 * names its generation): SIGKILL, until none is left or 5 s have passed.
 */
export async function killRemaining(ours: () => ReadonlySet<number>, log: Log): Promise<void> {
  const end = Date.now() + 5000;
  for (let round = 0; ; round++) {
    const strays = findStrays(ours());
    if (strays.length === 0) return;
    if (Date.now() > end) {
      log(`processes still running after SIGKILL: ${strays.map((s) => s.pid).join(', ')}`, 'failure');
      return;
    }
    if (killStrays(strays) > 0 && round === 0) log(`SIGKILL to processes left behind: ${strays.map((s) => s.pid).join(', ')}`, 'failure');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Makes this process the subreaper of its descendants; false (with the reason logged) where it cannot. */
export function becomeSubreaper(log: Log): boolean {
  try {
    binding.setChildSubreaper();
    return true;
  } catch (err) {
    log(
      `cannot become a child subreaper (${(err as Error).message}): processes a generation moves out of its process group are not stopped with it`,
      'failure',
    );
    return false;
  }
}
