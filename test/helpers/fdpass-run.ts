// `fdpass run` and `fdpass reload` as real processes (the compiled CLI) for the supervisor's tests:
// start it, wait for its log, reload and stop it, and (in afterEach) stop what a failed test left
// running, before the root hooks' SIGKILL would orphan its generations (which hold the stdout pipe).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixturesDir, spawnJson, type Fixture, type SpawnJsonOptions } from './children';

export const CLI = path.join(__dirname, '..', '..', '..', 'dist', 'cli', 'main.js');
export const APP = path.join(fixturesDir, 'supervised-app.js');

const supervisors: Fixture[] = [];

/** Registers a supervisor started elsewhere for stopLeftovers(). */
export function track(f: Fixture): Fixture {
  supervisors.push(f);
  return f;
}

/** `fdpass run RUNARGS -- COMMAND`, registered for stopLeftovers(). */
export function supervise(runArgs: string[], command: string[], opts: SpawnJsonOptions = {}): Fixture {
  return track(spawnJson(process.execPath, [CLI, 'run', ...runArgs, '--', ...command], opts));
}

/** The pids whose parent is `ppid`. */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

export function descendantPids(pid: number): number[] {
  return childPids(pid).flatMap((c) => [c, ...descendantPids(c)]);
}

/** afterEach: SIGTERM to supervisors still running (a failed test), then SIGKILL to what remains. */
export async function stopLeftovers(): Promise<void> {
  for (const sup of supervisors.splice(0)) {
    if (sup.proc.exitCode !== null || sup.proc.signalCode !== null) continue;
    const tree = descendantPids(sup.pid);
    sup.proc.kill('SIGTERM');
    const gone = await Promise.race([sup.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    for (const pid of gone ? tree : [sup.pid, ...tree]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** SIGTERM to every registered supervisor still running, then waits for each to exit (each stops its
 * generations first). */
export async function stopAll(): Promise<void> {
  for (const sup of supervisors.splice(0)) {
    if (sup.proc.exitCode === null && sup.proc.signalCode === null) sup.proc.kill('SIGTERM');
    await sup.exited;
  }
}

/** Waits until the supervisor's log (stderr) matches `re` `count` times. */
export async function logged(sup: Fixture, re: RegExp, count = 1, timeoutMs = 20_000): Promise<void> {
  const g = new RegExp(re.source, 'g');
  const end = Date.now() + timeoutMs;
  for (;;) {
    if ((sup.stderr().match(g) ?? []).length >= count) return;
    if (Date.now() > end) throw new Error(`supervisor log never matched ${re} ${count} times:\n${sup.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `fdpass reload TARGET`: resolves with its exit code, stdout and stderr. */
export async function reloadCmd(
  target: string,
  opts: SpawnJsonOptions = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const c = spawnJson(process.execPath, [CLI, 'reload', target], opts);
  let stdout = '';
  c.proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  const { code, signal } = await c.exited;
  return { code, signal, stdout, stderr: c.stderr() };
}

/** SIGTERM to the supervisor: resolves with its exit code. */
export async function stop(sup: Fixture): Promise<number | null> {
  sup.proc.kill('SIGTERM');
  return (await sup.exited).code;
}
