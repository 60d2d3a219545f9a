// `fdpass run`: a small socket-holding parent. It binds the listeners once and runs the command as
// successive generations that receive them through systemd's own protocol (LISTEN_FDS from fd 3,
// LISTEN_FDNAMES, LISTEN_PID, NOTIFY_SOCKET). A reload starts the next generation next to the old one
// and stops the old one only once the new one said READY=1; the listeners never close, so a
// connection that arrives meanwhile waits in the kernel's accept queue instead of being refused.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Channel } from '../channel';
import { listen, type ChannelServer } from '../endpoints';
import { closeListeners, type Listener } from './listeners';
import { NotifyReceiver } from './notify';
import { notify, type NotifyState } from '../systemd';
import { OrphanReaper } from './reap';
import { FdStore } from './fdstore';
import { execRoom } from './exec-limits';
import { Lifeline } from './lifeline';
import { ignoreMatcher } from './watch-ignore';
import { Watchdogs } from './watchdog';
import { TreeWatcher } from './watch';
import { becomeSubreaper, findStrays, killStrays } from './strays';

export interface SupervisorOptions {
  command: string;
  args: string[];
  listeners: Listener[];
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
  log: (line: string) => void;
}

type State = 'starting' | 'ready' | 'stopping' | 'exited';

// WATCHDOG_PID, like LISTEN_PID, must be the pid of the program that reads it (see #launch).
const WATCHDOG_PID = '[ -z "$WATCHDOG_USEC" ] || { WATCHDOG_PID=$$; export WATCHDOG_PID; }; ';

// A generation started while the supervisor died (so that the lifeline never heard of it) must not
// start the command: the shell checks that its parent is still the supervisor ($1).
const PARENT_CHECK = '[ "$PPID" = "$1" ] || exit 143; shift; ';

class Generation {
  state: State = 'starting';
  readonly startedAt = Date.now();
  readyAt: number | undefined;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly timers: NodeJS.Timeout[] = [];
  /** Settles once the generation is ready, or has exited / been killed before that. */
  readonly outcome: Promise<'ready' | string>;
  settle!: (result: 'ready' | string) => void;
  readonly exited: Promise<void>;
  /** Resolves `exited` for a generation whose spawn failed (no 'exit' event comes). */
  notStarted!: () => void;

