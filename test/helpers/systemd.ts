// A real systemd as PID 1 for tests: booted in fresh pid+mount namespaces (`unshare --pid --fork
// --mount --mount-proc`, as root) with tmpfs on /tmp, /var/tmp and /run (systemd-tmpfiles would
// otherwise empty the host's /tmp), an empty target as its default unit, and the host's network.
// Units go into that namespace's /run/systemd/system; systemctl runs there through nsenter. stop()
// ends it by SIGKILL of its host pid, which ends every process of the namespace; `--kill-child`
// does the same should the unshare process be killed first (e.g. by the root hooks' reaper).
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { watchJson, type Fixture } from './children';
import { bootableSystemd, requires } from './requires';

// Units of sysinit.target and timers that touch the host; masked in the test systemd (see below).
const MASKED_UNITS = [
  'systemd-sysctl.service',
  'systemd-binfmt.service',
  'proc-sys-fs-binfmt_misc.automount',
  'proc-sys-fs-binfmt_misc.mount',
  'systemd-modules-load.service',
  'systemd-sysusers.service',
  'systemd-firstboot.service',
  'systemd-machine-id-commit.service',
  'systemd-random-seed.service',
  'systemd-repart.service',
  'systemd-pcrphase-sysinit.service',
  'systemd-pcrphase.service',
  'systemd-update-utmp.service',
  'systemd-journal-flush.service',
  'systemd-tmpfiles-setup.service',
  'systemd-tmpfiles-setup-dev.service',
  'systemd-tmpfiles-clean.timer',
  'kmod-static-nodes.service',
  'ldconfig.service',
  'systemd-hwdb-update.service',
  'systemd-timesyncd.service',
  'systemd-udevd.service',
  'systemd-udev-trigger.service',
  'systemd-boot-update.service',
  'e2scrub_all.timer',
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'fstrim.timer',
  'man-db.timer',
  'logrotate.timer',
  'dpkg-db-backup.timer',
].join(' ');

// The checkout: the test services run its compiled fixtures and write reports into it.
const REPO = path.resolve(__dirname, '..', '..', '..');

const BOOT_SCRIPT = `
set -e
mount --make-rprivate /
# The checkout (fixtures, reports) may itself live under /tmp (CI clones anywhere): hold it open and
# bind it back over the fresh tmpfs, so services in the namespace see the same files.
exec 9< "$FDPASS_REPO"
# (--no-canonicalize: mount would resolve /proc/self/fd/9 to its path name, by then the empty one on
# the tmpfs.)
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
if [ ! -d "$FDPASS_REPO" ]; then mkdir -p "$FDPASS_REPO" && mount --no-canonicalize --bind /proc/self/fd/9 "$FDPASS_REPO"; fi
exec 9<&-
[ -d /var/log/journal ] && mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
mkdir -p /run/systemd/system
# The network (and so net.* sysctls), the host's /etc, /var and /proc/sys are shared with this
# namespace: mask every early-boot unit that would write to them (systemd-sysctl set the host's
# net.unix.max_dgram_qlen from 10 to 512; sysusers, binfmt, random-seed, ldconfig, journal-flush...).
for unit in ${MASKED_UNITS}; do ln -sf /dev/null "/run/systemd/system/$unit"; done
printf '[Unit]\\nDescription=fdpass test target\\n' > /run/systemd/system/fdpass-test.target
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin container=other /lib/systemd/systemd --system --unit=fdpass-test.target
`;

/** Skips (CI: fails) the suite where no test systemd can boot: helpers/requires.ts's rule. */
export function requireNamespaces(ctx: Mocha.Context): void {
  requires(ctx, bootableSystemd());
}

function run(file: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, stdout, stderr: err !== null && code === -1 ? `${stderr}${err.message}` : stderr });
    });
  });
}

function childPid(parent: number): number | undefined {
  try {
    const pids = fs.readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return pids.length > 0 ? Number(pids[0]) : undefined;
  } catch {
    return undefined;
  }
}

function comm(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function pidNamespace(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** Host pids of every process in the pid namespace `ns`. */
export function processesIn(ns: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    if (pidNamespace(Number(name)) === ns) out.push(Number(name));
  }
  return out;
}

/** The host pid of the process that is `nsPid` in the pid namespace `ns`, or undefined if none is. */
export function hostPidIn(ns: string, nsPid: number): number | undefined {
  // NSpid: its pid in each namespace it is in, the host's first and the innermost last.
  return processesIn(ns).find((p) => {
    try {
      const line = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))?.[1];
      return line !== undefined && Number(line.trim().split(/\s+/).pop()) === nsPid;
    } catch {
      return false;
    }
  });
}

