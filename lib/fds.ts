// Descriptor utilities: closing descriptors (quietly on cleanup paths, or in one native call) and
// copying a descriptor list into the Int32Array native code reads.
import { debuglog } from 'node:util';
import { binding, constants } from './native';
import { systemError } from './errors';
import { invalidArgType, validateFd } from './validate';

const debug = debuglog('fdpass');

/** Closes descriptors fdpass owns on an error or cleanup path; a failure is only logged. */
export function closeQuietly(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      binding.close(fd);
    } catch (err) {
      debug('close(%d) failed: %s', fd, (err as Error).message);
    }
  }
}

/** Validates `fds` and copies them into `into` (the typed array native code reads). */
export function copyFds(fds: readonly unknown[], into: Int32Array, name: string, at = 0): void {
  for (let i = 0; i < fds.length; i++) {
    const fd = fds[i];
    // The inline test is the hot path; validateFd only runs to build the error.
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) validateFd(fd, `${name}[${i}]`);
    into[at + i] = fd as number;
  }
}

// closeFds' scratch: one per thread (module instance), used only within one synchronous call, so that
// closing a message's fds allocates nothing.
const CLOSE_FDS = new Int32Array(constants.MAX_FDS_PER_MESSAGE);

/**
 * Closes descriptors you own in one native call. Typically the `fds` of a received message you do
 * not adopt (`closeFds(message.fds)`), instead of one `closeFd` call each. All are checked before any is closed; then every
 * one is closed even if one fails, and the first failure throws (e.g. EBADF) as `closeFd` would.
 */
export function closeFds(fds: readonly number[]): void {
  if (!Array.isArray(fds)) throw invalidArgType('fds', 'an instance of Array', fds);
  const count = fds.length;
  if (count <= 1) {
    // One descriptor: the plain close call is cheaper than passing a typed array.
    if (count === 1) {
      validateFd(fds[0], 'fds[0]');
      binding.close(fds[0]);
    }
    return;
  }
  const staged = count <= CLOSE_FDS.length ? CLOSE_FDS : new Int32Array(count);
  copyFds(fds, staged, 'fds');
  const errno = binding.closeFds(staged, count);
  if (errno !== 0) throw systemError(errno, 'close');
}
