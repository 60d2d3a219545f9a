// Descriptor accounting for tests: what this process has open, by /proc/self/fd.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpPath } from './tmp';

/** fd number -> readlink target, for every open descriptor of this process (or of process `pid`). */
export function openFds(pid: number | 'self' = 'self'): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.set(Number(name), fs.readlinkSync(`/proc/${pid}/fd/${name}`));
    } catch {
      // the directory's own fd, closed by the time we read it
    }
  }
  return out;
}

export function fdCount(): number {
  return openFds().size;
}

/** Descriptors in `after` that were not in `before` (or now point elsewhere). */
export function newFds(before: Map<number, string>, after: Map<number, string>): string[] {
  const added: string[] = [];
  for (const [fd, target] of after) {
    if (before.get(fd) !== target) added.push(`${fd} -> ${target}`);
  }
  return added;
}

/** The map `before` without `gone`: what should be open after closing exactly those fds. */
export function without(before: Map<number, string>, gone: number[]): Map<number, string> {
  const m = new Map(before);
  for (const fd of gone) m.delete(fd);
  return m;
}

/** Fails with the descriptors this process gained (or lost) since `before`. */
export async function assertFdsBack(before: Map<number, string>, what: string): Promise<void> {
  await settle();
  const now = openFds();
  assert.deepEqual(newFds(before, now), [], `${what}: this process holds new descriptors`);
  assert.deepEqual(newFds(now, before), [], `${what}: descriptors of this process were closed`);
}

/** Waits until libuv has run its close callbacks (uv_close is asynchronous). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

/** How many descriptors of `fds` (fd -> readlink target) point at `file`. */
export function holdsFile(fds: Map<number, string> | Record<string, string>, file: string): number {
  const targets = fds instanceof Map ? [...fds.values()] : Object.values(fds);
  return targets.filter((t) => t === file).length;
}

/** A descriptor number that is certainly not open right now (use it at once, synchronously). */
export function closedFd(): number {
  const fd = fs.openSync('/dev/null', 'r');
  fs.closeSync(fd);
  return fd;
}

/** Both ends of a FIFO, opened without a child: [non-blocking read end, write end], kind 'pipe'. */
export function fifoFds(name = `fifo-${Math.random().toString(36).slice(2)}`): [number, number] {
  const p = tmpPath(name);
  execFileSync('mkfifo', [p]);
  const r = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const w = fs.openSync(p, fs.constants.O_WRONLY);
  return [r, w];
}

/**
 * Runs `fn` while this process can open no descriptor: its soft RLIMIT_NOFILE lowered (prlimit) to a
 * little above its highest open descriptor, and every number below filled with /dev/null. Both are
 * undone however `fn` ends.
 */
export async function withNoFreeDescriptor<T>(fn: () => T | Promise<T>): Promise<T> {
  const soft = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))![1]!;
  execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${Math.max(...openFds().keys()) + 64}:`]);
  const filler: number[] = [];
  try {
    assert.throws(
      () => {
        for (;;) filler.push(fs.openSync('/dev/null', 'r'));
      },
      { code: 'EMFILE' },
    );
    return await fn();
  } finally {
    for (const fd of filler) fs.closeSync(fd);
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${soft}:`]);
  }
}
