// Self-upgrade (tableflip's model): the running process spawns its successor itself (the same
// program, its path re-resolved from disk, so a symlink swapped to a new release runs the new code)
// and hands it the listeners through the hand-off. The successor is its child, so it lives in the
// same cgroup, and under a Type=notify unit systemd follows it: RELOADING=1 when the upgrade starts,
// MAINPID=<successor> + READY=1 once it is ready. If the successor fails, this process keeps serving,
// says READY=1 again with STATUS= why, and reaps the child.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { debuglog } from 'node:util';
import { FdpassError } from '../errors';
import { checkPlatform } from '../native';
import { notify } from '../systemd';
import { invalidArgType, invalidArgValue, validateObject } from '../validate';
import { serve, validateListeners, validateServeOptions, type HandoffListener, type HandoffServer, type ServeOptions } from './serve';
import { take, type Inheritance, type TakeOptions } from './take';

const debug = debuglog('fdpass');

/** The environment variable that tells a successor where its parent offers the listeners. */
export const UPGRADE_SOCKET_ENV = 'FDPASS_UPGRADE_SOCKET';

/**
 * In a process started by an upgrade: takes the listeners its parent offers (see {@link Upgrader}).
 * Resolves with null when this process was not started by an upgrade (first start: bind fresh), or
 * when the parent is gone. The variable is removed from the environment, so this process's own
 * children do not take it for theirs.
 */
export async function inherit(opts: TakeOptions = {}): Promise<Inheritance | null> {
  const path = process.env[UPGRADE_SOCKET_ENV];
  if (path === undefined) return null;
  delete process.env[UPGRADE_SOCKET_ENV];
  return take(path, opts);
}

export interface UpgraderOptions extends Pick<ServeOptions, 'drainTimeout' | 'idleGrace' | 'closeSpread'> {
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
}

/** What a completed upgrade reports. */
export interface UpgradeResult {
  /** The successor's pid: it now serves the listeners. */
  pid: number;
}

/**
 * Spawns successors on request and hands them the listeners. Events: `'upgrade'` (pid) when one
 * starts, `'upgraded'` (pid) when it serves and this process let go of the listeners, `'failed'`
 * (error, pid) when it did not (this process keeps serving), `'drained'` when this process's last
 * connection ended after an upgrade (exit then).
 */
export class Upgrader extends EventEmitter {
  /** Resolves once the listeners were handed to a successor and this process has drained. */
  readonly drained: Promise<void>;
  #listeners: Record<string, HandoffListener>;
  #opts: UpgraderOptions;
  #running: Promise<UpgradeResult> | null = null;
  #done = false;
  #onSignal: (() => void) | undefined;
  #resolveDrained!: () => void;

