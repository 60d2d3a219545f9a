// Child processes for tests: fixtures run with this Node, talking JSON lines over stdio.
// Every child is registered so the root hooks can kill survivors and wait for their exit.
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { forOtherUid, otherUidSpawn } from './other-uid';

const live = new Set<ChildProcess>();

export interface Fixture {
  proc: ChildProcess;
  pid: number;
  /** Resolves with the next JSON line the child printed (rejects if it exits first). */
  next<T = Record<string, unknown>>(timeoutMs?: number): Promise<T>;
  /** Waits for the next line whose `event` is `name`, skipping others. */
  expect<T = Record<string, unknown>>(name: string, timeoutMs?: number): Promise<T>;
  /** Writes a JSON line to the child's stdin. */
  send(obj: unknown): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export interface SpawnJsonOptions {
  stdio?: StdioOptions;
  env?: NodeJS.ProcessEnv;
  /** Run as this user/group (needs root). */
  uid?: number;
  gid?: number;
}

export const fixturesDir = path.join(__dirname, '..', 'fixtures');

/**
 * Spawns a command (registered for reaping) and reads JSON lines from its stdout. With `uid`, the
 * child runs in a world-readable copy of what it needs (helpers/other-uid.ts), and arguments that
 * are paths in the checkout name the copy's files.
 */
export function spawnJson(command: string, args: string[], opts: SpawnJsonOptions = {}): Fixture {
  const env = opts.env ?? process.env;
  const other = opts.uid !== undefined;
  const proc = spawn(other ? forOtherUid(command) : command, other ? args.map(forOtherUid) : args, {
    stdio: opts.stdio ?? ['pipe', 'pipe', 'pipe'],
    ...(opts.uid !== undefined ? otherUidSpawn(env) : { env }),
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  return watchJson(proc);
}

/**
 * Registers a child spawned elsewhere (stdio 0-2 piped) for reaping, and reads JSON lines from its
 * stdout as spawnJson does.
 */
export function watchJson(proc: ChildProcess): Fixture {
  live.add(proc);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('close', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    });
  });
  let err = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (d: string) => {
    err += d;
  });
  const queue: Record<string, unknown>[] = [];
  const waiting: Array<(v: Record<string, unknown> | null) => void> = [];
  let ended = false;
  const rl = readline.createInterface({ input: proc.stdout! });
  rl.on('line', (line) => {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      msg = { event: 'text', text: line };
    }
    const w = waiting.shift();
    if (w) w(msg);
    else queue.push(msg);
  });
  rl.on('close', () => {
    ended = true;
    for (const w of waiting.splice(0)) w(null);
  });
  const next = <T>(timeoutMs = 15000): Promise<T> => {
    const m = queue.shift();
    if (m) return Promise.resolve(m as T);
    if (ended) return Promise.reject(new Error(`child ${proc.pid} ended its output. stderr:\n${err}`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = waiting.indexOf(deliver);
        if (i >= 0) waiting.splice(i, 1);
        reject(new Error(`child ${proc.pid} said nothing for ${timeoutMs} ms. stderr:\n${err}`));
      }, timeoutMs);
      const deliver = (v: Record<string, unknown> | null): void => {
        clearTimeout(timer);
        if (v === null) reject(new Error(`child ${proc.pid} ended its output. stderr:\n${err}`));
        else resolve(v as T);
      };
      waiting.push(deliver);
    });
  };
  const expectEvent = async <T>(name: string, timeoutMs = 15000): Promise<T> => {
    for (;;) {
      const m = await next<Record<string, unknown>>(timeoutMs);
      if (m.event === 'error') throw new Error(`child ${proc.pid} failed: ${String(m.message)}\n${String(m.stack ?? '')}`);
      if (m.event === name) return m as T;
    }
  };
  return {
    proc,
    pid: proc.pid!,
    next,
    expect: expectEvent,
    send: (obj) => proc.stdin?.write(`${JSON.stringify(obj)}\n`),
    exited,
    stderr: () => err,
  };
}

/** Runs test/fixtures/<name>.js with this Node. */
export function runFixture(name: string, args: string[] = [], opts: SpawnJsonOptions = {}): Fixture {
  return spawnJson(process.execPath, [path.join(fixturesDir, `${name}.js`), ...args], opts);
}

/** Kills every child still running and waits for each to exit. */
export async function reapChildren(): Promise<number> {
  const survivors = [...live];
  await Promise.all(
    survivors.map(
      (proc) =>
        new Promise<void>((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
          proc.once('close', () => resolve());
          proc.kill('SIGKILL');
        }),
    ),
  );
  live.clear();
  return survivors.length;
}

/** A process's state letter from /proc/<pid>/stat ('R', 'S', 'Z', ...), or undefined once it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/**
 * Asserts a clean exit (code 0, no signal) and says why not (the child's stderr) if it was not. With
 * `ms`, also fails naming `what` if it still runs after `ms` (exitWithin).
 */
export async function exitedCleanly(child: Fixture, ms?: number, what?: string): Promise<void> {
  const { code, signal } = ms === undefined ? await child.exited : await exitWithin(child, ms, what ?? 'exit');
  const name = what === undefined ? `child ${child.pid}` : `${what} (child ${child.pid})`;
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, `${name} stderr:\n${child.stderr()}`);
}

/** Asks a fixture that reads commands from stdin to exit ({ cmd: 'exit' }, then EOF) and asserts it exited cleanly. */
export async function stopFixture(child: Fixture): Promise<void> {
  child.send({ cmd: 'exit' });
  child.proc.stdin!.end();
  await exitedCleanly(child);
}

/** The child's exit; fails naming `what` (with the end of its stderr) if it still runs after `ms`. */
export async function exitWithin(
  child: Fixture,
  ms: number,
  what: string,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: child ${child.pid} still running after ${ms} ms:\n${child.stderr().slice(-3000)}`)),
      ms,
    );
  });
  try {
    return await Promise.race([child.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}
