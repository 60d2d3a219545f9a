// Read-batch decoding: turns one native read batch (readInfo plus the channel's read buffer; the
// layout is described once, in lib/native.ts) into Messages, and into the errors that take the place
// of dropped ones.
import { debuglog } from 'node:util';
import { binding } from './native';
import { FdpassError } from './errors';
import type { Message } from './message';

const debug = debuglog('fdpass');

const { READ_INFO_MESSAGES, READ_INFO_FDS, READ_INFO_CRED, DROPPED_CTRUNC } = binding.ChannelPoller;

/**
 * The readInfo array handed to every channel's poller. One per thread (module instance), shared by
 * every channel: a batch is decoded by decodeBatch before any user code runs, so no two batches
 * overlap, and a channel does not carry its own 33 KB copy.
 */
export const READ_INFO = new Int32Array(binding.ChannelPoller.READ_INFO_LENGTH);

/**
 * Appends the `count` messages of the batch just read to `inbox`, each copied out of READ_INFO and
 * `bytes` (both are reused by the next batch). ERR_FDPASS_TOO_MANY_FDS takes the place of a message
 * with more than `maxFds` descriptors, which are closed when that error leaves the inbox (before any
 * user code sees it). `fd` names the channel in debug lines.
 */
export function decodeBatch(count: number, bytes: Buffer, maxFds: number, fd: number, inbox: Array<Message | Error>): void {
  const info = READ_INFO;
  let offset = 0;
  let next = READ_INFO_FDS;
  for (let i = 0; i < count; i++) {
    const length = info[READ_INFO_MESSAGES + 2 * i]!;
    const nfds = info[READ_INFO_MESSAGES + 2 * i + 1]!;
    if (length < 0) {
      const flags = nfds;
      inbox.push(
        flags & DROPPED_CTRUNC
          ? new FdpassError(
              'ERR_FDPASS_CTRUNC',
              'a message lost descriptors in the kernel (MSG_CTRUNC: the receiver ran out of descriptors or the sender exceeded SCM_MAX_FD); those that arrived were closed',
            )
          : new FdpassError(
              'ERR_FDPASS_TRUNCATED',
              'a message was larger than maxMessageSize and was truncated (MSG_TRUNC); its descriptors were closed',
            ),
      );
      debug('channel fd=%d dropped a truncated message (flags %d)', fd, flags);
      continue;
    }
    // A copy of its own (from Node's pool when small, as net.Socket data is).
    const data = Buffer.allocUnsafe(length);
    if (length <= 64) {
      for (let j = 0; j < length; j++) data[j] = bytes[offset + j]!;
    } else {
      data.set(new Uint8Array(bytes.buffer, bytes.byteOffset + offset, length));
    }
    offset += length;
    const fds = new Array<number>(nfds);
    for (let k = 0; k < nfds; k++) fds[k] = info[next++]!;
    if (nfds > maxFds) {
      inbox.push(refuseFds(fds, maxFds, fd));
      continue;
    }
    const pid = info[READ_INFO_CRED + 3 * i]!;
    if (pid >= 0) {
      inbox.push({ data, fds, cred: { pid, uid: info[READ_INFO_CRED + 3 * i + 1]!, gid: info[READ_INFO_CRED + 3 * i + 2]! } });
    } else {
      inbox.push({ data, fds });
    }
  }
}

// The descriptors of a message refused for maxFds, until the refusal leaves the inbox (takeRefused).
// They stay native's until then, in their place among the batch's descriptors: the poller counts the
// fds handed out in order (readTaken), so closing them here, ahead of messages still in the inbox,
// made a later destroy() close the wrong numbers (an fd the application held, or a reused one).
const refused = new WeakMap<Error, number[]>();

// A message over maxFds: an error takes its place; its fds are closed when the error is taken.
function refuseFds(fds: number[], maxFds: number, fd: number): FdpassError {
  debug('channel fd=%d dropped a message with %d descriptors (maxFds %d)', fd, fds.length, maxFds);
  const err = new FdpassError(
    'ERR_FDPASS_TOO_MANY_FDS',
    `a message carried ${fds.length} descriptor${fds.length === 1 ? '' : 's'}, more than maxFds (${maxFds}); it was dropped and its descriptors closed`,
  );
  refused.set(err, fds);
  return err;
}

/**
 * For an inbox entry leaving it: the descriptors a maxFds refusal holds (count them as handed out,
 * then close them), or none.
 */
export function takeRefused(entry: Error): number[] {
  const fds = refused.get(entry) ?? [];
  refused.delete(entry);
  return fds;
}
