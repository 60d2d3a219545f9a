// The entry points users reach for first: sendFd/recvFd and their plural forms, over a Channel or a
// socket path (connect/listen for one message, then clean up).
import { Channel } from './channel';
import { closeQuietly } from './fds';
import { MAX_FDS_PER_MESSAGE, type Message } from './message';
import { acceptOne, bindDgram, connect, listen, type ListenOptions } from './endpoints';
import { FdpassError } from './errors';
import { fdOf, type FdLike } from './adopt';
import type { SocketKind } from './names';
import { invalidArgType, outOfRange, toBuffer } from './validate';
import { validateWaitOptions, waitWith, type WaitOptions } from './wait';

/** Default deadline of sendFd/sendFds to a path (connect, send, close), as connect()'s. */
const DEFAULT_SEND_TIMEOUT = 10_000;

export interface TransferOptions extends WaitOptions {
  /** Socket kind when `target`/`source` is a path; default 'seqpacket'. */
  type?: SocketKind;
}

/** For recvFd/recvFds on a path: how to listen there (mode, allow, maxMessageSize) and how long to wait. */
export interface ReceiveOptions extends TransferOptions, Pick<ListenOptions, 'mode' | 'allow' | 'maxMessageSize'> {}

/** What recvFd resolves with: the descriptor (now yours) and the payload sent with it. */
export interface ReceivedFd {
  fd: number;
  data: Buffer;
}

function toFds(values: unknown): number[] {
  if (!Array.isArray(values)) throw invalidArgType('fds', 'an instance of Array', values);
  if (values.length > MAX_FDS_PER_MESSAGE) throw outOfRange('fds.length', `<= ${MAX_FDS_PER_MESSAGE} (SCM_MAX_FD)`, values.length);
  return values.map((v: FdLike, i) => fdOf(v, `fds[${i}]`));
}

function checkTarget(value: unknown, name: string): asserts value is Channel | string {
  if (!(value instanceof Channel) && typeof value !== 'string') {
    throw invalidArgType(name, 'of type string or an instance of Channel', value);
  }
}

/**
 * Sends up to 253 descriptors with an optional payload as one message. `target` is a Channel, or a
 * socket path to connect to, send, and close. The fds stay yours.
 *
 * With a path, `timeout` (default 10 s) is one deadline for the whole operation (connect, send, close)
 * and `signal` aborts it at any point; either way the connection and any duplicates of the fds that a
 * message still waiting in the queue held are closed before the promise rejects (ERR_FDPASS_TIMEOUT,
 * ERR_FDPASS_ABORTED). Resolving means the kernel took the message, not that the receiver read it.
 */
export async function sendFds(
  target: Channel | string,
  fds: readonly FdLike[],
  data?: Buffer | Uint8Array | string,
  opts: TransferOptions = {},
): Promise<void> {
  checkTarget(target, 'target');
  const numbers = toFds(fds);
  const payload = toBuffer(data, 'data'); // checked before any connection is made
  if (target instanceof Channel) return target.send({ data: payload, fds: numbers });
  validateWaitOptions(opts);
  const timeout = opts.timeout ?? DEFAULT_SEND_TIMEOUT;
  // connect() gets its own signal, aborted with everything else when the deadline or `signal` fires.
  const connecting = new AbortController();
  let channel: Channel | undefined;
  let cancelled = false;
  return waitWith<void>(
    `sendFds to '${target}'`,
    { timeout, ...(opts.signal ? { signal: opts.signal } : {}) },
    (resolve, reject) => {
      connect(target, { ...opts, timeout, signal: connecting.signal })
        .then((c) => {
          if (cancelled) return c.destroy();
          channel = c;
          return c.send({ data: payload, fds: numbers }).then(() => c.close());
        })
        .then(resolve, (err: unknown) => {
          channel?.destroy();
          reject(err);
        });
    },
    () => {
      // Closes the socket; a message still queued is dropped and its duplicates closed (in C++).
      cancelled = true;
      connecting.abort();
      channel?.destroy();
    },
  );
}

/** Sends one descriptor with an optional payload as one message. */
export async function sendFd(
  target: Channel | string,
  fd: FdLike,
  data?: Buffer | Uint8Array | string,
  opts: TransferOptions = {},
): Promise<void> {
  fdOf(fd); // reports a bad `fd` under its own name
  return sendFds(target, [fd], data, opts);
}

/**
 * Receives one message with the descriptors it carries. `source` is a Channel, or a socket path:
 * then it listens there, takes one connection, receives one message, removes the socket and
 * resolves.
 */
export async function recvFds(source: Channel | string, opts: ReceiveOptions = {}): Promise<Message> {
  checkTarget(source, 'source');
  if (source instanceof Channel) return source.receive(opts);
  validateWaitOptions(opts);
  // One deadline for the whole exchange: the connection, then its message.
  const deadline = opts.timeout !== undefined ? Date.now() + opts.timeout : undefined;
  const remaining = (): WaitOptions => ({
    ...(deadline !== undefined ? { timeout: Math.max(0, deadline - Date.now()) } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const listenOpts: ListenOptions = {
    ...(opts.type !== undefined ? { type: opts.type } : {}),
    ...(opts.mode !== undefined ? { mode: opts.mode } : {}),
    ...(opts.allow !== undefined ? { allow: opts.allow } : {}),
    ...(opts.maxMessageSize !== undefined ? { maxMessageSize: opts.maxMessageSize } : {}),
  };
  let channel: Channel;
  if (opts.type === 'dgram') {
    // A datagram socket has no connections: bind, take one datagram.
    channel = await bindDgram(source, listenOpts);
  } else {
    const server = await listen(source, listenOpts);
    try {
      channel = await acceptOne(server, remaining());
    } finally {
      await server.close();
    }
  }
  try {
    return await channel.receive(remaining());
  } finally {
    await channel.close();
  }
}

/**
 * Receives one message that carries exactly one descriptor. A message with none or several is an
 * error (ERR_FDPASS_NO_FD / ERR_FDPASS_TOO_MANY_FDS; its fds are closed).
 */
export async function recvFd(source: Channel | string, opts: ReceiveOptions = {}): Promise<ReceivedFd> {
  const m = await recvFds(source, opts);
  if (m.fds.length === 1) return { fd: m.fds[0]!, data: m.data };
  closeQuietly(m.fds); // every one, even if one close fails
  if (m.fds.length === 0) throw new FdpassError('ERR_FDPASS_NO_FD', 'the message carried no descriptor');
  throw new FdpassError('ERR_FDPASS_TOO_MANY_FDS', `the message carried ${m.fds.length} descriptors, expected 1 (use recvFds)`);
}
