// Outgoing staging: checks a message a channel is about to send and lays it out as poller.send()
// takes it: the bytes for the kernel, the descriptors in the channel's own sendFds array.
import { copyFds } from './fds';
import { MAX_FDS_PER_MESSAGE, type OutgoingMessage } from './message';
import type { SocketKind } from './names';
import { invalidArgType, invalidArgValue, outOfRange, toBuffer, validateObject } from './validate';

// A stream drops fds sent without data (unix(7)): fd-only stream messages carry this one byte.
const FD_ONLY_PAD = Buffer.from([0]);
const EMPTY_FDS: readonly number[] = [];

/**
 * One per channel. `fds` is the sendFds array handed to the channel's poller when it is made; send()
 * reads sendFds[0, count) during the call, so a message's descriptors cross to native code as one
 * typed-array write each instead of one native call each.
 */
export class OutgoingStage {
  readonly fds = new Int32Array(MAX_FDS_PER_MESSAGE);
  /** How many descriptors the last stage() put in `fds`. */
  count = 0;
  readonly #kind: SocketKind;

  constructor(kind: SocketKind) {
    this.#kind = kind;
  }

  /**
   * Checks an outgoing message, stages its fds (their number in `count`) and returns the bytes that
   * go to the kernel, or 'noop' when there is nothing to send.
   */
  stage(msg: OutgoingMessage): Buffer | null | 'noop' {
    validateObject(msg, 'message');
    let data = toBuffer(msg.data, 'message.data');
    const fds = msg.fds ?? EMPTY_FDS;
    if (!Array.isArray(fds)) throw invalidArgType('message.fds', 'an instance of Array', fds);
    const count = fds.length;
    if (count > MAX_FDS_PER_MESSAGE) {
      throw outOfRange('message.fds.length', `<= ${MAX_FDS_PER_MESSAGE} (SCM_MAX_FD)`, count);
    }
    copyFds(fds, this.fds, 'message.fds');
    const empty = data === null || data.length === 0;
    if (empty && this.#kind === 'stream') {
      if (count === 0) return 'noop'; // a zero-length stream write sends nothing
      data = FD_ONLY_PAD;
    }
    if (empty && count === 0 && this.#kind === 'seqpacket') {
      // The receiver could not tell a zero-length seqpacket message from end-of-file.
      throw invalidArgValue('message', msg, 'must carry data or fds on a seqpacket channel');
    }
    this.count = count;
    return data;
  }
}
