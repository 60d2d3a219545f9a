// What execve(2) can pass to a generation. The fd store's names all travel in one environment
// string (LISTEN_FDNAMES) and its descriptors as fds 3...; a store that outgrew either would make
// every later spawn fail (E2BIG, or EBADF/EMFILE in the child), so the store refuses what would not
// fit (fdstore.ts). The kernel's rules (fs/exec.c), checked by experiment on Linux 6:
// - one argument or NAME=value string, NUL included, is at most MAX_ARG_STRLEN (32 pages);
// - the file name, every argument and environment string (NULs included) and a pointer for each
//   argument and environment string must fit in min(RLIMIT_STACK / 4, 6 MiB), at least 128 KiB.
import { softLimit } from '../proc';

/** MAX_ARG_STRLEN with 4 KiB pages (larger pages only raise it). */
export const MAX_ARG_STRLEN = 32 * 4096;

/** Kept free for what a spawn adds besides the names: NOTIFY_SOCKET, LISTEN_*, the shell and its script. */
const SLACK = 4096;

/** The space execve(2) has for the file name, arguments, environment and their pointers. */
export function argMax(): number {
  return Math.max(Math.min(softLimit('Max stack size') / 4, 6 * 1024 * 1024), 128 * 1024);
}

/** The bytes execve(2) counts for `argv` (argv[0] as the file name too) and `env`. */
export function execSize(argv: readonly string[], env: NodeJS.ProcessEnv): number {
  const vars = Object.entries(env).filter(([, v]) => v !== undefined);
  let n = Buffer.byteLength(argv[0] ?? '') + 1;
  for (const a of argv) n += Buffer.byteLength(a) + 1;
  for (const [k, v] of vars) n += Buffer.byteLength(k) + Buffer.byteLength(v!) + 2;
  return n + (argv.length + vars.length) * 8;
}

/** What the fd store may add to a spawn: bytes of LISTEN_FDNAMES (each name and its ':') and descriptors. */
export interface ExecRoom {
  nameBytes: number;
  fds: number;
}

/**
 * The room left for stored descriptors in the spawn of `argv` with `env` and `listeners` (their
 * names). Descriptors: the child needs fds 0-2 and 3... below RLIMIT_NOFILE, and libuv may first
 * move each one above the last, so twice that.
 */
export function execRoom(argv: readonly string[], env: NodeJS.ProcessEnv, listeners: readonly string[]): ExecRoom {
  const names = Buffer.byteLength(listeners.join(':'));
  const oneString = MAX_ARG_STRLEN - Buffer.byteLength('LISTEN_FDNAMES=') - 1 - names;
  const total = argMax() - execSize(argv, env) - SLACK - names;
  return {
    nameBytes: Math.max(0, Math.min(oneString, total)),
    fds: Math.max(0, Math.floor(softLimit('Max open files') / 2) - 3 - listeners.length),
  };
}
