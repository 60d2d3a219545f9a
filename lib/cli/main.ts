#!/usr/bin/env node
// The `fdpass` command (package.json "bin"): `fdpass run ... -- COMMAND`, `fdpass reload TARGET`,
// `fdpass status TARGET`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkPlatform } from '../native';
import { bindListener, closeListeners, inheritedListeners, type Listener } from '../supervisor/listeners';
import { Supervisor } from '../supervisor';
import { requestReload, requestStatus } from '../supervisor/control';
import { formatStatus } from '../supervisor/status';
import type { LogLevel } from '../supervisor/options';
import { watchdogInterval } from '../systemd';
import { parse, USAGE, UsageError, type RunArgs, type StatusArgs } from './args';
import { stderrLog } from './log';

const log = stderrLog(`fdpass run[${process.pid}]: `);

async function run(a: RunArgs): Promise<number> {
  // Before anything is bound: a --watch path that does not exist is the user's typo, not a crash.
  for (const p of a.watch) {
    try {
      fs.statSync(p);
    } catch (err) {
      throw new Error(
        `--watch ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`,
      );
    }
  }
  // A systemd (or another fdpass run) above us: its sockets come first, by name, and its NOTIFY_SOCKET
  // hears about our readiness. Neither is passed down as is.
  const upstreamNotify = process.env.NOTIFY_SOCKET;
  delete process.env.NOTIFY_SOCKET;
  // The unit's watchdog (WatchdogSec=) is the supervisor's to ping; generations get their own.
  const upstreamWatchdog = upstreamNotify ? (watchdogInterval() ?? undefined) : undefined;
  delete process.env.WATCHDOG_USEC;
  delete process.env.WATCHDOG_PID;
  const watchdog = a.watchdog === undefined ? upstreamWatchdog : a.watchdog === 0 ? undefined : a.watchdog;
  const listeners: Listener[] = inheritedListeners();
  try {
    const slots = a.sockets === 'per-worker' ? a.workers : 1;
    for (const spec of a.listen) listeners.push(bindListener(spec, { backlog: a.backlog, mode: a.unixMode, slots }));
  } catch (err) {
    closeListeners(listeners);
    throw err;
  }
  // --quiet: the supervisor says which lines are failures.
  const quietLog = (line: string, level: LogLevel): void => {
    if (!a.quiet || level === 'failure') log(line);
  };
  const sup = new Supervisor({
    command: a.command,
    args: a.args,
    listeners,
    workers: a.workers,
    reloadConcurrency: a.reloadConcurrency,
    readyTimeout: a.readyTimeout,
    ...(a.readyDelay !== undefined ? { readyDelay: a.readyDelay } : {}),
    stopSignal: a.stopSignal,
    stopTimeout: a.stopTimeout,
    overlap: a.overlap,
    fdStoreMax: a.fdStoreMax,
    maxBackoff: a.maxBackoff,
    startLimitBurst: a.startLimitBurst,
    startLimitInterval: a.startLimitInterval,
    ...(a.control !== undefined ? { control: a.control } : {}),
    watch: a.watch,
    watchIgnore: a.watchIgnore,
    watchDelay: a.watchDelay,
    ...(upstreamNotify ? { upstreamNotify } : {}),
    ...(upstreamWatchdog !== undefined ? { upstreamWatchdog } : {}),
    ...(watchdog !== undefined ? { watchdog } : {}),
    env: process.env,
    log: quietLog,
  });
  await sup.start(); // on failure, it has closed the listeners too
  return sup.finished;
}

// Where `run` is in an `fdpass run` process's argv (node, the fdpass script, 'run', ...), or -1.
function runIndex(argv: string[]): number {
  for (let i = 1; i + 1 < argv.length; i++) {
    const script = argv[i]!;
    if (argv[i + 1] === 'run' && (path.basename(script) === 'fdpass' || /(^|\/)cli\/main(\.js)?$/.test(script))) return i + 1;
  }
  return -1;
}

/** A failure of `fdpass CMD`: its reason on stderr, exit status 1. */
class CommandFailed extends Error {}

/**
 * The `fdpass run` process `pid`, read from /proc/PID/cmdline (so that a mistyped pid never reaches some
 * other program), and its --control socket if it has one.
 */
