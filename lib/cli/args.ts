// The `fdpass` command line: parsed here with util.parseArgs, apart from the supervisor itself.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import type { ListenerSpec } from '../supervisor/listeners';
import { parseListenerSpec } from './listen-spec';
import type { SupervisorOptions } from '../supervisor/options';
import { validateIgnorePattern } from '../supervisor/watch-ignore';

/** How a generation's workers share a TCP/UDP listener (--sockets). */
export type SocketSharing = 'shared' | 'per-worker';

export const USAGE = `Usage:
  fdpass run [-l [NAME=]ADDRESS]... [OPTIONS] -- COMMAND [ARG]...
  fdpass reload PID|CONTROL_PATH
  fdpass status [--json] PID|CONTROL_PATH
  fdpass --help | --version

fdpass run binds each listener once and runs COMMAND with them as systemd socket activation does:
fds 3, 4, ... in the order given, LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID (the command's own pid),
and NOTIFY_SOCKET. A worker is ready when it sends READY=1 (sd_notify, systemd-notify --ready,
fdpass notify()). SIGHUP, \`fdpass reload\` or a --watch change starts the next generation next to the
old one; the old one gets the stop signal only once every new worker is ready, and if one fails the
new generation is stopped and the old one serves on. The listeners never close.
If fdpass run itself was socket-activated (LISTEN_FDS for its pid), those listeners are passed on
by name, ahead of any --listen.

Listeners:
  -l, --listen [NAME=]ADDRESS   repeatable; NAME goes to LISTEN_FDNAMES (default "unknown")
      HOST:PORT, tcp:HOST:PORT  TCP; IPv6 in brackets: [::1]:8080; port 0 picks a free port
      udp:HOST:PORT             UDP
      unix:PATH, /PATH, ./PATH  Unix stream socket, mode --unix-mode; unix:@NAME is abstract
      --backlog N               listen(2) backlog (default 511)
      --unix-mode OCTAL         permission bits of Unix socket files (default 600, owner only)

Workers:
  -n, --workers N|auto          processes per generation (default 1; auto: one per CPU). Each gets
                                FDPASS_WORKER (its slot, 0 to N-1) and FDPASS_WORKERS (N); one that
                                exits is restarted in its slot while the others serve
      --sockets shared|per-worker
                                shared: every worker accepts from one socket per listener;
                                per-worker: each TCP/UDP listener is N SO_REUSEPORT sockets, one per
                                slot, kept across reloads; the kernel spreads connections by a
                                hash of the client's address (Unix and inherited listeners stay
                                shared) (default shared)
      --reload-concurrency N    a reload starts at most N workers at a time (default: half the CPUs)

Readiness and reloads:
      --ready-timeout SECONDS   a worker not ready by then is killed (default 60)
      --ready-delay SECONDS     for programs that cannot notify: ready after this long (second best)
      --stop-signal SIGNAL      sent to the old generation once the new one is ready (default SIGTERM)
      --stop-timeout SECONDS    then SIGKILL to its process group (default 30)
      --overlap SECONDS         after the new generation is ready, let the old one serve next to
                                it this long before the stop signal, while the new one warms up
                                (default 0); the new one exiting meanwhile is a rollback
      --max-backoff SECONDS     crash restarts back off up to this (default 10)
      --start-limit-burst N     give up when the command would start an (N+1)th time within
                                --start-limit-interval: stop and exit non-zero (default 5; 0: never)
      --start-limit-interval SECONDS
                                that window (default 10; 0: no limit), as systemd's
                                StartLimitBurst= and StartLimitIntervalSec=
      --fd-store-max N          keep up to N descriptors that generations store with FDSTORE=1
                                (sd_pid_notify_with_fds, fdpass storeFds()) and pass them to the
                                next generations after the listeners, by FDNAME (default 0: off,
                                as systemd's FileDescriptorStoreMax=)
      --control PATH            a Unix socket (owner-only) for \`fdpass reload PATH\`
      --watchdog SECONDS        each generation gets WATCHDOG_USEC (sd_watchdog_enabled); once
                                ready, one that sends no WATCHDOG=1 for that long hangs: it gets
                                SIGABRT and is replaced (default: the unit's WatchdogSec= under
                                systemd, else off; 0: off)
  -w, --watch PATH              repeatable; reload when a file under PATH changes (development)
      --watch-ignore GLOB       repeatable; changes matching GLOB do not reload: without '/' it
                                matches any path component ('*.log', 'dist'), with '/' the path
                                under the watched directory ('src/gen/**'); node_modules and .git
                                are always ignored
      --watch-delay MS          quiet time after a change before reloading (default 200)
  -q, --quiet                   log only failures

fdpass status asks a running fdpass run (by its --control path, or its pid if it has one) for its
generations, workers (slot, pid, state, uptime, restarts, memory, CPU), listeners and last reload;
--json prints it as JSON.

Signals: HUP reloads; TERM, INT, QUIT are forwarded to the command and fdpass run exits with its
status once it has exited; USR2 and WINCH are forwarded.
Exit status: the command's (128+N if killed by signal N); at the start limit, the last start's
(127: the command was not found; 1 if it exited 0); 2 for a usage error.`;

