// If the supervisor is killed (SIGKILL, OOM killer), its generations must not go on serving on the
// orphaned listeners. A small shell reads the running generations' pids from a pipe whose only writer
// is the supervisor; end of file (the supervisor is gone, however it died) makes it send them the stop
// signal once, and SIGKILL to their process groups after the stop timeout: the supervisor's own stop.
// Not prctl(PR_SET_PDEATHSIG) (setpriv --pdeathsig): it fires when the parent *thread* exits, and a
// dying multi-threaded Node process hands its children to thread after thread, so a generation got
// the signal several times (the second SIGTERM kills an app whose handler was process.once).
// Processes that left a generation's process group (setsid) are not reached through it: the
// generations' descendants are listed before the stop signal, while the tree still leads to them,
// and SIGKILLed with the process groups if they still carry a generation's environment (not a pid
// reused meanwhile). Orphans the supervisor had inherited as a subreaper are not found this way.
// At that end of file it also removes the supervisor's notify socket and its directory, which a killed
// supervisor cannot (a stopping one has already: then there is nothing left to remove).
import { spawn, type ChildProcess } from 'node:child_process';
import type { Log } from './options';

const SCRIPT = `
trap '' HUP INT TERM QUIT USR1 USR2 WINCH PIPE
sig=$1 ticks=$2 notify=$3 pids=' '
while read -r op pid; do
  case $op in
    +) pids="$pids$pid " ;;
    -) left=' '; for p in $pids; do [ "$p" = "$pid" ] || left="$left$p "; done; pids=$left ;;
  esac
done
if [ -n "$notify" ]; then rm -f -- "$notify" && rmdir -- "\${notify%/*}"; fi 2>/dev/null
set -- $pids
[ $# -eq 0 ] && exit 0
tree() { for p; do printf '%s ' "$p"; tree $(cat /proc/"$p"/task/*/children 2>/dev/null); done; }
all=$(tree "$@")
kill -s "$sig" "$@" 2>/dev/null
while [ "$ticks" -gt 0 ]; do
  alive=0
  for p; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && break
  sleep 0.1; ticks=$((ticks - 1))
done
for p; do kill -s KILL -- "-$p" 2>/dev/null; done
for p in $all; do
  tr '\\0' '\\n' < /proc/"$p"/environ 2>/dev/null | grep -q '^FDPASS_GENERATION=' && kill -s KILL "$p" 2>/dev/null
done
exit 0`;

export class Lifeline {
  readonly #proc: ChildProcess;
  #closed = false;

  /** `notifySocket`: the supervisor's notify socket, in a directory of its own; both removed at the end. */
  constructor(stopSignal: NodeJS.Signals, stopTimeout: number, notifySocket: string, log: Log) {
    const args = [stopSignal.replace(/^SIG/, ''), String(Math.ceil(stopTimeout / 100)), notifySocket];
    this.#proc = spawn('/bin/sh', ['-c', SCRIPT, 'fdpass-lifeline', ...args], {
      stdio: ['pipe', 'ignore', 'ignore'], // not the supervisor's stderr: it would hold that open after its death
      // PATH (sleep, rm) only: an environment near the kernel's argument limit must not stop the start.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      // Its own session: a terminal's ^C is the supervisor's to forward, not the lifeline's to see.
      detached: true,
    });
    this.#proc.stdin!.on('error', () => {}); // it died: 'exit' says so
    this.#proc.on('error', (err) => log(`lifeline: ${err.message}`, 'failure'));
    this.#proc.once('exit', (code, signal) => {
      if (!this.#closed)
        log(
          `the lifeline (pid ${this.#proc.pid}) ${signal ?? `exited with code ${code}`}: if this supervisor is killed, its generations keep running`,
          'failure',
        );
    });
  }

  get pid(): number {
    return this.#proc.pid ?? -1;
  }

  add(pid: number): void {
    this.#proc.stdin!.write(`+ ${pid}\n`);
  }

  remove(pid: number): void {
    this.#proc.stdin!.write(`- ${pid}\n`);
  }

  /** The supervisor stops with no generation left: the lifeline exits at end of file. */
  close(): void {
    this.#closed = true;
    this.#proc.stdin!.end();
  }
}