function supervisorAt(pid: number, notDone: string): { control: string | undefined } {
  let argv: string[];
  try {
    argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') throw new CommandFailed(`no process ${pid}`);
    throw new CommandFailed(`cannot read /proc/${pid}/cmdline (${code}): ${notDone}`);
  }
  if (argv.at(-1) === '') argv.pop();
  const run = runIndex(argv);
  if (run < 0) {
    const what = argv.length === 0 ? 'a kernel thread or a zombie' : `'${argv.join(' ').slice(0, 200)}'`;
    throw new CommandFailed(`pid ${pid} is not an fdpass run process (it is ${what}): ${notDone}`);
  }
  let control: string | undefined;
  try {
    const a = parse(argv.slice(run));
    if (a.cmd === 'run' && a.control !== undefined) {
      const c = a.control;
      // A relative path is relative to its working directory, which another user's /proc hides.
      control = c.startsWith('@') || path.isAbsolute(c) ? c : path.resolve(fs.readlinkSync(`/proc/${pid}/cwd`), c);
    }
  } catch {
    // an older fdpass's options, or its cwd is not ours to read
  }
  return { control: control !== undefined && (control.startsWith('@') || !missing(control)) ? control : undefined };
}

// Gone (the supervisor's --control was removed), as opposed to there but not ours to see (EACCES):
// a connect then says why.
function missing(file: string): boolean {
  try {
    fs.statSync(file);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/**
 * `fdpass reload PID`: only an `fdpass run` process is signalled. If it has a --control socket, the
 * reload goes through that and the outcome is reported; otherwise SIGHUP, and the outcome is in its log only.
 */
async function reloadPid(pid: number): Promise<number> {
  const fail = (why: string): number => {
    process.stderr.write(`fdpass reload: ${why}\n`);
    return 1;
  };
  let control: string | undefined;
  try {
    ({ control } = supervisorAt(pid, 'not signalled'));
  } catch (err) {
    if (err instanceof CommandFailed) return fail(err.message);
    throw err;
  }
  if (control !== undefined) return reload(control);
  try {
    process.kill(pid, 'SIGHUP');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(code === 'ESRCH' ? `no process ${pid}` : `cannot signal pid ${pid} (${code})`);
  }
  process.stdout.write(
    `fdpass reload: sent SIGHUP to fdpass run (pid ${pid}); without a --control socket the outcome is only in its log\n`,
  );
  return 0;
}

async function reload(target: string): Promise<number> {
  const r = await requestReload(target);
  if (r === undefined) {
    process.stderr.write('fdpass reload: the supervisor closed the control connection without an answer\n');
    return 1;
  }
  (r.ok ? process.stdout : process.stderr).write(`fdpass reload: ${r.message}\n`);
  return r.ok ? 0 : 1;
}

// Resolves once `text` is written: main() exits right after, and on a pipe the write is asynchronous
// (a status of a few hundred workers is more than a pipe holds). A reader that closed its end (`| head`)
// ends it too (EPIPE), quietly.
function writeOut(text: string): Promise<void> {
  return new Promise((resolve) => {
    process.stdout.once('error', () => resolve());
    process.stdout.write(text, () => resolve());
  });
}

/** `fdpass status TARGET [--json]`: through the control socket (of pid TARGET's command line). */
async function status(a: StatusArgs): Promise<number> {
  let target = a.target;
  try {
    if (a.pid !== undefined) {
      const { control } = supervisorAt(a.pid, 'not asked');
      if (control === undefined) throw new CommandFailed(`fdpass run (pid ${a.pid}) has no --control socket to ask`);
      target = control;
    }
    const s = await requestStatus(target).catch((err: NodeJS.ErrnoException) => {
      throw new CommandFailed(`cannot reach the control socket ${target}: ${err.code ?? err.message}`);
    });
    if (s === undefined) throw new CommandFailed('the supervisor closed the control connection without an answer');
    if (!Array.isArray(s.generations))
      throw new CommandFailed(`the supervisor answered: ${(s as { message?: string }).message ?? 'no status'}`);
    await writeOut(a.json ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof CommandFailed)) throw err;
    process.stderr.write(`fdpass status: ${err.message}\n`);
    return 1;
  }
}

async function main(argv: string[]): Promise<number> {
  const a = parse(argv);
  switch (a.cmd) {
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case 'version': {
      const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
      process.stdout.write(`fdpass ${pkg.version}\n`);
      return 0;
    }
    case 'reload':
      checkPlatform();
      return a.pid !== undefined ? reloadPid(a.pid) : reload(a.target);
    case 'status':
      checkPlatform();
      return status(a);
    case 'run':
      checkPlatform(); // before binding a listener or spawning the command
      return run(a);
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
    // Nothing of ours should hold the loop open now; exit anyway, e.g. past a stuck stdout.
    setImmediate(() => process.exit(status));
  },
  (err: Error) => {
    if (err instanceof UsageError) {
      process.stderr.write(`fdpass: ${err.message}\nTry 'fdpass --help'.\n`);
      process.exit(2);
    }
    process.stderr.write(`fdpass: ${err.message}\n`);
    process.exit(1);
  },
);
