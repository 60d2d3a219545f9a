// `fdpass run`: a small socket-holding parent. It binds the listeners once and runs the command as
// successive generations of --workers N processes that receive them through systemd's own protocol
// (LISTEN_FDS from fd 3, LISTEN_FDNAMES, LISTEN_PID, NOTIFY_SOCKET). A reload starts the next
// generation next to the old one and stops the old one only once every new worker said READY=1; the
// listeners never close, so a connection that arrives meanwhile waits in the kernel's accept queue
// instead of being refused. A worker that crashes is restarted in its slot.
// Over 350 lines as one state machine: every transition (start, crash restart, reload and rollback, a
// worker's exit, shutdown) reads and writes #current, #next, #old and #live. What has state of its own
// is in its own file: generation, worker, control, restart, watch-reload, watchdog, fdstore, notify,
// strays, lifeline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ChannelServer } from '../endpoints';
import { exitStatus, exitText, type ExitStatus } from '../exit-status';
import type { NotifyState } from '../systemd';
import { serveControl, type ReloadResult } from './control';
import { execRoom } from './exec-limits';
import { FdStore } from './fdstore';
import { Generation } from './generation';
import { Lifeline } from './lifeline';
import { closeListeners } from './listeners';
import { NotifyReceiver, upstreamNotifier } from './notify';
import type { LogLevel, SupervisorOptions } from './options';
import { OrphanReaper } from './reap';
import { Restarts } from './restart';
import { SlotSteering } from './steering';
import { generationStatus, type GenerationStatus, type ReloadOutcome, type SupervisorStatus } from './status';
import { becomeSubreaper, findStrays, killRemaining, killStrays } from './strays';
import { WatchReload } from './watch-reload';
import { Watchdogs } from './watchdog';
import { spawnWorker, type Worker, type WorkerState } from './worker';

