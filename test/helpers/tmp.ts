// A temporary directory per test for socket paths; the root hooks create and remove it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

let current: string | undefined;

export function makeTestDir(): string {
  current = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-test-'));
  return current;
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