/** `fdpass run`'s arguments: the supervisor's options as parsed, plus what only the command line has. */
export interface RunArgs extends Pick<
  SupervisorOptions,
  | 'command'
  | 'args'
  | 'readyTimeout'
  | 'readyDelay'
  | 'stopSignal'
  | 'stopTimeout'
  | 'overlap'
  | 'fdStoreMax'
  | 'maxBackoff'
  | 'startLimitBurst'
  | 'startLimitInterval'
  | 'control'
  | 'watch'
  | 'watchIgnore'
  | 'watchDelay'
> {
  cmd: 'run';
  listen: ListenerSpec[];
  workers: number;
  reloadConcurrency: number;
  sockets: SocketSharing;
  backlog: number;
  unixMode: number;
  quiet: boolean;
  /** --watchdog in µs (0: off); undefined: the unit's WatchdogSec=, if any. */
  watchdog?: number;
}

/** `fdpass reload`: a pid (a number) or a control socket's path. */
export interface ReloadArgs {
  cmd: 'reload';
  target: string;
  pid: number | undefined;
}

/** `fdpass status`: as reload's target, and --json. */
export interface StatusArgs {
  cmd: 'status';
  target: string;
  pid: number | undefined;
  json: boolean;
}

export type Parsed = RunArgs | ReloadArgs | StatusArgs | { cmd: 'help' } | { cmd: 'version' };

/** A usage error: printed with a pointer to --help, exit status 2. */
export class UsageError extends Error {}

// Each worker is a process and, with --sockets per-worker, a socket per listener in the supervisor.
const MAX_WORKERS = 1024;

function seconds(value: string | undefined, name: string, dflt: number, min = 0): number {
  if (value === undefined) return dflt;
  // Decimal only: Number() would also take '0x10', '1e1', ' 5 ' and 'Infinity'.
  const n = Number(value);
  if (!/^(\d+\.?\d*|\.\d+)$/.test(value) || n < min || n > 2_000_000)
    throw new UsageError(`--${name}: '${value}' is not a number of seconds`);
  return Math.round(n * 1000);
}

function integer(value: string | undefined, name: string, dflt: number, min: number, max: number, radix = 10): number {
  if (value === undefined) return dflt;
  const re = radix === 8 ? /^[0-7]{1,4}$/ : /^\d+$/;
  if (!re.test(value)) throw new UsageError(`--${name}: '${value}' is not ${radix === 8 ? 'an octal mode' : 'a whole number'}`);
  const n = parseInt(value, radix);
  const shown = radix === 8 ? (x: number): string => x.toString(8).padStart(4, '0') : String;
  if (n < min || n > max) throw new UsageError(`--${name}: '${value}' is out of range (${shown(min)} to ${shown(max)})`);
  return n;
}

function signal(value: string | undefined): NodeJS.Signals {
  if (value === undefined) return 'SIGTERM';
  const name = (value.toUpperCase().startsWith('SIG') ? value.toUpperCase() : `SIG${value.toUpperCase()}`) as NodeJS.Signals;
  if (!(name in os.constants.signals)) throw new UsageError(`--stop-signal: unknown signal '${value}'`);
  return name;
}

function pidMax(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'latin1').trim()) || 4_194_304;
  } catch {
    return 4_194_304; // PID_MAX_LIMIT on 64-bit
  }
}

// A number is a pid, and only 1..pid_max is one: kill(0) would signal the caller's own process group,
// a negative pid a whole group, -1 every process we may signal.
function reloadPid(target: string): number | undefined {
  if (!/^[-+]?\d+$/.test(target)) return undefined;
  const pid = Number(target);
  const max = pidMax();
  if (!Number.isSafeInteger(pid) || pid < 1 || pid > max)
    throw new UsageError(`reload: '${target}' is not a process id (1 to ${max}); a control path that looks like a number: ./${target}`);
  return pid;
}

// `fdpass run`'s options, as parseArgs takes them.
const RUN_OPTIONS = {
  listen: { type: 'string', short: 'l', multiple: true },
  workers: { type: 'string', short: 'n' },
  sockets: { type: 'string' },
  'reload-concurrency': { type: 'string' },
  backlog: { type: 'string' },
  'unix-mode': { type: 'string' },
  'ready-timeout': { type: 'string' },
  'ready-delay': { type: 'string' },
  'stop-signal': { type: 'string' },
  'stop-timeout': { type: 'string' },
  overlap: { type: 'string' },
  'max-backoff': { type: 'string' },
  'start-limit-burst': { type: 'string' },
  'start-limit-interval': { type: 'string' },
  'fd-store-max': { type: 'string' },
  control: { type: 'string' },
  watch: { type: 'string', short: 'w', multiple: true },
  'watch-ignore': { type: 'string', multiple: true },
  'watch-delay': { type: 'string' },
  watchdog: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

// Levenshtein distance: how many one-character edits make a into b.
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

// For an option parseArgs does not know: the closest known one when it is a likely typo, else parseArgs'
// message (which says where a command's own options go).
function unknownOption(err: Error): string {
  const given = /^Unknown option '--([^'=]+)/.exec(err.message)?.[1];
  if (given === undefined) return err.message;
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(given.length / 3)) + 1;
  for (const known of Object.keys(RUN_OPTIONS)) {
    const d = editDistance(given, known);
    if (d < bestDistance) [best, bestDistance] = [known, d];
  }
  return best === undefined ? err.message : `unknown option '--${given}': did you mean --${best}?`;
}

