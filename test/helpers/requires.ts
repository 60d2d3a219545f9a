// What a test needs from the machine (root, python3-systemd, an IPv6 loopback, namespaces), and the
// one rule for when it is missing: in CI (env CI set, not '0'/'false'; .ci/run sets it) the test
// fails, since a green CI run must have run everything; elsewhere it skips with the reason, recorded
// here so that the root hooks print every skip with its reason at the end of the run.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Context } from 'mocha';

/** Whether this run is CI's, where a missing prerequisite is a failure. */
export function inCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

const skips: Array<{ title: string; tests: number; reason: string }> = [];

/**
 * Does nothing when `missing` is undefined; otherwise fails under CI, or skips the test (called in
 * a before() hook: the suite's tests) recording why. `missing` says what is missing.
 */
export function requires(ctx: Context, missing: string | undefined): void {
  if (missing === undefined) return;
  if (inCI()) throw new Error(`a prerequisite is missing, and in CI (CI=${process.env.CI}) that fails: ${missing}`);
  // While a hook runs, `this.test` is the hook: the tests it skips are its suite's.
  const runnable = ctx.test;
  const inHook = (runnable as { type?: string } | undefined)?.type === 'hook';
  const title = (inHook ? runnable?.parent?.fullTitle() : runnable?.fullTitle()) ?? '?';
  skips.push({ title, tests: inHook ? (runnable?.parent?.total() ?? 1) : 1, reason: missing });
  ctx.skip();
}

/** The tests skipped so far, with their reasons (for the run's summary). */
export function skipped(): Array<{ title: string; tests: number; reason: string }> {
  return skips.slice();
}

// --- the prerequisites: each is undefined when present, else what is missing -----------------------

/** Root, for `what` (e.g. "running a child as another user"). */
export function root(what: string): string | undefined {
  return process.getuid?.() === 0 ? undefined : `root (${what})`;
}

let pythonSystemd: string | undefined | null = null;
/** /usr/bin/python3 with libsystemd's bindings (python3-systemd). */
export function python3Systemd(): string | undefined {
  if (pythonSystemd === null) {
    const probe = spawnSync('/usr/bin/python3', ['-c', 'import systemd.daemon'], { stdio: 'pipe' });
    pythonSystemd =
      probe.status === 0
        ? undefined
        : '/usr/bin/python3 that can import systemd.daemon (python3-systemd: run scripts/install-test-deps.sh as root)';
  }
  return pythonSystemd;
}

/** An IPv6 loopback address (::1). */
export function ipv6Loopback(): string | undefined {
  const has = Object.values(os.networkInterfaces()).some((list) => (list ?? []).some((i) => i.family === 'IPv6' && i.address === '::1'));
  return has ? undefined : 'an IPv6 loopback (::1 is missing from os.networkInterfaces())';
}

const probes = new Map<string, string | undefined>();
/** `unshare ARGS... true` works here (namespaces: root for --pid/--mount, user namespaces for --user). */
export function unshare(args: string[]): string | undefined {
  const key = args.join(' ');
  if (!probes.has(key)) {
    const needsRoot = !args.includes('--user') ? root(`unshare ${key}`) : undefined;
    let why = needsRoot;
    if (why === undefined) {
      const probe = spawnSync('unshare', [...args, 'true'], { stdio: 'pipe', timeout: 10_000 });
      if (probe.error !== undefined) why = `unshare ${key}: ${probe.error.message}`;
      else if (probe.status !== 0) why = `unshare ${key} (it failed: ${probe.stderr.toString().trim()})`;
    }
    probes.set(key, why);
  }
  return probes.get(key);
}

/** A systemd binary to boot as PID 1 (and the namespaces to boot it in). */
export function bootableSystemd(): string | undefined {
  return (
    unshare(['--pid', '--fork', '--mount', '--mount-proc']) ??
    (fs.existsSync('/lib/systemd/systemd') ? undefined : '/lib/systemd/systemd (apt-get install systemd)')
  );
}
