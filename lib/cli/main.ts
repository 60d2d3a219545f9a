#!/usr/bin/env node
// The `fdpass` command (package.json "bin"): `fdpass run ... -- COMMAND`, `fdpass reload TARGET`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { connect } from '../endpoints';
import { checkPlatform } from '../native';
import { bindListener, closeListeners, inheritedListeners, type Listener } from '../supervisor/listeners';
import { Supervisor } from '../supervisor';
import { watchdogInterval } from '../systemd';
import { parse, USAGE, UsageError, type RunArgs } from './args';

function log(line: string): void {
  process.stderr.write(`fdpass run[${process.pid}]: ${line}\n`);
}

async function run(a: RunArgs): Promise<number> {
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
    for (const spec of a.listen) listeners.push(bindListener(spec, { backlog: a.backlog, mode: a.unixMode }));
  } catch (err) {
    closeListeners(listeners);
    throw err;
  }
  const quietLog = (line: string): void => {
    if (!a.quiet || /fail|refused|killed|exited|not ready|ignored|SIGKILL|SIGABRT|no longer/.test(line)) log(line);
  };
  const sup = new Supervisor({
    command: a.command,
    args: a.args,
    listeners,
    readyTimeout: a.readyTimeout,
    ...(a.readyDelay !== undefined ? { readyDelay: a.readyDelay } : {}),
    stopSignal: a.stopSignal,
    stopTimeout: a.stopTimeout,
    overlap: a.overlap,
    fdStoreMax: a.fdStoreMax,
    maxBackoff: a.maxBackoff,
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
  await sup.start();
  return sup.finished;
}

async function reload(target: string): Promise<number> {
  if (/^\d+$/.test(target)) {
    process.kill(Number(target), 'SIGHUP');
    return 0;
  }
  const ch = await connect(target, { type: 'seqpacket' });
  try {
    await ch.send({ data: Buffer.from('reload') });
    for await (const m of ch) {
      const r = JSON.parse(m.data.toString('utf8')) as { ok: boolean; message: string };
      (r.ok ? process.stdout : process.stderr).write(`fdpass reload: ${r.message}\n`);
      return r.ok ? 0 : 1;
    }
    process.stderr.write('fdpass reload: the supervisor closed the control connection without an answer\n');
    return 1;
  } finally {
    ch.close();
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
      return reload(a.target);
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
