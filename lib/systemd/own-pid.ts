// LISTEN_PID and WATCHDOG_PID must be the pid of the program that reads them (sd_listen_fds and
// sd_watchdog_enabled ignore the variables otherwise), and spawn cannot set the environment after fork:
// a shell sets them to its own pid, then exec keeps that pid for the command.
const LISTEN_PID = 'LISTEN_PID=$$; export LISTEN_PID; ';
const WATCHDOG_PID = '[ -z "$WATCHDOG_USEC" ] || { WATCHDOG_PID=$$; export WATCHDOG_PID; }; ';

export interface OwnPidOptions {
  /** Set LISTEN_PID (default true): only with LISTEN_FDS, which systemd never sets alone. */
  listenPid?: boolean;
  /** Set WATCHDOG_PID when the environment has WATCHDOG_USEC. */
  watchdogPid?: boolean;
  /** Shell code run first, with `guardArgs` as $1, $2, ...: it must `shift` them away (or exit). */
  guard?: string;
  guardArgs?: readonly string[];
}

/** The arguments of `/bin/sh` that run `command args` with LISTEN_PID (and WATCHDOG_PID) its own pid. */
export function ownPidShell(command: string, args: readonly string[], o: OwnPidOptions = {}): string[] {
  const script = `${o.guard ?? ''}${o.listenPid !== false ? LISTEN_PID : ''}${o.watchdogPid === true ? WATCHDOG_PID : ''}exec "$0" "$@"`;
  return ['-c', script, command, ...(o.guardArgs ?? []), ...args];
}
