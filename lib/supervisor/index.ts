// `fdpass run`: a small socket-holding parent. It binds the listeners once and runs the command as
// successive generations that receive them through systemd's own protocol (LISTEN_FDS from fd 3,
// LISTEN_FDNAMES, LISTEN_PID, NOTIFY_SOCKET). A reload starts the next generation next to the old one
// and stops the old one only once the new one said READY=1; the listeners never close, so a
// connection that arrives meanwhile waits in the kernel's accept queue instead of being refused.
// Over 350 lines as one state machine: every transition (start, crash restart, reload and rollback, a
// generation's exit, shutdown) reads and writes #current, #next and #live. What has state of its own is
// in its own file: generation, control, restart, watch-reload, watchdog, fdstore, notify, strays, lifeline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ChannelServer } from '../endpoints';
import { exitStatus, exitText, type ExitStatus } from '../exit-status';
import type { NotifyState } from '../systemd';
import { serveControl, type ReloadResult } from './control';
import { execRoom } from './exec-limits';
import { FdStore } from './fdstore';
import { spawnGeneration, type Generation, type GenerationState } from './generation';
import { Lifeline } from './lifeline';
import { closeListeners } from './listeners';
import { NotifyReceiver, upstreamNotifier } from './notify';
import type { LogLevel, SupervisorOptions } from './options';
import { OrphanReaper } from './reap';
import { Restarts } from './restart';
import { becomeSubreaper, findStrays, killRemaining, killStrays } from './strays';
import { WatchReload } from './watch-reload';
import { Watchdogs } from './watchdog';

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
  #watch: WatchReload | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  readonly #restarts: Restarts;
  #everReady = false;
  #shuttingDown = false;
  #finishing = false;
  #lastExit: ExitStatus | undefined;
  #done!: (status: number) => void;
  /** Resolves with the exit status once the supervisor has stopped. */
  readonly finished: Promise<number>;
  #signalHandlers: Array<[NodeJS.Signals, () => void]> = [];
  #lifeline: Lifeline | undefined;
  readonly #store: FdStore;
  #watchdogs: Watchdogs<Generation> | undefined;
  /** To a systemd (or another supervisor) above this one. */
  readonly #upstream: (state: NotifyState) => void;

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
    this.#restarts = new Restarts(opts.maxBackoff, opts.startLimitBurst, opts.startLimitInterval);
    this.#upstream = upstreamNotifier(opts.upstreamNotify, opts.log);
    this.finished = new Promise((resolve) => (this.#done = resolve));
  }

  #log(line: string, level: LogLevel = 'info'): void {
    this.#o.log(line, level);
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
        (pid) => this.#log(`ignored a notify message from pid ${pid}: not in any generation's process tree`, 'failure'),
      );
      if (this.#o.control !== undefined) {
        this.#control = await serveControl(this.#o.control, () => this.reload('control socket'), this.#o.log);
      }
      // A subreaper inherits its generations' orphans (to stop what left a process group, and reap
      // it), as PID 1 inherits every orphan: either way libuv reaps only the children it spawned.
      if (becomeSubreaper(this.#o.log) || process.pid === 1) this.#reaper = new OrphanReaper(() => this.#ours());
      const on = (sig: NodeJS.Signals, fn: () => void): void => {
        process.on(sig, fn);
        this.#signalHandlers.push([sig, fn]);
      };
      on('SIGHUP', () => void this.reload('SIGHUP'));
      for (const sig of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) on(sig, () => this.shutdown(sig));
      for (const sig of ['SIGUSR2', 'SIGWINCH'] as const) on(sig, () => this.#forward(sig));
      this.#watch = new WatchReload({
        paths: this.#o.watch,
        ignore: this.#o.watchIgnore,
        delay: this.#o.watchDelay,
        busy: () => this.#next !== undefined || this.#current?.state === 'starting',
        reload: (source) => void this.reload(source),
        log: this.#o.log,
      });
      this.#startWatchdogs();
      this.#lifeline = new Lifeline(this.#o.stopSignal, this.#o.stopTimeout, this.#notify.path, this.#o.log);
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
    const gen = spawnGeneration(
      this.#nextId++,
      {
        command: this.#o.command,
        args: this.#o.args,
        env: this.#o.env,
        fds: [...this.#o.listeners, ...this.#store.fds],
        notifySocket: this.#notify!.path,
        watchdogEnv: this.#watchdogs?.env,
      },
      (g, err) => this.#notStarted(g, err),
    );
    if (gen.pid < 0) return gen;
    gen.proc!.on('error', (err) => this.#log(`${gen.describe()}: ${err.message}`, 'failure'));
    this.#live.add(gen);
    this.#lifeline?.add(gen.pid);
    gen.proc!.once('exit', (code, signal) => this.#onExit(gen, { code, signal }));
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

  #notStarted(gen: Generation, err: Error): void {
    const why = `could not be started: ${err.message}${(err as NodeJS.ErrnoException).code === 'E2BIG' ? " (its arguments and environment exceed the kernel's limit)" : ''}`;
    this.#log(`${gen.describe()} ${why}`, 'failure');
    gen.exit = { code: 127, signal: null };
    gen.settle(why);
    this.#onExit(gen, gen.exit);
    gen.notStarted();
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
    for (const { line, level } of this.#store.handle(fields, fds)) this.#log(`${gen?.describe() ?? `pid ${root}`}: ${line}${from}`, level);
    if (gen === undefined) return;
    const status = fields.get('STATUS');
    if (status !== undefined) this.#log(`${gen.describe()} status: ${status}${from}`);
    this.#watchdogs?.onMessage(gen, fields);
    if (fields.has('EXTEND_TIMEOUT_USEC')) this.#extendTimeout(gen, fields.get('EXTEND_TIMEOUT_USEC')!);
    if (fields.get('READY') === '1') this.#markReady(gen, `READY=1${from}`);
    if (fields.get('STOPPING') === '1') this.#log(`${gen.describe()} is stopping${from}`);
    if (fields.has('MAINPID'))
      this.#log(`${gen.describe()}: MAINPID=${fields.get('MAINPID')} ignored: the main process is the one started`, 'failure');
  }

  #onExit(gen: Generation, exit: ExitStatus): void {
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
    if (killStrays(strays) > 0)
      this.#log(`${gen.describe()} left processes behind: SIGKILL to ${strays.map((s) => s.pid).join(', ')}`, 'failure');
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
      this.#log(`${gen.describe()} ${exitText(exit)}`, 'failure'); // it was not told to stop
    }
    if (this.#shuttingDown && this.#live.size === 0) this.#finish();
  }

  #crashed(gen: Generation, was: GenerationState, exit: ExitStatus): void {
    this.#restarts.exited(gen.readyAt);
    if (this.#next !== undefined) {
      this.#log(`${gen.describe()} ${exitText(exit)} unexpectedly; the reload's ${this.#next.describe()} takes over once ready`, 'failure');
      return;
    }
    const delay = this.#restarts.next();
    const before = was === 'ready' ? 'unexpectedly' : 'before it was ready';
    const what = gen.pid < 0 ? `${gen.describe()} could not be started` : `${gen.describe()} ${exitText(exit)} ${before}`;
    if (delay === undefined) {
      this.#log(`${what}; giving up: ${this.#restarts.limitText}`, 'failure');
      // After #onExit, which would otherwise see the shutdown and finish a second time.
      queueMicrotask(() => this.shutdown(this.#o.stopSignal, 'start limit hit'));
      return;
    }
    this.#log(`${what}; the listeners stay open, restarting ${delay === 0 ? 'now' : `in ${delay} ms`}`, 'failure');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.#startCurrent('restart');
    }, delay);
  }

  #startCurrent(why: 'start' | 'restart'): void {
    this.#restarts.started();
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
        this.#log(`${gen.describe()} ${result}: stopping it`, 'failure');
        this.#stopUnready(gen); // #onExit then restarts with backoff
      }
    });
  }

  // Not ready in time, yet it may have accepted connections on the shared listeners: stop it as
  // gracefully as a serving one (stop signal, SIGKILL after --stop-timeout), as systemd does at
  // TimeoutStartSec. #onExit still sees it as not ready (a failure), not as stopped.
  #stopUnready(gen: Generation): void {
    gen.clearTimers();
    gen.killAfter(this.#o.stopSignal, this.#o.stopTimeout);
  }

  #stop(gen: Generation, signal: NodeJS.Signals): void {
    if (gen.state === 'exited') return;
    gen.state = 'stopping';
    gen.clearTimers();
    gen.killAfter(signal, this.#o.stopTimeout, () =>
      this.#log(`${gen.describe()} still running ${this.#o.stopTimeout / 1000} s after ${signal}: SIGKILL`, 'failure'),
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
      this.#restarts.reset();
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
      this.#log(`reload (${source}) abandoned: the supervisor is shutting down`, 'failure');
      return { ok: false, message: 'abandoned: the supervisor is shutting down' };
    }
    if (result === 'ready') {
      const previous = this.#current; // undefined if the old one crashed meanwhile
      this.#current = gen;
      this.#restarts.reset();
      if (previous !== undefined) this.#stop(previous, this.#o.stopSignal);
      const message = `${gen.describe()} serving${previous ? `; ${previous.describe()} sent ${this.#o.stopSignal}` : ''}`;
      this.#log(`reload done: ${message}`);
      this.#upstream({ ready: true, status: `${gen.describe()} serving` });
      this.#watch?.followUp();
      return { ok: true, message };
    }
    // Rollback: the new generation goes, with everything it started; the old one never stopped.
    if (gen.state !== 'exited') this.#stopUnready(gen);
    await gen.exited;
    const keeps = this.#current !== undefined ? `${this.#current.describe()} keeps serving` : 'no generation is serving';
    const message = `rolled back: ${gen.describe()} ${result}; ${keeps}`;
    this.#log(`reload failed: ${message}`, 'failure');
    this.#upstream({ ready: true, status: `reload failed: ${gen.describe()} ${result}` });
    if (this.#current === undefined && !this.#shuttingDown) this.#startCurrent('restart');
    this.#watch?.followUp();
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
    this.#log(`reload (${source}) refused: ${why}`, 'failure');
    return { ok: false, message: `refused: ${why}` };
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
      log: this.#o.log,
    });
  }

  // As systemd does at a missed watchdog: SIGABRT (its WatchdogSignal=, which a hung event loop cannot
  // delay), SIGKILL of the group after --stop-timeout. It then exits as a failed generation: a serving
  // one is restarted, a reload's new one is rolled back.
  #hung(gen: Generation, why: string): void {
    this.#log(`${gen.describe()} ${why}: SIGABRT`, 'failure');
    gen.killAfter('SIGABRT', this.#o.stopTimeout);
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
    this.#watch?.close();
    for (const g of this.#live) this.#stop(g, signal);
    if (this.#live.size === 0) this.#finish();
  }

  #finish(): void {
    if (this.#finishing) return;
    this.#finishing = true;
    let status = exitStatus(this.#current?.exit ?? this.#lastExit);
    if (this.#restarts.limitHit && status === 0) status = 1; // giving up is a failure, whatever the last exit
    void this.#killStrays().then(() => {
      this.#release();
      this.#done(status);
    });
  }

  /** The processes the supervisor spawned itself: libuv reaps them, and they are not strays. */
  #ours(): Set<number> {
    return new Set([...[...this.#live].map((g) => g.pid), this.#lifeline?.pid ?? -1]);
  }

  // Once every generation is gone: no process under the supervisor may hold a listener after it exits.
  async #killStrays(): Promise<void> {
    await killRemaining(() => this.#ours(), this.#o.log);
    this.#reaper?.reap();
  }

  // Everything the supervisor holds, in any state start() may have got to.
  #release(): void {
    for (const [sig, fn] of this.#signalHandlers.splice(0)) process.off(sig, fn);
    this.#watch?.close();
    this.#reaper?.close();
    this.#notify?.close();
    void this.#control?.close();
    closeListeners(this.#o.listeners);
    this.#store.close();
    this.#watchdogs?.close();
    this.#lifeline?.close();
  }
}
