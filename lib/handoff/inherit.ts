// The successor's side of a self-upgrade (upgrade.ts): the parent names its control socket in the
// environment, and the successor takes the listeners from it.
import type { Inheritance } from './inheritance';
import { take, type TakeOptions } from './take';

/** The environment variable that tells a successor where its parent offers the listeners. */
export const UPGRADE_SOCKET_ENV = 'FDPASS_UPGRADE_SOCKET';

// Set once inherit() has seen this process was started by an upgrade.
let startedByUpgrade = false;

/** Whether this process was started by an upgrade (whether or not it called inherit() yet). */
export function isSuccessor(): boolean {
  return startedByUpgrade || process.env[UPGRADE_SOCKET_ENV] !== undefined;
}

/**
 * In a process started by an upgrade: takes the listeners its parent offers. Resolves with null when
 * this process was not started by an upgrade (first start: bind fresh), or when the parent is gone.
 * The variable is removed from the environment, so this process's own children do not take it for
 * theirs.
 */
export async function inherit(opts: TakeOptions = {}): Promise<Inheritance | null> {
  const path = process.env[UPGRADE_SOCKET_ENV];
  if (path === undefined) return null;
  startedByUpgrade = true;
  delete process.env[UPGRADE_SOCKET_ENV];
  return take(path, opts);
}
