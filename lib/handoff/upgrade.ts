// Self-upgrade (tableflip's model): the running process spawns its successor itself (the same
// program, its path re-resolved from disk, so a symlink swapped to a new release runs the new code)
// and hands it the listeners through the hand-off. The successor is its child, so it lives in the
// same cgroup, and under a Type=notify unit systemd follows it: RELOADING=1 when the upgrade starts,
// MAINPID=<successor> + READY=1 once it is ready. If the successor fails, this process keeps serving,
// says READY=1 again with STATUS= why, and reaps the child.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { debuglog } from 'node:util';
import { asError, emitGuarded } from '../emit';
import { FdpassError } from '../errors';
import { checkPlatform } from '../native';
import { notify } from '../systemd';
import { invalidArgType, invalidArgValue, validateObject } from '../validate';
import { trackConnections } from './connections';
import { isSuccessor } from './inherit';
import { validateListeners, type HandoffListener } from './listeners';
import { pid1Error } from './pid1-check';
import { writePidFile } from './pid-file';
import { serve, type HandoffServer } from './serve';
import { serveTiming, validateOffer, validateServeOptions, type OfferOptions, type ServeOptions } from './serve-options';
import type { MigrationCounts } from './protocol';
import { spawnSuccessor, waitForSuccessor } from './successor';

const debug = debuglog('fdpass');

export interface UpgraderOptions extends Pick<ServeOptions, 'drainTimeout' | 'idleGrace' | 'closeSpread' | 'migrate'> {
  /** Start an upgrade when this signal arrives (e.g. 'SIGHUP'). Default: only upgrade() starts one. */
  signal?: NodeJS.Signals;
  /**
   * The successor's program and arguments. Default: this Node (`process.execPath`) with the same
   * `execArgv` and `argv`: the script path as given (not resolved), so a symlink swapped to a new
   * release is followed when the successor starts.
   */
  command?: string;
  args?: string[];
  /** The successor's environment (default `process.env`) and working directory (default `process.cwd()`). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How long the successor has, from its start to saying ready. Default 30 s. */
  readyTimeout?: number;
  /**
   * Tell systemd about the upgrade (RELOADING=1, then MAINPID= and READY=1, or READY=1 and STATUS= on
   * failure). Default: when `$NOTIFY_SOCKET` is set.
   */
  systemd?: boolean;
  /**
   * A file that names the process serving the listeners (its pid and a newline), for scripts that
   * signal it: written when the upgrader is created, by this process with the successor's pid at the
   * hand-off, again with its own pid when an upgrade fails, and removed when the process it names
   * exits. Each write is atomic (a temporary file renamed over it).
   */
  pidFile?: string;
}

/** What a completed upgrade reports. */
export interface UpgradeResult {
  /** The successor's pid: it now serves the listeners. */
  pid: number;
}

/**
 * Spawns successors on request and hands them the listeners. Events: `'upgrade'` (pid) when one
 * starts, `'upgraded'` (pid) when it serves and this process let go of the listeners, `'failed'`
 * (error, pid) when it did not (this process keeps serving; pid undefined when none was started),
 * `'drained'` when this process's last connection ended after an upgrade (exit then; with `migrate`,
 * its argument is the {@link MigrationCounts}); `'error'` when an `'upgrade'`, `'upgraded'` or
 * `'failed'` handler threw (the upgrade goes on, or a failed one rejects with its own reason; with no
 * `'error'` listener the error is written to stderr instead).
 */
export class Upgrader extends EventEmitter {
  /** Resolves once the listeners were handed to a successor and this process has drained. */
  readonly drained: Promise<void>;
  #listeners: Record<string, HandoffListener>;
  #opts: UpgraderOptions;
  #running: Promise<UpgradeResult> | null = null;
  #done = false;
  #closed = false;
  /** Aborts the running upgrade (set while one runs). */
  #abort: ((err: Error) => void) | undefined;
  #onSignal: (() => void) | undefined;
  #resolveDrained!: () => void;
  #handedOff: HandoffServer | null = null;