export class Supervisor {
  readonly #o: SupervisorOptions;
  #nextId = 1;
  /** Every running worker, of any generation. */
  #live = new Set<Worker>();
  /** The generation that serves (or, with no one serving, the one starting to). */
  #current: Generation | undefined;
  /** A reload's new generation, until it is ready or rolled back. */
  #next: Generation | undefined;
  /** A reload's new generation that failed, while its workers stop: no other reload starts meanwhile. */
  #rollingBack: Generation | undefined;
  /** Generations replaced by a reload whose workers are still stopping. */
  readonly #old = new Set<Generation>();
  /** A reload waits for #old to stop before it starts its generation. */
  #waiting = false;
  #notify: NotifyReceiver | undefined;
  #control: ChannelServer | undefined;
  #reaper: OrphanReaper | undefined;
  #watch: WatchReload | undefined;
  #everReady = false;
  readonly #startedAt = Date.now();
  #lastReload: ReloadOutcome | undefined;
  /** The answers of refused reload requests. */
  readonly #refused = new WeakSet<ReloadResult>();
  /** A worker of the serving generation has exited unasked. */
  #crashSeen = false;
  /** The exit of the worker whose slot hit the start limit: the supervisor gave up. */
  #limitExit: ExitStatus | undefined;
  #shuttingDown = false;
  #finishing = false;
  #lastExit: ExitStatus | undefined;
  #done!: (status: number) => void;
  /** Resolves with the exit status once the supervisor has stopped. */
  readonly finished: Promise<number>;
  #signalHandlers: Array<[NodeJS.Signals, () => void]> = [];
  #lifeline: Lifeline | undefined;
  readonly #store: FdStore;
  #watchdogs: Watchdogs<Worker> | undefined;
  readonly #steering: SlotSteering;
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
    this.#upstream = upstreamNotifier(opts.upstreamNotify, opts.log);
    this.#steering = new SlotSteering(opts.listeners, opts.log);
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
        this.#control = await serveControl(
          this.#o.control,
          { reload: () => this.reload('control socket'), status: () => this.status() },
          this.#o.log,
        );
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
        busy: () => this.#next !== undefined || this.#rollingBack !== undefined || this.#current?.serving === false,
        reload: (source) => void this.reload(source),
        log: this.#o.log,
      });
      this.#startWatchdogs();
      this.#lifeline = new Lifeline(this.#o.stopSignal, this.#o.stopTimeout, this.#notify.path, this.#o.log);
      const where = this.#o.listeners.map((l) => `${l.name}=${l.describe}`).join(', ') || 'no listeners';
      const workers = this.#o.workers > 1 ? `${this.#o.workers} workers of ` : '';
      this.#log(`supervising ${workers}${this.#o.command} with ${where}`);
      const gen = this.#newGeneration();
      this.#current = gen;
      for (let slot = 0; slot < gen.size; slot++) this.#launch(gen, slot);
    } catch (err) {
      this.#release();
      fs.rmSync(dir, { recursive: true, force: true }); // if the notify socket was never bound
      throw err;
    }
  }

  // --- workers ------------------------------------------------------------------------------

  #newGeneration(): Generation {
    const o = this.#o;
    return new Generation(this.#nextId++, o.workers, () => new Restarts(o.maxBackoff, o.startLimitBurst, o.startLimitInterval));
  }

  #generationOf(w: Worker): Generation | undefined {
    return [this.#current, this.#next, this.#rollingBack, ...this.#old].find((g) => g?.id === w.generation);
  }

  /** Starts the worker of `slot` in `gen` (a start, a reload, or a crash restart). */
  #launch(gen: Generation, slot: number): Worker {
    gen.restarts[slot]!.started();
    const w = spawnWorker(
      {
        generation: gen.id,
        slot,
        workers: gen.size,
        command: this.#o.command,
        args: this.#o.args,
        env: this.#o.env,
        fds: [...this.#o.listeners.map((l) => ({ name: l.name, fd: l.slotFds?.[slot] ?? l.fd })), ...this.#store.fds],
        notifySocket: this.#notify!.path,
        watchdogEnv: this.#watchdogs?.env,
      },
      (failed, err) => this.#notStarted(failed, err),
    );
    gen.workers[slot] = w;
    void w.outcome.then((result) => this.#settled(gen, w, result));
    if (w.pid < 0) return w;
    w.proc!.on('error', (err) => this.#log(`${w.describe()}: ${err.message}`, 'failure'));
    this.#live.add(w);
    this.#lifeline?.add(w.pid);
    w.proc!.once('exit', (code, signal) => this.#onExit(w, { code, signal }));
    w.timers.push(
      setTimeout(() => {
        if (w.state !== 'starting') return;
        w.settle(`was not ready within ${this.#o.readyTimeout / 1000} s`);
      }, this.#o.readyTimeout),
    );
    if (this.#o.readyDelay !== undefined) {
      w.timers.push(setTimeout(() => this.#markReady(w, `running for ${this.#o.readyDelay} ms (--ready-delay)`), this.#o.readyDelay));
    }
    this.#log(`started ${w.describe()}`);
    return w;
  }

  // A reload's workers start --reload-concurrency at a time: the next one once one is ready.
  #fill(gen: Generation): void {
    const starting = (): number => gen.workers.filter((w) => w?.state === 'starting').length;
    while (gen.nextSlot < gen.size && starting() < this.#o.reloadConcurrency) {
      const w = this.#launch(gen, gen.nextSlot++);
      if (w.pid < 0) return; // the failure ends the reload
    }
  }

  #notStarted(w: Worker, err: Error): void {
    const why = `could not be started: ${err.message}${(err as NodeJS.ErrnoException).code === 'E2BIG' ? " (its arguments and environment exceed the kernel's limit)" : ''}`;
    this.#log(`${w.describe()} ${why}`, 'failure');
    w.exit = { code: 127, signal: null };
    w.settle(why);
    this.#onExit(w, w.exit);
    w.notStarted();
  }

  #markReady(w: Worker, how: string): void {
    if (w.state !== 'starting') return;
    w.state = 'ready';
    w.readyAt = Date.now();
    w.clearTimers();
    this.#log(`${w.describe()} is ready (${how}) after ${w.readyAt - w.startedAt} ms`);
    w.settle('ready');
    this.#steer();
  }

  // Per-worker sockets go to the slots that have a ready worker (steering.ts).
  #steer(): void {
    const serving = new Array<boolean>(this.#o.workers).fill(false);
    for (const w of this.#live) if (w.state === 'ready') serving[w.slot] = true;
    // Quiet while the first generation starts up as it should (its workers get ready one by one).
    this.#steering.update(serving, !this.#everReady && !this.#crashSeen);
  }

  // A worker's start settled: ready, or not (exited, killed, timed out, not started).
  #settled(gen: Generation, w: Worker, result: 'ready' | string): void {
    if (result !== 'ready') {
      if (gen === this.#next) {
        gen.fail(`${w.describe()} ${result}`); // the reload rolls back: every new worker is stopped
      } else if (w.state !== 'exited') {
        this.#log(`${w.describe()} ${result}: stopping it`, 'failure');
        this.#stopUnready(w); // #onExit then restarts it with backoff
      }
      return;
    }
    const wasServing = gen.serving;
    gen.workerReady();
    if (gen.serving && !wasServing && gen.size > 1) this.#log(`${gen.describe()}: all ${gen.size} workers ready`);
    if (gen === this.#next) {
      if (!gen.serving) this.#fill(gen);
      return;
    }
    if (gen !== this.#current) return;
    if (!this.#everReady && gen.serving) {
      this.#everReady = true;
      this.#upstream({ ready: true, status: gen.servingText(), mainPid: process.pid });
    } else if (wasServing && gen.restartCounts[w.slot]! > 0) {
      // Its slot's restart (not the last of the start's workers: their READY=1s can come in one read,
      // and then the generation serves before the second one's turn here).
      this.#upstream({ status: `${gen.servingText()} (after a restart)` });
    }
  }

  #onNotify(root: number, fields: Map<string, string>, pid: number, fds: number[]): void {
    const w = [...this.#live].find((x) => x.pid === root);
    const from = pid === root ? '' : ` (from pid ${pid})`;
    // Closes what it does not keep, also for a worker gone meanwhile.
    for (const { line, level } of this.#store.handle(fields, fds)) this.#log(`${w?.describe() ?? `pid ${root}`}: ${line}${from}`, level);
    if (w === undefined) return;
    const status = fields.get('STATUS');
    if (status !== undefined) this.#log(`${w.describe()} status: ${status}${from}`);
    this.#watchdogs?.onMessage(w, fields);
    if (fields.has('EXTEND_TIMEOUT_USEC')) this.#extendTimeout(w, fields.get('EXTEND_TIMEOUT_USEC')!);
    if (fields.get('READY') === '1') this.#markReady(w, `READY=1${from}`);
    if (fields.get('STOPPING') === '1') this.#log(`${w.describe()} is stopping${from}`);
    if (fields.has('MAINPID'))
      this.#log(`${w.describe()}: MAINPID=${fields.get('MAINPID')} ignored: the main process is the one started`, 'failure');
  }

  #onExit(w: Worker, exit: ExitStatus): void {
    const was = w.state;
    w.state = 'exited';
    w.exit = exit;
    w.clearTimers();
    this.#live.delete(w);
    this.#lifeline?.remove(w.pid);
    // Whatever the worker left goes with it (KillMode=mixed): its process group, and the processes
    // that left the group (setsid) and came to the subreaper.
    w.kill('SIGKILL', true);
    const strays = findStrays(this.#ours()).filter((s) => s.generation === w.generation && s.worker === w.slot);
    if (killStrays(strays) > 0)
      this.#log(`${w.describe()} left processes behind: SIGKILL to ${strays.map((s) => s.pid).join(', ')}`, 'failure');
    w.settle(`${exitText(exit)} before it was ready`);
    this.#lastExit = exit;
    const gen = this.#generationOf(w);
    if (was === 'stopping') {
      this.#log(`${w.describe()} ${exitText(exit)} after ${this.#o.stopSignal} (stopped)`);
    } else if (gen !== undefined && gen === this.#next) {
      // the reload's outcome handler logs the rollback
      if (was === 'ready') gen.fail(`${w.describe()} ${exitText(exit)}`);
    } else if (this.#shuttingDown || (gen !== undefined && gen === this.#rollingBack)) {
      this.#log(`${w.describe()} ${exitText(exit)}`); // told to stop (the rollback's or the shutdown's signal)
    } else if (gen !== undefined && gen === this.#current) {
      this.#crashed(gen, w, was, exit);
    } else {
      this.#log(`${w.describe()} ${exitText(exit)}`, 'failure'); // it was not told to stop
    }
    if (!this.#shuttingDown) this.#steer();
    if (gen !== undefined) {
      gen.workerExited();
      if (gen !== this.#current && gen !== this.#next && gen.live().length === 0) this.#old.delete(gen);
    }
    if (this.#shuttingDown && this.#live.size === 0) this.#finish();
  }

  // A worker of the serving generation exited without being told to: restarted in its slot.
  #crashed(gen: Generation, w: Worker, was: WorkerState, exit: ExitStatus): void {
    const restarts = gen.restarts[w.slot]!;
    restarts.exited(w.readyAt);
    this.#crashSeen = true;
    if (gen.serving) this.#upstream({ status: gen.servingText() });
    const before = was === 'ready' ? 'unexpectedly' : 'before it was ready';
    if (this.#next !== undefined) {
      // Not restarted: the reload replaces it (or, rolled back, restarts it then).
      const when = this.#next.serving ? 'after its --overlap' : 'once ready';
      this.#log(`${w.describe()} ${exitText(exit)} ${before}; the reload's ${this.#next.describe()} takes over ${when}`, 'failure');
      return;
    }
    const delay = restarts.next();
    const what = w.pid < 0 ? `${w.describe()} could not be started` : `${w.describe()} ${exitText(exit)} ${before}`;
    if (delay === undefined) {
      this.#limitExit = exit;
      this.#log(`${what}; giving up: ${restarts.limitText}`, 'failure');
      // After #onExit, which would otherwise see the shutdown and finish a second time.
      queueMicrotask(() => this.shutdown(this.#o.stopSignal, 'start limit hit'));
      return;
    }
    const others = gen.size > 1 ? `, the other workers serve` : '';
    const nth = gen.restartCounts[w.slot]! + 1;
    this.#log(
      `${what}; the listeners stay open${others}, restarting ${delay === 0 ? 'now' : `in ${delay} ms`} (restart ${nth} of ${gen.size > 1 ? `worker ${w.slot}` : 'the generation'})`,
      'failure',
    );
    this.#restartSlot(gen, w.slot, delay);
  }

  #restartSlot(gen: Generation, slot: number, delay: number): void {
    clearTimeout(gen.restartTimers[slot]);
    gen.restartTimers[slot] = setTimeout(() => {
      gen.restartTimers[slot] = undefined;
      gen.restartCounts[slot]!++;
      this.#launch(gen, slot);
    }, delay);
  }

  // Not ready in time, yet it may have accepted connections on the shared listeners: stop it as
  // gracefully as a serving one (stop signal, SIGKILL after --stop-timeout), as systemd does at
  // TimeoutStartSec. #onExit still sees it as not ready (a failure), not as stopped.
  #stopUnready(w: Worker): void {
    w.clearTimers();
    w.killAfter(this.#o.stopSignal, this.#o.stopTimeout);
  }

  #stop(w: Worker, signal: NodeJS.Signals): void {
    if (w.state === 'exited') return;
    w.state = 'stopping';
    w.clearTimers();
    w.killAfter(signal, this.#o.stopTimeout, () =>
      this.#log(`${w.describe()} still running ${this.#o.stopTimeout / 1000} s after ${signal}: SIGKILL`, 'failure'),
    );
  }

  // --- reload ------------------------------------------------------------------------------

  /** Starts the next generation; resolves once it is serving, or rolled back, or refused. */
  async reload(source: string): Promise<ReloadResult> {
    const result = await this.#reload(source);
    // A refused request is not a reload: the last one that ran stays reported.
    if (!this.#refused.has(result)) this.#lastReload = { at: Date.now(), source, ...result };
    return result;
  }

  async #reload(source: string): Promise<ReloadResult> {
    if (this.#shuttingDown) return this.#refuse(source, 'the supervisor is shutting down');
    if (this.#next !== undefined) {
      const phase = this.#next.serving ? 'is in its --overlap' : 'is starting';
      return this.#refuse(source, `a reload is in progress (${this.#next.describe()} ${phase})`);
    }
    if (this.#waiting) return this.#refuse(source, 'a reload is in progress (waiting for the previous generation to stop)');
    if (this.#rollingBack !== undefined)
      return this.#refuse(source, `a reload is in progress (${this.#rollingBack.describe()} is being rolled back)`);
    // At most two generations run: a reload waits for the one the previous reload stopped.
    if (this.#old.size > 0) {
      this.#waiting = true;
      this.#log(`reload (${source}): waiting for ${[...this.#old].map((g) => g.describe()).join(', ')} to stop first`);
      await Promise.all([...this.#old].map((g) => g.whenEmpty()));
      this.#waiting = false;
      if (this.#shuttingDown) return { ok: false, message: 'abandoned: the supervisor is shutting down' };
    }
    const old = this.#current!;
    if (!old.serving) {
      // Never served: if its workers wait out a crash backoff, start them now, backoff reset.
      const waiting = old.restartTimers.flatMap((t, slot) => (t === undefined ? [] : [slot]));
      if (waiting.length === 0) return this.#refuse(source, `${old.describe()} is still starting`);
      this.#log(`reload (${source}): ${old.describe()} is not serving; restarting it now`);
      for (const slot of waiting) {
        old.restarts[slot]!.reset();
        this.#restartSlot(old, slot, 0);
      }
      return { ok: true, message: `restarting ${old.describe()}` };
    }
    this.#log(`reload (${source}): starting the next generation next to ${old.describe()}`);
    this.#upstream({ reloading: true }); // with MONOTONIC_USEC=, as systemd 253+ wants
    const gen = this.#newGeneration();
    this.#next = gen;
    this.#fill(gen);
    let result = await Promise.race([gen.allReady, gen.failed]);
    if (result === 'ready' && this.#o.overlap > 0) result = await this.#overlap(gen, old);
    this.#next = undefined;
    if (this.#shuttingDown) {
      // shutdown() has sent every worker the stop signal already.
      this.#log(`reload (${source}) abandoned: the supervisor is shutting down`, 'failure');
      return { ok: false, message: 'abandoned: the supervisor is shutting down' };
    }
    if (result === 'ready') {
      this.#current = gen;
      this.#old.add(old);
      old.cancelRestarts();
      for (const r of gen.restarts) r.reset();
      const stopping = old.live();
      for (const w of stopping) this.#stop(w, this.#o.stopSignal);
      if (stopping.length === 0) this.#old.delete(old);
      const message = `${gen.describe()} serving${stopping.length > 0 ? `; ${old.describe()} sent ${this.#o.stopSignal}` : ''}`;
      this.#log(`reload done: ${message}`);
      this.#upstream({ ready: true, status: gen.servingText() });
      this.#watch?.followUp();
      return { ok: true, message };
    }
    // Rollback: the new workers go, with everything they started; the old ones never stopped. Until
    // they are gone no other reload starts (it would run a third generation, and this one's end below
    // would restart slots of a generation that reload replaced).
    this.#rollingBack = gen;
    for (const w of gen.live()) this.#stopUnready(w);
    await Promise.all(gen.workers.map((w) => w?.exited));
    this.#rollingBack = undefined;
    // Slots of the old generation that crashed during the reload start again now.
    const restart = this.#shuttingDown
      ? []
      : Array.from({ length: old.size }, (_, slot) => slot).filter(
          (slot) => old.workers[slot]?.state === 'exited' && old.restartTimers[slot] === undefined,
        );
    const keeps =
      old.live().length > 0
        ? `${old.describe()} keeps serving`
        : restart.length > 0
          ? `generation ${old.id} restarts`
          : 'no generation is serving';
    const message = `rolled back: ${result}; ${keeps}`;
    this.#log(`reload failed: ${message}`, 'failure');
    // Not after STOPPING=1: a systemd above would read READY=1 as the unit serving again.
    if (!this.#shuttingDown) this.#upstream({ ready: true, status: `reload failed: ${result}` });
    for (const slot of restart) this.#restartSlot(old, slot, 0);
    this.#watch?.followUp();
    return { ok: false, message };
  }

  // Both generations serve for --overlap ms. Resolves 'ready' when the overlap ran out, or at once when
  // the old one went away meanwhile (the new one takes over); a new worker exiting is a rollback.
  async #overlap(gen: Generation, old: Generation): Promise<'ready' | string> {
    const oldText = old.live().length > 0 ? `${old.describe()} keeps serving next to it for` : 'overlap of';
    this.#log(`${gen.describe()} is ready; ${oldText} ${this.#o.overlap} ms (--overlap)`);
    let timer: NodeJS.Timeout | undefined;
    const elapsed = new Promise<'ready'>((resolve) => (timer = setTimeout(() => resolve('ready'), this.#o.overlap)));
    const result = await Promise.race([elapsed, gen.failed, old.whenEmpty().then(() => 'ready' as const)]);
    clearTimeout(timer);
    return result === 'ready' ? 'ready' : `${result} during the ${this.#o.overlap} ms overlap`;
  }

  #refuse(source: string, why: string): ReloadResult {
    this.#log(`reload (${source}) refused: ${why}`, 'failure');
    const result = { ok: false, message: `refused: ${why}` };
    this.#refused.add(result);
    return result;
  }

  /** What `fdpass status` prints: generations, their workers, the listeners, the last reload. */
  status(): SupervisorStatus {
    const now = Date.now();
    const generations: GenerationStatus[] = [];
    const cur = this.#current;
    if (cur !== undefined) generations.push(generationStatus(cur, cur.serving ? 'serving' : 'starting', now));
    if (this.#next !== undefined) generations.push(generationStatus(this.#next, 'reload', now));
    if (this.#rollingBack !== undefined) generations.push(generationStatus(this.#rollingBack, 'stopping', now));
    for (const g of this.#old) generations.push(generationStatus(g, 'stopping', now));
    return {
      pid: process.pid,
      command: [this.#o.command, ...this.#o.args],
      uptimeMs: now - this.#startedAt,
      rssBytes: process.memoryUsage.rss(),
      workers: this.#o.workers,
      listeners: this.#o.listeners.map((l) => ({ name: l.name, address: l.describe })),
      generations,
      lastReload: this.#lastReload ?? null,
      stopping: this.#shuttingDown,
      reloadWaiting: this.#waiting,
    };
  }

  // --- watchdog -----------------------------------------------------------------------------

  #startWatchdogs(): void {
    const { upstreamWatchdog, watchdog } = this.#o;
    // Also with neither interval: WATCHDOG=trigger stops a generation whatever WatchdogSec= says, as in systemd.
    this.#watchdogs = new Watchdogs<Worker>({
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
  // delay), SIGKILL of the group after --stop-timeout. It then exits as a failed worker: a serving
  // one is restarted, a reload's new one is rolled back.
  #hung(w: Worker, why: string): void {
    this.#log(`${w.describe()} ${why}: SIGABRT`, 'failure');
    w.killAfter('SIGABRT', this.#o.stopTimeout);
  }

  // EXTEND_TIMEOUT_USEC= of a generation systemd is waiting on (the first start, or a reload's new
  // one): passed up, so that TimeoutStartSec= does not fail the unit meanwhile. --ready-timeout is
  // the supervisor's own limit and is not extended.
  #extendTimeout(w: Worker, value: string): void {
    if (this.#o.upstreamNotify === undefined || w.state !== 'starting') return;
    if (!/^[0-9]{1,16}$/.test(value)) return;
    const gen = this.#generationOf(w);
    if (gen === this.#next || (gen === this.#current && !this.#everReady)) this.#upstream({ extendTimeoutUsec: Number(value) });
  }

  // --- shutdown ------------------------------------------------------------------------------

  #forward(signal: NodeJS.Signals): void {
    for (const w of this.#live) w.kill(signal);
  }

  /** Forwards `signal` to every worker and exits with the serving one's status once all are gone. */
  shutdown(signal: NodeJS.Signals, why: string = signal): void {
    if (this.#shuttingDown) {
      this.#forward(signal); // a second ^C: pass it on too
      return;
    }
    this.#shuttingDown = true;
    this.#log(`${why}: stopping`);
    this.#upstream({ stopping: true });
    for (const g of [this.#current, this.#next]) g?.cancelRestarts();
    this.#watch?.close();
    for (const w of this.#live) this.#stop(w, signal);
    if (this.#live.size === 0) this.#finish();
  }

  #finish(): void {
    if (this.#finishing) return;
    this.#finishing = true;
    // At the start limit, the failing slot's last exit (not the other slots', which were told to stop);
    // else the serving generation's: its first failing worker's in slot order (a failure in any slot
    // shows, as `wait` for every job would), or 0; else the last exit's.
    const served = (this.#current?.workers ?? []).flatMap((w) => (w?.exit === undefined ? [] : [w.exit]));
    const failed = served.find((e) => exitStatus(e) !== 0);
    let status = exitStatus(this.#limitExit ?? failed ?? served[0] ?? this.#lastExit);
    if (this.#limitExit !== undefined && status === 0) status = 1; // giving up is a failure, whatever the last exit
    void this.#killStrays().then(() => {
      this.#release();
      this.#done(status);
    });
  }

  /** The processes the supervisor spawned itself: libuv reaps them, and they are not strays. */
  #ours(): Set<number> {
    return new Set([...[...this.#live].map((w) => w.pid), this.#lifeline?.pid ?? -1]);
  }

  // Once every worker is gone: no process under the supervisor may hold a listener after it exits.
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