  /** @internal Use upgrader(). */
  constructor(listeners: Record<string, HandoffListener>, opts: UpgraderOptions) {
    super();
    this.#listeners = listeners;
    this.#opts = opts;
    this.drained = new Promise((resolve) => (this.#resolveDrained = resolve));
    if (opts.signal !== undefined) {
      this.#onSignal = () => {
        this.upgrade().catch((err: Error) => debug('upgrade on %s: %s', opts.signal, err.message));
      };
      process.on(opts.signal, this.#onSignal);
    }
  }

  /** True while a successor is starting. */
  get busy(): boolean {
    return this.#running !== null;
  }

  /**
   * Starts a successor and hands it the listeners. Resolves once it serves and this process has let
   * go of them (draining has begun; wait for `drained`, then exit). Rejects when the successor exits,
   * disconnects or is not ready within `readyTimeout` (it is killed and reaped; this process keeps
   * serving), and with ERR_FDPASS_HANDOFF_BUSY while another upgrade runs (it is not queued).
   */
  upgrade(): Promise<UpgradeResult> {
    if (this.#done) return Promise.reject(new FdpassError('ERR_FDPASS_CLOSED', 'the listeners were already handed to a successor'));
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

  /** Stops listening for the signal. An upgrade in progress goes on. */
  close(): void {
    if (this.#onSignal !== undefined) process.off(this.#opts.signal!, this.#onSignal);
    this.#onSignal = undefined;
  }

  async #run(): Promise<UpgradeResult> {
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
    const hs = await serve(control, this.#listeners, {
      readyTimeout: opts.readyTimeout ?? 30_000,
      ...(opts.drainTimeout !== undefined ? { drainTimeout: opts.drainTimeout } : {}),
      ...(opts.idleGrace !== undefined ? { idleGrace: opts.idleGrace } : {}),
      ...(opts.closeSpread !== undefined ? { closeSpread: opts.closeSpread } : {}),
      allow: (peer) => child !== undefined && peer.pid === child.pid,
    });
    try {
      child = spawn(opts.command ?? process.execPath, opts.args ?? [...process.execArgv, ...process.argv.slice(1)], {
        stdio: 'inherit', // the journal or terminal this process writes to; nothing ties the child's life to ours
        env: { ...(opts.env ?? process.env), [UPGRADE_SOCKET_ENV]: control },
        cwd: opts.cwd ?? process.cwd(),
      });
    } catch (err) {
      await hs.close();
      await tell({ ready: true, status: `upgrade failed: ${(err as Error).message}` });
      throw err;
    }
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child!.once('error', resolve));
      await hs.close();
      await tell({ ready: true, status: `upgrade failed: ${err.message}` });
      throw err;
    }
    debug('upgrade: started successor pid %d', pid);
    this.emit('upgrade', pid);
    const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
    const outcome = await waitForSuccessor(hs, child, opts.readyTimeout ?? 30_000);
    if (outcome !== null) {
      // Rollback: the successor is killed and reaped; we keep serving.
      child.kill('SIGKILL');
      await exited;
      await hs.close();
      debug('upgrade: successor %d failed: %s', pid, outcome.message);
      await tell({ ready: true, status: `upgrade failed, still serving: ${outcome.message}` });
      this.emit('failed', outcome, pid);
      throw outcome;
    }
    this.#done = true;
    this.close();
    child.unref();
    await tell({ mainPid: pid, ready: true, status: `handed over to pid ${pid}` });
    this.emit('upgraded', pid);
    void hs.drained.then(() => {
      this.emit('drained');
      this.#resolveDrained();
    });
    return { pid };
  }
}

// null once the successor is ready (the hand-off completed), else why it failed.
function waitForSuccessor(hs: HandoffServer, child: ChildProcess, readyTimeout: number): Promise<Error | null> {
  return new Promise((resolve) => {
    const done = (result: Error | null): void => {
      clearTimeout(timer);
      hs.off('handoff', onHandoff);
      hs.off('rollback', onRollback);
      child.off('exit', onExit);
      resolve(result);
    };
    const onHandoff = (): void => done(null);
    const onRollback = (err: Error): void => done(err);
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      done(new FdpassError('ERR_FDPASS_CLOSED', `the successor exited (${signal ?? `code ${code}`}) before it was ready`));
    const timer = setTimeout(
      () => done(new FdpassError('ERR_FDPASS_TIMEOUT', `the successor was not ready within ${readyTimeout} ms`)),
      readyTimeout,
    );
    hs.on('handoff', onHandoff);
    hs.on('rollback', onRollback);
    child.on('exit', onExit);
  });
}

/**
 * Makes this process able to replace itself: `upgrader({ http: server }, { signal: 'SIGHUP' })`.
 * On the signal (or `upgrade()`), it spawns its successor, which calls {@link inherit} to take the
 * listeners, serves, and calls `ready()`; then this process drains and should exit on `'drained'`.
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
  validateServeOptions(opts); // they reach serve() only at the upgrade: check them now, not then
  checkPlatform(); // the upgrade is a hand-off: fail here, not after spawning the successor
  return new Upgrader(listeners, opts);
}
