// What `fdpass run` supervises and how: the Supervisor's options, as the CLI (lib/cli/args.ts) builds them.
import type { Listener } from './listeners';

/** 'failure': something went wrong or was refused (what `fdpass run --quiet` keeps); 'info': the rest. */
export type LogLevel = 'info' | 'failure';
export type Log = (line: string, level: LogLevel) => void;

export interface SupervisorOptions {
  command: string;
  args: string[];
  listeners: Listener[];
  /** Processes per generation (--workers), each in its slot 0 to workers-1. */
  workers: number;
  /** How many of a reload's workers may be starting at once. */
  reloadConcurrency: number;
  /** ms a generation has to send READY=1 before it is killed. */
  readyTimeout: number;
  /** Second best, for programs that cannot notify: ready this many ms after start (if still running). */
  readyDelay?: number;
  stopSignal: NodeJS.Signals;
  /** ms between the stop signal and SIGKILL. */
  stopTimeout: number;
  /**
   * ms the old generation keeps serving next to the new one after the new one is ready, before it gets
   * the stop signal (0: at once). A fresh process serves slowly until its code is compiled; meanwhile
   * the warm old one takes what the new one cannot. The new one exiting within the overlap is a rollback.
   */
  overlap: number;
  /** Upper bound of the crash-restart backoff, ms. */
  maxBackoff: number;
  /**
   * Give up (stop, exit non-zero) rather than start a generation more than `startLimitBurst` times
   * within `startLimitInterval` ms, as systemd's StartLimitBurst= / StartLimitIntervalSec=; 0 in either: never.
   */
  startLimitBurst: number;
  startLimitInterval: number;
  /** How many descriptors generations may keep in the supervisor's fd store (FDSTORE=1); 0: none. */
  fdStoreMax: number;
  /** A seqpacket control socket for `fdpass reload PATH`. */
  control?: string;
  watch: string[];
  /** Globs of changes under `watch` that do not reload (node_modules and .git never do). */
  watchIgnore: string[];
  /** ms of quiet after a change before a --watch reload. */
  watchDelay: number;
  /** The supervisor's own NOTIFY_SOCKET (a systemd above it), if any. */
  upstreamNotify?: string;
  /** µs within which the systemd above wants WATCHDOG=1 from the supervisor (its WATCHDOG_USEC), if any. */
  upstreamWatchdog?: number;
  /** µs each generation gets as WATCHDOG_USEC: once ready, one silent that long is stopped and replaced. */
  watchdog?: number;
  env: NodeJS.ProcessEnv;
  log: Log;
}
