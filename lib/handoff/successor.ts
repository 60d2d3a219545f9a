// A self-upgrade's successor: how it is started (the program, its arguments and environment) and how
// the upgrader waits for it to take the listeners.
import { spawn, type ChildProcess } from 'node:child_process';
import { FdpassError } from '../errors';
import { exitText } from '../exit-status';
import { UPGRADE_SOCKET_ENV } from './inherit';
import type { HandoffServer } from './serve';

/** What to run as the successor (UpgraderOptions' fields of the same names). */
export interface SuccessorCommand {
  command?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Starts the successor, told by UPGRADE_SOCKET_ENV where to take the listeners. Default: this Node
 * with the same execArgv and argv (the script path as given, so a swapped symlink is followed).
 */
export function spawnSuccessor(cmd: SuccessorCommand, control: string): ChildProcess {
  return spawn(cmd.command ?? process.execPath, cmd.args ?? [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit', // the journal or terminal this process writes to; nothing ties the child's life to ours
    env: { ...(cmd.env ?? process.env), [UPGRADE_SOCKET_ENV]: control },
    cwd: cmd.cwd ?? process.cwd(),
  });
}

/**
 * null once the successor is ready (the hand-off completed), else why it failed. At the deadline, one
 * that said hello is the hand-off server's to judge (at the same deadline: hs.endAt()): it may have
 * read 'ready' and be letting go of the listeners, and 'handoff' or 'rollback' follows.
 */
export function waitForSuccessor(
  hs: HandoffServer,
  child: ChildProcess,
  readyTimeout: number,
  aborted: Promise<Error>,
): Promise<Error | null> {
  return new Promise((resolve) => {
    let settled = false;
    let started = false;
    const done = (result: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      hs.off('start', onStart);
      hs.off('handoff', onHandoff);
      hs.off('rollback', onRollback);
      child.off('exit', onExit);
      resolve(result);
    };
    const onStart = (): void => {
      started = true;
    };
    const onHandoff = (): void => done(null);
    const onRollback = (err: Error): void => done(err);
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      done(new FdpassError('ERR_FDPASS_CLOSED', `the successor ${exitText({ code, signal })} before it was ready`));
    const timer = setTimeout(() => {
      if (!started) done(new FdpassError('ERR_FDPASS_TIMEOUT', `the successor was not ready within ${readyTimeout} ms`));
    }, readyTimeout);
    hs.on('start', onStart);
    hs.on('handoff', onHandoff);
    hs.on('rollback', onRollback);
    child.on('exit', onExit);
    void aborted.then(done);
  });
}
