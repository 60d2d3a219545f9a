// Whether a self-upgrade's successor would outlive this process. As PID 1 of a pid namespace (a
// container), this process's exit kills every process in it, the successor included: the kernel would
// end the service right after the hand-off. The same happens one step later when this process is the
// child of a PID 1 that exits with its child (tini, `docker run --init`, dumb-init, a shell-form CMD's
// `sh -c`), which every container init but a real one does; a real init (systemd, sysvinit, busybox
// init: /proc/1/comm `systemd` or `init`) stays, and so does the host's. The initial pid namespace has
// a fixed inode number (PROC_PID_INIT_INO, include/linux/proc_ns.h); NSpid in /proc/self/status cannot
// tell, as a container's /proc is mounted from its own namespace and lists one pid.
import * as fs from 'node:fs';
import { FdpassError } from '../errors';

const STAYING_INITS = new Set(['systemd', 'init']);
const INITIAL_PID_NS = `pid:[${0xeffffffc}]`;
const CURE = "run the app under 'fdpass run' and reload through it, or restart the container";

/** Why this process cannot self-upgrade (ERR_FDPASS_UPGRADE_PID1), or undefined when it can. */
export function pid1Error(): FdpassError | undefined {
  if (process.pid === 1) {
    return new FdpassError(
      'ERR_FDPASS_UPGRADE_PID1',
      `cannot self-upgrade as PID 1: its exit would kill the successor with the whole pid namespace; ${CURE}`,
    );
  }
  if (process.ppid !== 1) return undefined;
  let init: string;
  try {
    if (fs.readlinkSync('/proc/self/ns/pid') === INITIAL_PID_NS) return undefined;
    init = fs.readFileSync('/proc/1/comm', 'latin1').trim();
  } catch {
    return undefined; // no /proc to tell by
  }
  if (STAYING_INITS.has(init)) return undefined;
  return new FdpassError(
    'ERR_FDPASS_UPGRADE_PID1',
    `cannot self-upgrade: this process's parent is PID 1 of its pid namespace (${init}), an init that exits ` +
      `when its child does, and the kernel then kills the successor with the namespace; ${CURE}`,
  );
}