  /** @internal Use upgrader(). */
  constructor(listeners: Record<string, HandoffListener>, opts: UpgraderOptions) {
    super();
    this.#listeners = listeners;
    this.#opts = opts;
    this.drained = new Promise((resolve) => (this.#resolveDrained = resolve));
    for (const l of Object.values(listeners)) if (l instanceof net.Server) trackConnections(l);
    if (opts.pidFile !== undefined) {
      // At a first start a path that cannot be written is a configuration error: throw. A successor
      // creates its upgrader once it serves, after its parent let go of the listeners: throwing
      // there would leave nobody serving (the parent already named it in the file, if it could).
      if (isSuccessor()) this.#writePidFile(process.pid);
      else writePidFile(opts.pidFile, process.pid);
    }
    if (opts.signal !== undefined) {
      this.#onSignal = () => {
        // Once handed over, this process only drains: the signal must not kill it (Node's default
        // action would, once no listener is left), so it stays caught until the process exits.
        if (this.#done) return debug('upgrade: %s while draining: ignored', opts.signal);
        this.upgrade().catch((err: Error) => debug('upgrade on %s: %s', opts.signal, err.message));
      };
      process.on(opts.signal, this.#onSignal);
    }
    const refused = pid1Error();
    if (refused !== undefined) process.emitWarning(refused.message, { code: 'ERR_FDPASS_UPGRADE_PID1' });
  }

  /**
   * Moves a connected socket to the successor after an upgrade with `migrate`, as
   * {@link HandoffServer.offer} does (with its outcomes and errors): from the `'upgraded'` event
   * (its handler included) until `'drained'`.
   */
  offer(socket: net.Socket, opts: OfferOptions = {}): Promise<boolean> {
    if (this.#handedOff !== null) return this.#handedOff.offer(socket, opts);
    try {
      validateOffer(socket, opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.reject(
      new FdpassError('ERR_FDPASS_CLOSED', 'no successor is taking connections (offer() works after an upgrade with migrate)'),
    );
  }

  /** True while a successor is starting. */
  get busy(): boolean {
    return this.#running !== null;
  }

  /**
   * Starts a successor and hands it the listeners. Resolves once it serves and this process has let
   * go of them (draining has begun; wait for `drained`, then exit). Rejects when the successor exits,
   * disconnects or is not ready within `readyTimeout` (it is killed and reaped; this process keeps
   * serving), with ERR_FDPASS_HANDOFF_BUSY while another upgrade runs (it is not queued), and with
   * ERR_FDPASS_UPGRADE_PID1 as PID 1 of a pid namespace, or as the child of a PID 1 that is not a
   * known init (this process's exit would kill the successor).
   */
  upgrade(): Promise<UpgradeResult> {
    const err = pid1Error();
    if (err !== undefined) {
      this.#emitFailed(err, undefined);
      return Promise.reject(err);
    }
    if (this.#done) return Promise.reject(new FdpassError('ERR_FDPASS_CLOSED', 'the listeners were already handed to a successor'));
    if (this.#closed) return Promise.reject(new FdpassError('ERR_FDPASS_CLOSED', 'the upgrader was closed'));
    if (this.#running !== null) {
      debug('upgrade: refused, one is already running');
      return Promise.reject(new FdpassError('ERR_FDPASS_HANDOFF_BUSY', 'an upgrade is already in progress'));
    }
    const running = this.#run().finally(() => {
      this.#running = null;
    });
    this.#running = running;
    return running;
  }

  /**
   * Stops listening for the signal, refuses further upgrades and aborts one in progress. Its
   * successor is killed and reaped (this process keeps its listeners), and `upgrade()` rejects with
   * ERR_FDPASS_CLOSED. Resolves
   * once no upgrade runs. Call it when told to stop (SIGTERM), before draining, or a successor
   * starting meanwhile would take over and serve on. It cannot take back an upgrade that completed
   * (`'upgraded'`): the successor serves then. After an upgrade the signal stays ignored until the
   * process exits: a draining process must not die of it.
   */
  close(): Promise<void> {
    this.#closed = true;
    if (!this.#done && this.#onSignal !== undefined) {
      process.off(this.#opts.signal!, this.#onSignal);
      this.#onSignal = undefined;
    }
    const running = this.#running;
    if (running === null) return Promise.resolve();
    this.#abort?.(new FdpassError('ERR_FDPASS_CLOSED', 'the upgrade was aborted: the upgrader was closed'));
    return running.then(
      () => {},
      () => {},
    );
  }

  async #run(): Promise<UpgradeResult> {
    const aborted = new Promise<Error>((resolve) => (this.#abort = resolve));
    try {
      return await this.#runUntil(aborted);
    } finally {
      this.#abort = undefined;
    }
  }

  async #runUntil(aborted: Promise<Error>): Promise<UpgradeResult> {
    const opts = this.#opts;
    const systemd = opts.systemd ?? process.env.NOTIFY_SOCKET !== undefined;
    const tell = (state: Parameters<typeof notify>[0]): Promise<void> =>
      systemd
        ? notify(state).then(
            () => {},
            (err: Error) => debug('upgrade: notify: %s', err.message),
          )
        : Promise.resolve();
    await tell({ reloading: true, status: 'starting a successor' });
    // A private control socket, and only our own child may take from it.
    const control = `@fdpass-upgrade-${process.pid}-${randomBytes(6).toString('hex')}`;
    let child: ChildProcess | undefined;
    const timing = serveTiming(opts);
    const hs = await serve(control, this.#listeners, {
      ...timing,
      allow: (peer) => child !== undefined && peer.pid === child.pid,
    });
    let counts: MigrationCounts | undefined; // emitted with 'drained', just before hs.drained resolves
    hs.once('drained', (c?: MigrationCounts) => (counts = c));
    try {
      if (this.#closed) throw new FdpassError('ERR_FDPASS_CLOSED', 'the upgrade was aborted: the upgrader was closed');
      child = spawnSuccessor(opts, control);
    } catch (err) {
      await hs.close();
      await tell({ ready: true, status: `upgrade failed: ${(err as Error).message}` });
      throw err;
    }
    // readyTimeout is one deadline, from the spawn: the hand-off server keeps it once the successor
    // said hello, waitForSuccessor before.
    const readyTimeout = timing.readyTimeout;
    hs.endAt(Date.now() + readyTimeout);
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child!.once('error', resolve));
      await hs.close();
      await tell({ ready: true, status: `upgrade failed: ${err.message}` });
      throw err;
    }
    debug('upgrade: started successor pid %d', pid);
    // The successor runs on whatever the handler does: one that throws must not end the upgrade
    // here, or nobody would await its take-over (no 'upgraded', no 'drained').
    try {
      this.emit('upgrade', pid);
    } catch (err) {
      this.#report('upgrade', asError(err));
    }
    const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
    const outcome = await waitForSuccessor(hs, child, readyTimeout, aborted);
    if (outcome !== null) {
      // Rollback: the successor is killed and reaped; we keep serving.
      child.kill('SIGKILL');
      await exited;
      await hs.close();
      debug('upgrade: successor %d failed: %s', pid, outcome.message);
      await tell({ ready: true, status: `upgrade failed, still serving: ${outcome.message}` });
      this.#writePidFile(process.pid); // in case the successor had already written its own
      this.#emitFailed(outcome, pid);
      throw outcome;
    }
    this.#done = true;
    child.unref();
    this.#writePidFile(pid);
    await tell({ mainPid: pid, ready: true, status: `handed over to pid ${pid}` });
    // The pid changes at every upgrade: say so when the application does not.
    if (this.listenerCount('upgraded') === 0) sayQuietly(`fdpass: pid ${process.pid} handed over to pid ${pid}\n`);
    // Before 'upgraded': its handler may offer connections, and one that throws must not cost 'drained'.
    this.#handedOff = hs;
    void hs.drained.then(() => {
      this.emit('drained', counts);
      this.#resolveDrained();
    });
    try {
      this.emit('upgraded', pid);
    } catch (err) {
      this.#report('upgraded', asError(err));
    }
    return { pid };
  }

  // upgrade() rejects with why the upgrade failed, whatever a 'failed' listener throws.
  #emitFailed(reason: Error, pid: number | undefined): void {
    try {
      this.emit('failed', reason, pid);
    } catch (err) {
      this.#report('failed', asError(err));
    }
  }

  // The upgrade stands whatever the application's 'upgrade' or 'upgraded' handler does, and a failed
  // one rejects with its own reason whatever 'failed' does: a handler that throws is reported, as
  // 'error' when someone listens, else on stderr. An 'error' listener that throws in turn is uncaught
  // on the next tick, as a listener's throw is.
  #report(event: string, err: Error): void {
    if (this.listenerCount('error') > 0) emitGuarded(this, 'error', err);
    else sayQuietly(`fdpass: the '${event}' handler threw: ${err.stack ?? err.message}\n`);
  }

  // A failed write (e.g. the directory went away) must not fail the upgrade it reports on, nor a
  // successor that already serves.
  #writePidFile(pid: number): void {
    if (this.#opts.pidFile === undefined) return;
    try {
      writePidFile(this.#opts.pidFile, pid);
    } catch (err) {
      debug('upgrade: pid file: %s', (err as Error).message);
    }
  }
}

// A line the library writes unasked must not kill the process (and its in-flight requests) when
// stderr fails: process.stderr.write() would emit EPIPE as an uncaught 'error' once the reader left.
// One write(2) to fd 2; on a non-blocking pipe that is full (EAGAIN) the line is dropped.
function sayQuietly(line: string): void {
  try {
    fs.writeSync(2, line);
  } catch (err) {
    debug('upgrade: stderr: %s', (err as Error).message);
  }
}

/**
 * Makes this process able to replace itself with a successor that takes its listeners. On the signal
 * (or `upgrade()`), it spawns its successor, which calls {@link inherit} to take the listeners,
 * serves, and calls `ready()`; then this process drains and should exit on `'drained'`.
 *
 * @example handoff.upgrader({ http: server }, { signal: 'SIGHUP' })
 */
export function upgrader(listeners: Record<string, HandoffListener>, opts: UpgraderOptions = {}): Upgrader {
  validateListeners(listeners);
  validateObject(opts as unknown, 'options');
  if (opts.signal !== undefined && (typeof opts.signal !== 'string' || !/^SIG[A-Z0-9]+$/.test(opts.signal))) {
    throw invalidArgValue('options.signal', opts.signal, 'must be a signal name such as SIGHUP');
  }
  if (opts.command !== undefined && typeof opts.command !== 'string')
    throw invalidArgType('options.command', 'of type string', opts.command);
  if (opts.args !== undefined && (!Array.isArray(opts.args) || opts.args.some((a) => typeof a !== 'string'))) {
    throw invalidArgType('options.args', 'an array of strings', opts.args);
  }
  if (opts.pidFile !== undefined) {
    if (typeof opts.pidFile !== 'string') throw invalidArgType('options.pidFile', 'of type string', opts.pidFile);
    if (opts.pidFile === '' || opts.pidFile.includes('\0')) {
      throw invalidArgValue('options.pidFile', opts.pidFile, 'must be a non-empty path without NUL bytes');
    }
  }
  validateServeOptions(opts); // they reach serve() only at the upgrade: check them now, not then
  checkPlatform(); // the upgrade is a hand-off: fail here, not after spawning the successor
  return new Upgrader(listeners, opts);
}
