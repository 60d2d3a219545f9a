// A temporary directory per test for socket paths; the root hooks create and remove it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

let current: string | undefined;
let expected: RegExp[] = [];

export function makeTestDir(): string {
  current = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-test-'));
  expected = [];
  return current;
}

/**
 * Declares socket files this test leaves by design, so that the root hooks do not count them: what
 * a process that exits (or is killed, or a Worker terminated) without closing its server leaves, as
 * Node's net.Server does at process exit; or a path whose listener moved to a server adopted from an
 * fd, which does not know the path. `why` is for the reader.
 */
export function leavesSocketFiles(names: RegExp, why: string): void {
  if (why === '') throw new Error('leavesSocketFiles() needs a reason');
  expected.push(names);
}

/** Whether this test declared `name` (relative to its directory) as left by design. */
export function leftByDesign(name: string): boolean {
  return expected.some((re) => re.test(name));
}

export function removeTestDir(): void {
  if (current !== undefined) fs.rmSync(current, { recursive: true, force: true });
  current = undefined;
}

/** This test's temporary directory, if it has one. */
export function testDir(): string | undefined {
  return current;
}

/** A path inside this test's temporary directory. */
export function tmpPath(name: string): string {
  if (current === undefined) throw new Error('tmpPath() outside a test');
  return path.join(current, name);
}

/** The names in this test's temporary directory. */
export function dirEntries(): string[] {
  return fs.readdirSync(path.dirname(tmpPath('x')));
}