export function parse(argv: string[]): Parsed {
  if (argv.length === 0) throw new UsageError('a command is required: run, reload or status');
  const [sub, ...rest] = argv;
  if (sub === '-h' || sub === '--help' || sub === 'help') return { cmd: 'help' };
  if (sub === '--version' || sub === '-V') return { cmd: 'version' };
  if (sub === 'reload') {
    if (rest.includes('-h') || rest.includes('--help')) return { cmd: 'help' };
    if (rest.length !== 1) throw new UsageError("reload takes one argument: the supervisor's pid or its --control path");
    return { cmd: 'reload', target: rest[0]!, pid: reloadPid(rest[0]!) };
  }
  if (sub === 'status') {
    if (rest.includes('-h') || rest.includes('--help')) return { cmd: 'help' };
    const json = rest.includes('--json');
    const targets = rest.filter((a) => a !== '--json');
    if (targets.length !== 1 || targets[0]!.startsWith('-'))
      throw new UsageError("status takes one argument, the supervisor's pid or its --control path, and --json");
    return { cmd: 'status', target: targets[0]!, pid: reloadPid(targets[0]!), json };
  }
  if (sub !== 'run') throw new UsageError(`unknown command '${sub}'`);
  // biome-ignore lint/suspicious/noImplicitAnyLet: typed by parseArgs' result in the assignment below
  let values;
  // biome-ignore lint/suspicious/noImplicitAnyLet: as values
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: RUN_OPTIONS,
    }));
  } catch (err) {
    const e = err as Error & { code?: string };
    throw new UsageError(e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? unknownOption(e) : e.message);
  }
  if (values.help) return { cmd: 'help' };
  if (positionals.length === 0) throw new UsageError('run needs a command after --');
  let listen: ListenerSpec[];
  try {
    listen = (values.listen ?? []).map(parseListenerSpec);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const watchIgnore = values['watch-ignore'] ?? [];
  if (watchIgnore.length > 0 && (values.watch ?? []).length === 0) throw new UsageError('--watch-ignore needs --watch');
  try {
    watchIgnore.forEach(validateIgnorePattern);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const watchdog = values.watchdog === undefined ? undefined : seconds(values.watchdog, 'watchdog', 0) * 1000;
  if (watchdog === 0 && Number(values.watchdog) !== 0) throw new UsageError(`--watchdog: '${values.watchdog}' is under a millisecond`);
  const workers = values.workers === 'auto' ? os.availableParallelism() : integer(values.workers, 'workers', 1, 1, MAX_WORKERS);
  const sockets = values.sockets ?? 'shared';
  if (sockets !== 'shared' && sockets !== 'per-worker') throw new UsageError(`--sockets: '${sockets}' is not shared or per-worker`);
  const reloadConcurrency = integer(
    values['reload-concurrency'],
    'reload-concurrency',
    Math.max(1, Math.floor(os.availableParallelism() / 2)),
    1,
    MAX_WORKERS,
  );
  const readyDelay = values['ready-delay'] === undefined ? undefined : seconds(values['ready-delay'], 'ready-delay', 0);
  return {
    cmd: 'run',
    listen,
    workers,
    reloadConcurrency,
    sockets,
    command: positionals[0]!,
    args: positionals.slice(1),
    backlog: integer(values.backlog, 'backlog', 511, 0, 65535),
    unixMode: integer(values['unix-mode'], 'unix-mode', 0o600, 0, 0o777, 8),
    readyTimeout: seconds(values['ready-timeout'], 'ready-timeout', 60_000, 0.001),
    ...(readyDelay !== undefined ? { readyDelay } : {}),
    stopSignal: signal(values['stop-signal']),
    stopTimeout: seconds(values['stop-timeout'], 'stop-timeout', 30_000),
    overlap: seconds(values.overlap, 'overlap', 0),
    fdStoreMax: integer(values['fd-store-max'], 'fd-store-max', 0, 0, 4096),
    maxBackoff: seconds(values['max-backoff'], 'max-backoff', 10_000),
    startLimitBurst: integer(values['start-limit-burst'], 'start-limit-burst', 5, 0, 1_000_000),
    startLimitInterval: seconds(values['start-limit-interval'], 'start-limit-interval', 10_000),
    ...(values.control !== undefined ? { control: values.control } : {}),
    watch: values.watch ?? [],
    watchIgnore,
    watchDelay: integer(values['watch-delay'], 'watch-delay', 200, 0, 600_000),
    quiet: values.quiet === true,
    ...(watchdog !== undefined ? { watchdog } : {}),
  };
}
