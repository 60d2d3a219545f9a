// One worker process of `fdpass run`'s command: its spawn (the listeners from fd 3 with LISTEN_FDS,
// LISTEN_FDNAMES, LISTEN_PID, NOTIFY_SOCKET; FDPASS_GENERATION, FDPASS_WORKER, FDPASS_WORKERS; its own
// process group) and its state as the supervisor tracks it from start to exit.
import { spawn, type ChildProcess } from 'node:child_process';
import type { ExitStatus } from '../exit-status';
import { ownPidShell } from '../systemd/own-pid';

export type WorkerState = 'starting' | 'ready' | 'stopping' | 'exited';

// A worker started while the supervisor died (so that the lifeline never heard of it) must not
// start the command: the shell checks that its parent is still the supervisor ($1).
const PARENT_CHECK = '[ "$PPID" = "$1" ] || exit 143; shift; ';

export class Worker {
  state: WorkerState = 'starting';
  readonly startedAt = Date.now();
  readyAt: number | undefined;
  exit: ExitStatus | undefined;
  readonly timers: NodeJS.Timeout[] = [];
  /** Settles once the worker is ready, or has exited / been killed before that. */
  readonly outcome: Promise<'ready' | string>;
  settle!: (result: 'ready' | string) => void;
  readonly exited: Promise<void>;
  /** Resolves `exited` for a worker whose spawn failed (no 'exit' event comes). */
  notStarted!: () => void;

  constructor(
    /** Its generation's number (FDPASS_GENERATION). */
    readonly generation: number,
    /** Its slot in the generation, 0 to workers-1 (FDPASS_WORKER). */
    readonly slot: number,
    /** How it is named in the log: 'generation 3', or 'generation 3 worker 1' with several workers. */
    readonly name: string,
    readonly proc: ChildProcess | undefined,
    /** -1: the spawn failed. */
    readonly pid: number,
  ) {
    this.outcome = new Promise((resolve) => (this.settle = resolve));
    this.exited = new Promise((resolve) => {
      this.notStarted = resolve;
      proc?.once('exit', () => resolve());
    });
  }

  clearTimers(): void {
    this.timers.splice(0).forEach(clearTimeout);
  }

  /** Signals the main process, or with `group` every process of its process group. */
  kill(signal: NodeJS.Signals, group = false): void {
    if (this.pid <= 0) return; // never started: kill(-1) or kill(1) would reach other processes
    try {
      process.kill(group ? -this.pid : this.pid, signal);
    } catch {
      // ESRCH: gone already
    }
  }

  /** Sends `signal`, and SIGKILL to the process group `ms` later unless it exited (its timers cleared). */
  killAfter(signal: NodeJS.Signals, ms: number, onKill?: () => void): void {
    this.kill(signal);
    this.timers.push(
      setTimeout(() => {
        onKill?.();
        this.kill('SIGKILL', true);
      }, ms),
    );
  }

  describe(): string {
    return this.pid > 0 ? `${this.name} (pid ${this.pid})` : this.name;
  }
}

export interface WorkerSpawn {
  generation: number;
  slot: number;
  /** How many workers its generation has. */
  workers: number;
  command: string;
  args: string[];
  /** Its environment, before the variables below are set. */
  env: NodeJS.ProcessEnv;
  /** fds 3, 4, ...: the listeners (its slot's), then what the fd store holds (as systemd orders them). */
  fds: ReadonlyArray<{ name: string; fd: number }>;
  notifySocket: string;
  /** WATCHDOG_USEC for it, if it is watched. */
  watchdogEnv: Record<string, string> | undefined;
}

/**
 * Spawns one worker. A spawn fails by throwing (E2BIG, EBADF, ...) or by an 'error' event on the
 * next tick (EMFILE, EAGAIN, ENOENT): either is a worker that could not be started (pid -1),
 * reported later to `onFailed`, never an exception.
 */
export function spawnWorker(s: WorkerSpawn, onFailed: (worker: Worker, err: Error) => void): Worker {
  const env: NodeJS.ProcessEnv = {
    ...s.env,
    LISTEN_FDS: String(s.fds.length),
    LISTEN_FDNAMES: s.fds.map((x) => x.name).join(':'),
    NOTIFY_SOCKET: s.notifySocket,
    FDPASS_GENERATION: String(s.generation),
    FDPASS_WORKER: String(s.slot),
    FDPASS_WORKERS: String(s.workers),
  };
  delete env.LISTEN_PID;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  Object.assign(env, s.watchdogEnv);
  // No descriptors: no LISTEN_* at all, as systemd does (LISTEN_PID without LISTEN_FDS is malformed).
  if (s.fds.length === 0) {
    delete env.LISTEN_FDS;
    delete env.LISTEN_FDNAMES;
  }
  const shell = ownPidShell(s.command, s.args, {
    listenPid: s.fds.length > 0,
    watchdogPid: true,
    guard: PARENT_CHECK,
    guardArgs: [String(process.pid)],
  });
  let proc: ChildProcess | undefined;
  let thrown: Error | undefined;
  try {
    proc = spawn('/bin/sh', shell, {
      stdio: ['inherit', 'inherit', 'inherit', ...s.fds.map((x) => x.fd)],
      env,
      // Its own process group: a terminal's ^C reaches the supervisor only (which forwards it), and a
      // failed or stopped worker's leftovers can be killed together (systemd's KillMode=mixed).
      detached: true,
    });
  } catch (err) {
    thrown = err as Error;
  }
  const name = s.workers === 1 ? `generation ${s.generation}` : `generation ${s.generation} worker ${s.slot}`;
  const worker = new Worker(s.generation, s.slot, name, proc, proc?.pid ?? -1);
  if (worker.pid < 0) {
    if (thrown !== undefined) queueMicrotask(() => onFailed(worker, thrown));
    else proc!.once('error', (err) => onFailed(worker, err));
  }
  return worker;
}