  constructor(
    readonly id: number,
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

  /** Signals the main process, or with `group` every process of the generation's process group. */
  kill(signal: NodeJS.Signals, group = false): void {
    if (this.pid <= 0) return; // never started: kill(-1) or kill(1) would reach other processes
    try {
      process.kill(group ? -this.pid : this.pid, signal);
    } catch {
      // ESRCH: gone already
    }
  }

  describe(): string {
    return this.pid > 0 ? `generation ${this.id} (pid ${this.pid})` : `generation ${this.id}`;
  }
}

export interface ReloadResult {
  ok: boolean;
  message: string;
}

function exitText(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

function exitStatus(exit: { code: number | null; signal: NodeJS.Signals | null } | undefined): number {
  if (exit === undefined) return 0;
  if (exit.signal !== null) return 128 + (os.constants.signals[exit.signal] ?? 0);
  return exit.code ?? 0;
}

export class Supervisor {
  readonly #o: SupervisorOptions;
  #nextId = 1;
  #live = new Set<Generation>();
  /** The generation that serves (or, with no one serving, the one starting to). */
  #current: Generation | undefined;
  /** A reload's new generation, until it is ready or rolled back. */
  #next: Generation | undefined;
  #notify: NotifyReceiver | undefined;
  #control: ChannelServer | undefined;
  #reaper: OrphanReaper | undefined;
  #watchers: TreeWatcher[] = [];
  #watchTimer: NodeJS.Timeout | undefined;
  #watchAgain = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  /** When generations were started (not reloads), for the start limit. */
  #starts: number[] = [];
  #startLimitHit = false;
  #everReady = false;
  #shuttingDown = false;
  #finishing = false;
  #lastExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #done!: (status: number) => void;
  /** Resolves with the exit status once the supervisor has stopped. */
  readonly finished: Promise<number>;
  #signalHandlers: Array<[NodeJS.Signals, () => void]> = [];
  #lifeline: Lifeline | undefined;
  readonly #store: FdStore;
  #watchdogs: Watchdogs<Generation> | undefined;

  constructor(opts: SupervisorOptions) {
    this.#o = opts;
    // Never more than a spawn can pass on: a store too big for exec(2) would stop every later start.
    this.#store = new FdStore(opts.fdStoreMax, () =>
      execRoom(
        [opts.command, ...opts.args],
        opts.env,
        opts.listeners.map((l) => l.name),
      ),
    );
    this.finished = new Promise((resolve) => (this.#done = resolve));
  }

  #log(line: string): void {
    this.#o.log(line);
  }

  /**
   * Binds the notify socket (and --control), starts watching and the lifeline, then the first
   * generation. If anything fails, what was made is released (sockets, files, the listeners) and the
   * error rethrown: a failed start leaves nothing behind.
   */
  async start(): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-run-'));
    try {
      this.#notify = await NotifyReceiver.open(
        dir,
        () => new Set([...this.#live].filter((g) => g.state !== 'exited').map((g) => g.pid)),
        (root, fields, pid, fds) => this.#onNotify(root, fields, pid, fds),
        (pid) => this.#log(`ignored a notify message from pid ${pid}: not in any generation's process tree`),
      );
      if (this.#o.control !== undefined) {
        this.#control = await listen(this.#o.control, { type: 'seqpacket' });
        this.#control.on('connection', (ch: Channel) => this.#onControl(ch));
        this.#control.on('error', (err: Error) => this.#log(`control socket: ${err.message}`));
      }
      // A subreaper inherits its generations' orphans (to stop what left a process group, and reap
      // it), as PID 1 inherits every orphan: either way libuv reaps only the children it spawned.
      if (becomeSubreaper((line) => this.#log(line)) || process.pid === 1) this.#reaper = new OrphanReaper(() => this.#ours());
      const on = (sig: NodeJS.Signals, fn: () => void): void => {
        process.on(sig, fn);
        this.#signalHandlers.push([sig, fn]);
      };
      on('SIGHUP', () => void this.reload('SIGHUP'));
      for (const sig of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) on(sig, () => this.shutdown(sig));
      for (const sig of ['SIGUSR2', 'SIGWINCH'] as const) on(sig, () => this.#forward(sig));
      this.#startWatching();
      this.#startWatchdogs();
      this.#lifeline = new Lifeline(this.#o.stopSignal, this.#o.stopTimeout, this.#notify.path, (line) => this.#log(line));
      const where = this.#o.listeners.map((l) => `${l.name}=${l.describe}`).join(', ') || 'no listeners';
      this.#log(`supervising ${this.#o.command} with ${where}`);
      this.#startCurrent('start');
    } catch (err) {
      this.#release();
      fs.rmSync(dir, { recursive: true, force: true }); // if the notify socket was never bound
      throw err;
    }
  }

  // --- generations ---------------------------------------------------------------------------

  #launch(): Generation {
    const id = this.#nextId++;
    // The listeners, then what the fd store holds (as systemd orders them).
    const l = [...this.#o.listeners, ...this.#store.fds];
    const env: NodeJS.ProcessEnv = {
      ...this.#o.env,
      LISTEN_FDS: String(l.length),
      LISTEN_FDNAMES: l.map((x) => x.name).join(':'),
      NOTIFY_SOCKET: this.#notify!.path,
      FDPASS_GENERATION: String(id),
    };
    delete env.LISTEN_PID;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    Object.assign(env, this.#watchdogs?.env);
    // No descriptors: no LISTEN_* at all, as systemd does (LISTEN_PID without LISTEN_FDS is malformed).
    if (l.length === 0) {
      delete env.LISTEN_FDS;
      delete env.LISTEN_FDNAMES;
    }
    // LISTEN_PID must be the pid of the process that reads it (sd_listen_fds ignores the fds
    // otherwise), and spawn cannot set the environment after fork: the shell sets it to its own pid,
    // then exec keeps that pid for the command.
    const shell = [
      '/bin/sh',
      '-c',
      `${PARENT_CHECK}${l.length > 0 ? 'LISTEN_PID=$$; export LISTEN_PID; ' : ''}${WATCHDOG_PID}exec "$@"`,
      'sh',
      String(process.pid),
      this.#o.command,
      ...this.#o.args,
    ];
    // A spawn fails by throwing (E2BIG, EBADF, ...) or by an 'error' event on the next tick (EMFILE,
    // EAGAIN, ENOENT): either is a generation that could not be started, never an exception.
    let proc: ChildProcess | undefined;
    let thrown: Error | undefined;
    try {
      proc = spawn(shell[0]!, shell.slice(1), {
        stdio: ['inherit', 'inherit', 'inherit', ...l.map((x) => x.fd)],
        env,
        // Its own process group: a terminal's ^C reaches the supervisor only (which forwards it), and a
        // failed or stopped generation's leftovers can be killed together (systemd's KillMode=mixed).
        detached: true,
      });
    } catch (err) {
      thrown = err as Error;
    }
    const gen = new Generation(id, proc, proc?.pid ?? -1);
    if (gen.pid < 0) {
      const failed = (err: Error): void => {
        const why = `could not be started: ${err.message}${(err as NodeJS.ErrnoException).code === 'E2BIG' ? " (its arguments and environment exceed the kernel's limit)" : ''}`;
        this.#log(`${gen.describe()} ${why}`);
        gen.exit = { code: 127, signal: null };
        gen.settle(why);
        this.#onExit(gen, gen.exit);
        gen.notStarted();
      };
      if (thrown !== undefined) queueMicrotask(() => failed(thrown));
      else proc!.once('error', failed);
      return gen;
    }
    proc!.on('error', (err) => this.#log(`${gen.describe()}: ${err.message}`));
    this.#live.add(gen);
    this.#lifeline?.add(gen.pid);
    proc!.once('exit', (code, signal) => this.#onExit(gen, { code, signal }));
    gen.timers.push(
      setTimeout(() => {
        if (gen.state !== 'starting') return;
        gen.settle(`was not ready within ${this.#o.readyTimeout / 1000} s`);
      }, this.#o.readyTimeout),
    );
    if (this.#o.readyDelay !== undefined) {
      gen.timers.push(setTimeout(() => this.#markReady(gen, `running for ${this.#o.readyDelay} ms (--ready-delay)`), this.#o.readyDelay));
    }
    this.#log(`started ${gen.describe()}`);
    return gen;
  }

  #markReady(gen: Generation, how: string): void {
    if (gen.state !== 'starting') return;
    gen.state = 'ready';
    gen.readyAt = Date.now();
    gen.clearTimers();
    this.#log(`${gen.describe()} is ready (${how}) after ${gen.readyAt - gen.startedAt} ms`);
    gen.settle('ready');
  }

  #onNotify(root: number, fields: Map<string, string>, pid: number, fds: number[]): void {
    const gen = [...this.#live].find((g) => g.pid === root);
    const from = pid === root ? '' : ` (from pid ${pid})`;
    // Closes what it does not keep, also for a generation gone meanwhile.
    for (const line of this.#store.handle(fields, fds)) this.#log(`${gen?.describe() ?? `pid ${root}`}: ${line}${from}`);
    if (gen === undefined) return;
    const status = fields.get('STATUS');
    if (status !== undefined) this.#log(`${gen.describe()} status: ${status}${from}`);
    this.#watchdogs?.onMessage(gen, fields);
    if (fields.has('EXTEND_TIMEOUT_USEC')) this.#extendTimeout(gen, fields.get('EXTEND_TIMEOUT_USEC')!);
    if (fields.get('READY') === '1') this.#markReady(gen, `READY=1${from}`);
    if (fields.get('STOPPING') === '1') this.#log(`${gen.describe()} is stopping${from}`);
    if (fields.has('MAINPID'))
      this.#log(`${gen.describe()}: MAINPID=${fields.get('MAINPID')} ignored: the main process is the one started`);
  }

  #onExit(gen: Generation, exit: { code: number | null; signal: NodeJS.Signals | null }): void {
    const was = gen.state;
    gen.state = 'exited';
    gen.exit = exit;
    gen.clearTimers();
    this.#live.delete(gen);
    this.#lifeline?.remove(gen.pid);
    // Whatever the generation left goes with it (KillMode=mixed): its process group, and the processes
    // that left the group (setsid) and came to the subreaper.
    gen.kill('SIGKILL', true);
    const strays = findStrays(this.#ours()).filter((s) => s.generation === gen.id);
    if (killStrays(strays) > 0) this.#log(`${gen.describe()} left processes behind: SIGKILL to ${strays.map((s) => s.pid).join(', ')}`);
    gen.settle(`${exitText(exit)} before it was ready`);
    this.#lastExit = exit;
    if (was === 'stopping') {
      this.#log(`${gen.describe()} ${exitText(exit)} after ${this.#o.stopSignal} (stopped)`);
    } else if (gen === this.#next) {
      // the reload's outcome handler logs the rollback
    } else if (this.#shuttingDown) {
      this.#log(`${gen.describe()} ${exitText(exit)}`);
    } else if (gen === this.#current) {
      this.#current = undefined;
      this.#crashed(gen, was, exit);
    } else {
      this.#log(`${gen.describe()} ${exitText(exit)}`);
    }
    if (this.#shuttingDown && this.#live.size === 0) this.#finish();
  }

  #crashed(gen: Generation, was: State, exit: { code: number | null; signal: NodeJS.Signals | null }): void {
    if (gen.readyAt !== undefined && Date.now() - gen.readyAt > 10_000) this.#failures = 0;
    if (this.#next !== undefined) {
      this.#log(`${gen.describe()} ${exitText(exit)} unexpectedly; the reload's ${this.#next.describe()} takes over once ready`);
      return;
    }
    const delay = this.#failures === 0 ? 0 : Math.min(100 * 2 ** (this.#failures - 1), this.#o.maxBackoff);
    this.#failures++;
    const before = was === 'ready' ? 'unexpectedly' : 'before it was ready';
    const what = gen.pid < 0 ? `${gen.describe()} could not be started` : `${gen.describe()} ${exitText(exit)} ${before}`;
    if (this.#startLimited(Date.now() + delay)) {
      const { startLimitBurst: burst, startLimitInterval: interval } = this.#o;
      this.#startLimitHit = true;
      this.#log(
        `${what}; giving up: ${burst} starts within ${interval / 1000} s (--start-limit-burst ${burst}, --start-limit-interval ${interval / 1000})`,
      );
      // After #onExit, which would otherwise see the shutdown and finish a second time.
      queueMicrotask(() => this.shutdown(this.#o.stopSignal, 'start limit hit'));
      return;
    }
    this.#log(`${what}; the listeners stay open, restarting ${delay === 0 ? 'now' : `in ${delay} ms`}`);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.#startCurrent('restart');
    }, delay);
  }

  // Whether a start at `at` would be one too many for the start limit (systemd's check at each start).
  #startLimited(at: number): boolean {
    const { startLimitBurst: burst, startLimitInterval: interval } = this.#o;
    if (burst === 0 || interval === 0) return false;
    this.#starts = this.#starts.filter((t) => at - t < interval);
    return this.#starts.length >= burst;
  }

  #startCurrent(why: 'start' | 'restart'): void {
    this.#starts.push(Date.now());
    const gen = this.#launch();
    this.#current = gen;
    void gen.outcome.then((result) => {
      if (result === 'ready') {
        if (!this.#everReady) {
          this.#everReady = true;
          this.#upstream({ ready: true, status: `${gen.describe()} serving`, mainPid: process.pid });
        } else {
          this.#upstream({ status: `${gen.describe()} serving (after a ${why})` });
        }
        return;
      }
      if (gen.state !== 'exited') {
        this.#log(`${gen.describe()} ${result}: stopping it`);
        this.#stopUnready(gen); // #onExit then restarts with backoff
      }
    });
  }

  // Not ready in time, yet it may have accepted connections on the shared listeners: stop it as
  // gracefully as a serving one (stop signal, SIGKILL after --stop-timeout), as systemd does at
  // TimeoutStartSec. #onExit still sees it as not ready (a failure), not as stopped.
  #stopUnready(gen: Generation): void {
    gen.clearTimers();
    gen.kill(this.#o.stopSignal);
    gen.timers.push(setTimeout(() => gen.kill('SIGKILL', true), this.#o.stopTimeout));
  }

  #stop(gen: Generation, signal: NodeJS.Signals): void {
    if (gen.state === 'exited') return;
    gen.state = 'stopping';
    gen.clearTimers();
    gen.kill(signal);
    gen.timers.push(
      setTimeout(() => {
        this.#log(`${gen.describe()} still running ${this.#o.stopTimeout / 1000} s after ${signal}: SIGKILL`);
        gen.kill('SIGKILL', true);
      }, this.#o.stopTimeout),
    );
  }

  // --- reload ------------------------------------------------------------------------------

  /** Starts the next generation; resolves once it is serving, or rolled back, or refused. */
  async reload(source: string): Promise<ReloadResult> {
    if (this.#shuttingDown) return this.#refuse(source, 'the supervisor is shutting down');
    if (this.#next !== undefined) {
      const phase = this.#next.state === 'ready' ? 'is in its --overlap' : 'is starting';
      return this.#refuse(source, `a reload is in progress (${this.#next.describe()} ${phase})`);
    }
    const old = this.#current;
    if (old === undefined) {
      // No one serves (a crash restart is waiting out its backoff): start now, backoff reset.
      clearTimeout(this.#restartTimer);
      this.#restartTimer = undefined;
      this.#failures = 0;
      this.#log(`reload (${source}): no generation running; starting one now`);
      this.#startCurrent('restart');
      return { ok: true, message: `started ${this.#current!.describe()}` };
    }
    if (old.state === 'starting') return this.#refuse(source, `${old.describe()} is still starting`);
    this.#log(`reload (${source}): starting the next generation next to ${old.describe()}`);
    this.#upstream({ reloading: true }); // with MONOTONIC_USEC=, as systemd 253+ wants
    const gen = this.#launch();
    this.#next = gen;
    let result = await gen.outcome;
    if (result === 'ready' && this.#o.overlap > 0) result = await this.#overlap(gen);
    this.#next = undefined;
    if (this.#shuttingDown) {
      // shutdown() has sent every generation the stop signal already.
      this.#log(`reload (${source}) abandoned: the supervisor is shutting down`);
      return { ok: false, message: 'abandoned: the supervisor is shutting down' };
    }
    if (result === 'ready') {
      const previous = this.#current; // undefined if the old one crashed meanwhile
      this.#current = gen;
      this.#failures = 0;
      if (previous !== undefined) this.#stop(previous, this.#o.stopSignal);
      const message = `${gen.describe()} serving${previous ? `; ${previous.describe()} sent ${this.#o.stopSignal}` : ''}`;
      this.#log(`reload done: ${message}`);
      this.#upstream({ ready: true, status: `${gen.describe()} serving` });
      this.#watchFollowUp();
      return { ok: true, message };
    }
    // Rollback: the new generation goes, with everything it started; the old one never stopped.
    if (gen.state !== 'exited') this.#stopUnready(gen);
    await gen.exited;
    const keeps = this.#current !== undefined ? `${this.#current.describe()} keeps serving` : 'no generation is serving';
    const message = `rolled back: ${gen.describe()} ${result}; ${keeps}`;
    this.#log(`reload failed: ${message}`);
    this.#upstream({ ready: true, status: `reload failed: ${gen.describe()} ${result}` });
    if (this.#current === undefined && !this.#shuttingDown) this.#startCurrent('restart');
    this.#watchFollowUp();
    return { ok: false, message };
  }

  // Both generations serve for --overlap ms. Resolves 'ready' when the overlap ran out, or at once when
  // the old one went away meanwhile (the new one takes over); the new one exiting is a rollback.
  async #overlap(gen: Generation): Promise<'ready' | string> {
    const old = this.#current;
    this.#log(
      `${gen.describe()} is ready; ${old ? `${old.describe()} keeps serving next to it for` : 'overlap of'} ${this.#o.overlap} ms (--overlap)`,
    );
    let timer: NodeJS.Timeout | undefined;
    const elapsed = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#o.overlap)));
    await Promise.race([elapsed, gen.exited, ...(old ? [old.exited] : [])]);
    clearTimeout(timer);
    if (gen.exit !== undefined) return `${exitText(gen.exit)} during the ${this.#o.overlap} ms overlap`;
    return 'ready';
  }

  #refuse(source: string, why: string): ReloadResult {
    this.#log(`reload (${source}) refused: ${why}`);
    return { ok: false, message: `refused: ${why}` };
  }

  #onControl(ch: Channel): void {
    ch.on('error', () => {});
    ch.once('message', (m) => {
      const cmd = m.data.toString('utf8').trim();
      const reply = (r: ReloadResult): void => {
        ch.send({ data: Buffer.from(JSON.stringify(r)) }).then(
          () => ch.close(),
          () => ch.close(),
        );
      };
      if (cmd === 'reload') void this.reload('control socket').then(reply);
      else reply({ ok: false, message: `unknown command '${cmd}'` });
    });
  }

  // --- watch ---------------------------------------------------------------------------------

  #startWatching(): void {
    const ignored = ignoreMatcher(this.#o.watchIgnore);
    for (const p of this.#o.watch) {
      const w = new TreeWatcher(
        p,
        ignored,
        (name) => this.#onWatchEvent(p, name),
        (line) => this.#log(line),
      );
      this.#watchers.push(w);
    }
  }

  // `name`: relative to the watched path p ('' for p itself).
  #onWatchEvent(p: string, name: string): void {
    clearTimeout(this.#watchTimer);
    this.#watchTimer = setTimeout(() => {
      this.#watchTimer = undefined;
      if (this.#next !== undefined || this.#current?.state === 'starting') {
        this.#log(`--watch: ${name || p} changed during a reload: reloading again once it is done`);
        this.#watchAgain = true;
        return;
      }
      void this.reload(`--watch: ${name ? path.join(p, name) : p} changed`);
    }, this.#o.watchDelay);
  }

  #watchFollowUp(): void {
    if (!this.#watchAgain) return;
    this.#watchAgain = false;
    setImmediate(() => void this.reload('--watch: changes during the last reload'));
  }

  // --- watchdog -----------------------------------------------------------------------------

  #startWatchdogs(): void {
    const { upstreamWatchdog, watchdog } = this.#o;
    // Also with neither interval: WATCHDOG=trigger stops a generation whatever WatchdogSec= says, as in systemd.
    this.#watchdogs = new Watchdogs<Generation>({
      upstreamUsec: upstreamWatchdog,
      generationUsec: watchdog,
      live: () => this.#live,
      killGraceMs: this.#o.stopTimeout + Math.floor((watchdog ?? upstreamWatchdog ?? 0) / 1000),
      pingUpstream: () => this.#upstream({ watchdog: true }),
      onMissed: (gen, why) => this.#hung(gen, why),
      log: (line) => this.#log(line),
    });
    if (upstreamWatchdog === undefined && watchdog === undefined) return;
    const each = watchdog === undefined ? 'generations are not watched' : `each generation must ping within ${watchdog / 1e6} s once ready`;
    this.#log(`watchdog: ${upstreamWatchdog !== undefined ? `pinging systemd every ${upstreamWatchdog / 2e6} s; ` : ''}${each}`);
  }

  // As systemd does at a missed watchdog: SIGABRT (its WatchdogSignal=, which a hung event loop cannot
  // delay), SIGKILL of the group after --stop-timeout. It then exits as a failed generation: a serving
  // one is restarted, a reload's new one is rolled back.
  #hung(gen: Generation, why: string): void {
    this.#log(`${gen.describe()} ${why}: SIGABRT`);
    gen.kill('SIGABRT');
    gen.timers.push(setTimeout(() => gen.kill('SIGKILL', true), this.#o.stopTimeout));
  }

  // EXTEND_TIMEOUT_USEC= of a generation systemd is waiting on (the first start, or a reload's new
  // one): passed up, so that TimeoutStartSec= does not fail the unit meanwhile. --ready-timeout is
  // the supervisor's own limit and is not extended.
  #extendTimeout(gen: Generation, value: string): void {
    if (this.#o.upstreamNotify === undefined || gen.state !== 'starting') return;
    if (!/^[0-9]{1,16}$/.test(value)) return;
    if (gen === this.#next || (gen === this.#current && !this.#everReady)) this.#upstream({ extendTimeoutUsec: Number(value) });
  }

  // --- shutdown ------------------------------------------------------------------------------

  #forward(signal: NodeJS.Signals): void {
    for (const g of this.#live) g.kill(signal);
  }

  /** Forwards `signal` to every generation and exits with the serving one's status once all are gone. */
  shutdown(signal: NodeJS.Signals, why: string = signal): void {
    if (this.#shuttingDown) {
      this.#forward(signal); // a second ^C: pass it on too
      return;
    }
    this.#shuttingDown = true;
    this.#log(`${why}: stopping`);
    this.#upstream({ stopping: true });
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#watchTimer);
    this.#watchers.forEach((w) => w.close());
    for (const g of this.#live) this.#stop(g, signal);
    if (this.#live.size === 0) this.#finish();
  }

  #finish(): void {
    if (this.#finishing) return;
    this.#finishing = true;
    let status = exitStatus(this.#current?.exit ?? this.#lastExit);
    if (this.#startLimitHit && status === 0) status = 1; // giving up is a failure, whatever the last exit
    void this.#killStrays().then(() => {
      this.#release();
      this.#done(status);
    });
  }

  /** The processes the supervisor spawned itself: libuv reaps them, and they are not strays. */
  #ours(): Set<number> {
    return new Set([...[...this.#live].map((g) => g.pid), this.#lifeline?.pid ?? -1]);
  }

  // Any process still under the supervisor once every generation is gone (e.g. one whose environment
  // no longer names its generation): SIGKILL, and wait until none is left, so that none holds a
  // listener after the supervisor exits.
  async #killStrays(): Promise<void> {
    const end = Date.now() + 5000;
    for (let round = 0; ; round++) {
      const strays = findStrays(this.#ours());
      if (strays.length === 0) break;
      if (Date.now() > end) {
        this.#log(`processes still running after SIGKILL: ${strays.map((s) => s.pid).join(', ')}`);
        break;
      }
      if (killStrays(strays) > 0 && round === 0) this.#log(`SIGKILL to processes left behind: ${strays.map((s) => s.pid).join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    this.#reaper?.reap();
  }

  // Everything the supervisor holds, in any state start() may have got to.
  #release(): void {
    for (const [sig, fn] of this.#signalHandlers.splice(0)) process.off(sig, fn);
    this.#watchers.splice(0).forEach((w) => w.close());
    this.#reaper?.close();
    this.#notify?.close();
    void this.#control?.close();
    closeListeners(this.#o.listeners);
    this.#store.close();
    this.#watchdogs?.close();
    this.#lifeline?.close();
  }

  // To a systemd (or another supervisor) above us; best effort, a failure is logged.
  #upstream(state: NotifyState): void {
    const target = this.#o.upstreamNotify;
    if (target === undefined) return;
    notify(state, { socket: target }).catch((err: Error) => this.#log(`notifying systemd (${target}): ${err.message}`));
  }
}