export interface TestSystemd {
  /** systemd's pid on the host. */
  pid: number;
  /** The pid namespace it is PID 1 of (readlink of /proc/<pid>/ns/pid). */
  namespace: string;
  /** Runs systemctl in the namespace; rejects (with its output) when it exits non-zero. */
  systemctl(...args: string[]): Promise<string>;
  /** Runs systemctl in the namespace and returns its exit code and output, whatever they are. */
  systemctlStatus(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Runs a command in the namespace (its mounts and pids, as systemctl), with its exit code and output. */
  exec(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Writes a unit (or a drop-in, name 'x.service.d/y.conf') into the namespace's /run/systemd/system. */
  writeUnit(name: string, text: string): void;
  /** The unit's journal, for failure messages. */
  journal(unit: string): Promise<string>;
  /** Host pids of the namespace's processes other than systemd itself (and its own journald). */
  others(): number[];
  /** The host pid of the namespace's process `nsPid` (e.g. a MainPID), or undefined if it is gone. */
  hostPid(nsPid: number): number | undefined;
  /** SIGKILL of systemd (ending the namespace), then waits for unshare to exit. Idempotent. */
  stop(): Promise<void>;
}

// systemd as PID 1 raises these at start whatever is masked (core/main.c: bump_unix_max_dgram_qlen,
// bump_file_max_and_nr_open); they are not namespaced, so stop() puts the host's values back.
const HOST_SYSCTLS = ['/proc/sys/net/unix/max_dgram_qlen', '/proc/sys/fs/file-max', '/proc/sys/fs/nr_open'];

function saveSysctls(): () => void {
  const saved = HOST_SYSCTLS.map((file) => [file, fs.readFileSync(file, 'utf8')] as const);
  return () => {
    for (const [file, value] of saved) {
      if (fs.readFileSync(file, 'utf8') !== value) fs.writeFileSync(file, value);
    }
  };
}

function withoutPreload(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy.LD_PRELOAD;
  return copy;
}

/** Boots systemd as PID 1 in new namespaces and waits (bounded) until it is running. */
export async function bootSystemd(timeoutMs = 20_000): Promise<TestSystemd> {
  const restoreSysctls = saveSysctls();
  const proc = spawn('unshare', ['--pid', '--fork', '--kill-child=SIGKILL', '--mount', '--mount-proc', '/bin/sh', '-c', BOOT_SCRIPT], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Without the sanitizer preload of npm run test:asan: the boot script's own tools need none, and
    // under it the checkout was not bound back (services failed with MODULE_NOT_FOUND).
    env: { ...withoutPreload(process.env), FDPASS_REPO: REPO },
  });
  const fixture: Fixture = watchJson(proc);
  const deadline = Date.now() + timeoutMs;
  let pid: number | undefined;
  while (Date.now() < deadline) {
    const c = childPid(proc.pid!);
    if (c !== undefined && comm(c) === 'systemd') {
      pid = c;
      break;
    }
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const stop = async (): Promise<void> => {
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (proc.exitCode === null && proc.signalCode === null) {
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await fixture.exited;
      clearTimeout(timer);
    }
    restoreSysctls();
  };
  if (pid === undefined) {
    await stop();
    throw new Error(`systemd did not start within ${timeoutMs} ms: ${fixture.stderr()}`);
  }
  const sdPid = pid;
  const ns = pidNamespace(sdPid)!;
  const nsenter = (args: string[], ms?: number) => run('nsenter', ['-t', String(sdPid), '-m', '-p', ...args], ms);
  const systemctlStatus = (...args: string[]) => nsenter(['systemctl', '--no-pager', ...args]);
  const systemctl = async (...args: string[]): Promise<string> => {
    const r = await systemctlStatus(...args);
    if (r.code !== 0) throw new Error(`systemctl ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  // Bounded wait for the boot to finish ('degraded' is up too). Until systemd has made its private
  // bus socket, systemctl fails to connect: ask again.
  let up = '';
  let last = '';
  while (Date.now() < deadline) {
    const state = await nsenter(['systemctl', 'is-system-running', '--wait'], Math.max(1000, deadline - Date.now()));
    up = state.stdout.trim();
    last = state.stderr.trim();
    if (up === 'running' || up === 'degraded') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (up !== 'running' && up !== 'degraded') {
    await stop();
    throw new Error(`test systemd is not running after ${timeoutMs} ms: '${up}' ${last}`);
  }
  const root = `/proc/${sdPid}/root/run/systemd/system`;
  return {
    pid: sdPid,
    namespace: ns,
    systemctl,
    systemctlStatus,
    exec: (...argv) => nsenter(['--', ...argv]),
    writeUnit(name, text) {
      const file = path.join(root, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
    },
    async journal(unit) {
      return (await nsenter(['journalctl', '--no-pager', '-o', 'cat', '-u', unit])).stdout;
    },
    others() {
      return processesIn(ns).filter((p) => p !== sdPid && comm(p) !== 'systemd-journal');
    },
    hostPid(nsPid) {
      return hostPidIn(ns, nsPid);
    },
    stop,
  };
}
