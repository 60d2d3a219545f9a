// Outgoing staging: checks a message a channel is about to send and lays it out as poller.send()
// takes it: the bytes for the kernel, the descriptors in the channel's own sendFds array; or a batch
// of messages as poller.sendBatch() takes them.
import { copyFds } from './fds';
import { MAX_FDS_PER_MESSAGE, type OutgoingMessage } from './message';
import type { SocketKind } from './names';
import { binding } from './native';
import { invalidArgType, invalidArgValue, outOfRange, toBuffer, validateFd, validateObject } from './validate';

// A stream drops fds sent without data (unix(7)): fd-only stream messages carry this one byte.
const FD_ONLY_PAD = Buffer.from([0]);
const EMPTY_FDS: readonly number[] = [];
const { SEND_BATCH_FDS, SEND_BATCH_LAYOUT_LENGTH } = binding.ChannelPoller;

/**
 * One per channel. `fds` is the sendFds array handed to the channel's poller when it is made; send()
 * reads sendFds[0, count) during the call, so a message's descriptors cross to native code as one
 * typed-array write each instead of one native call each.
 */
export class OutgoingStage {
  readonly fds = new Int32Array(MAX_FDS_PER_MESSAGE);
  /** How many descriptors the last stage() put in `fds`, or how many messages stageBatch() laid out. */
  count = 0;
  readonly #kind: SocketKind;
  // stageBatch()'s layout (lib/native.ts, sendBatch), made on the first batch: 32 KiB a channel.
  #layout: Int32Array | null = null;

  constructor(kind: SocketKind) {
    this.#kind = kind;
  }

  /** sendBatch()'s layout as the last stageBatch() filled it. */
  get layout(): Int32Array {
    this.#layout ??= new Int32Array(SEND_BATCH_LAYOUT_LENGTH);
    return this.#layout;
  }

  /**
   * Checks an outgoing message, stages its fds (their number in `count`) and returns the bytes that
   * go to the kernel, or 'noop' when there is nothing to send.
   */
  stage(msg: OutgoingMessage): Buffer | null | 'noop' {
    const data = this.#check(msg, 'message');
    if (data === 'noop') return data;
    const fds = msg.fds ?? EMPTY_FDS;
    copyFds(fds, this.fds, 'message.fds');
    this.count = fds.length;
    return data;
  }

  /**
   * Checks messages[from, to) (at most SEND_BATCH) and lays them out for sendBatch(): their fds and
   * sizes in `layout`, their number (no-ops left out) in `count`; returns their bytes back to back.
   */
  stageBatch(messages: readonly OutgoingMessage[], from: number, to: number): Buffer {
    const layout = this.layout;
    const parts: Buffer[] = [];
    let bytes = 0;
    let at = SEND_BATCH_FDS;
    let n = 0;
    for (let i = from; i < to; i++) {
      const msg = messages[i]!;
      const data = this.#check(msg, `messages[${i}]`);
      if (data === 'noop') continue;
      const fds = msg.fds ?? EMPTY_FDS;
      copyFds(fds, layout, `messages[${i}].fds`, at);
      at += fds.length;
      const length = data === null ? 0 : data.length;
      layout[2 * n] = length;
      layout[2 * n + 1] = fds.length;
      if (length > 0) parts.push(data!);
      bytes += length;
      n++;
    }
    this.count = n;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
  }

  /** Checks every message of `messages` without staging any (a batch is refused whole, before any is sent). */
  checkAll(messages: readonly OutgoingMessage[]): void {
    for (let i = 0; i < messages.length; i++) {
      const msg = messages[i]!;
      if (this.#check(msg, `messages[${i}]`) === 'noop') continue;
      const fds = msg.fds ?? EMPTY_FDS;
      for (let k = 0; k < fds.length; k++) validateFd(fds[k], `messages[${i}].fds[${k}]`);
    }
  }

  // The message's bytes for the kernel, or 'noop'; throws for a message that breaks the rules.
  #check(msg: OutgoingMessage, name: string): Buffer | null | 'noop' {
    validateObject(msg, name);
    let data = toBuffer(msg.data, `${name}.data`);
    const fds = msg.fds ?? EMPTY_FDS;
    if (!Array.isArray(fds)) throw invalidArgType(`${name}.fds`, 'an instance of Array', fds);
    const count = fds.length;
    if (count > MAX_FDS_PER_MESSAGE) {
      throw outOfRange(`${name}.fds.length`, `<= ${MAX_FDS_PER_MESSAGE} (SCM_MAX_FD)`, count);
    }
    const empty = data === null || data.length === 0;
    if (empty && this.#kind === 'stream') {
      if (count === 0) return 'noop'; // a zero-length stream write sends nothing
      data = FD_ONLY_PAD;
    }
    if (empty && count === 0 && this.#kind === 'seqpacket') {
      // The receiver could not tell a zero-length seqpacket message from end-of-file.
      throw invalidArgValue(name, msg, 'must carry data or fds on a seqpacket channel');
    }
    return data;
  }
}
