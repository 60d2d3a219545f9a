// The hand-off wire protocol: JSON messages on a seqpacket control socket, listeners' fds attached to
// 'listeners' batches, a connection's fd to its 'connection' message (migration, after 'ready'). Every message is checked for shape on both sides, and every fd that arrives
// on a message that may not carry any is closed (DESIGN.md §4: each fd has exactly one owner).
import type { Channel } from '../channel';
import { closeQuietly } from '../fds';
import { DEFAULT_MAX_MESSAGE_SIZE, MAX_FDS_PER_MESSAGE, type Message } from '../message';
import type { WaitOptions } from '../wait';
import { FdpassError, FdpassSystemError, isFdpassErrorCode } from '../errors';
import { inspect, isStreamSocket, isUdpSocket } from '../adopt';

/** The control protocol's version; a peer speaking another one is refused cleanly. */
export const HANDOFF_PROTOCOL_VERSION = 1;

/** What a listener is, as the old process saw it when it offered it. */
export type ListenerKind = 'tcp' | 'unix' | 'udp' | 'other';

const KINDS: readonly string[] = ['tcp', 'unix', 'udp', 'other'];

/** A listener the old process could not offer (e.g. it had closed it), and why. */
export interface SkippedListener {
  name: string;
  reason: string;
}

/** Longest listener name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 1024;

/**
 * Where the old process's connections went during a hand-off with `migrate`: each is counted once.
 * In `ready()`'s result, as they stood when the old process acknowledged; in the final counts
 * (the old side's `'drained'` event, the new side's `'migrated'` event), `pending` is 0.
 */
export interface MigrationCounts {
  /** Connections now served by the new process. */
  migrated: number;
  /** Connections offered to the new process that it refused or could not adopt. */
  failed: number;
  /** Connections that ended on the old process without being offered (closed, cut at the deadline, or unable to move). */
  drained: number;
  /** Connections still open on the old process: busy ones move once idle, the others are drained. */
  pending: number;
}

/** What a migrated connection speaks: HTTP/1.1 between requests, or any protocol (`offer()`). */
export type ConnectionProtocol = 'http1' | 'socket';

export type Wire =
  | { type: 'hello'; names?: string[]; connections?: boolean }
  | { type: 'listeners'; entries: Array<{ name: string; kind: ListenerKind }> }
  | { type: 'done'; count: number; skipped: SkippedListener[] }
  | { type: 'ready' }
  | { type: 'ack'; connections?: MigrationCounts }
  // ids count up from 1 without a gap (only a message that left takes one), so that the new process
  // can refuse one whose descriptor it could not receive (MSG_CTRUNC drops the whole message): the next id.
  | { type: 'connection'; id: number; protocol: ConnectionProtocol; listener?: string; state?: unknown; unread?: string }
  | { type: 'adopted'; id: number }
  | { type: 'refused'; id: number; reason: string }
  | { type: 'end'; connections: MigrationCounts }
  | { type: 'error'; code: string; message: string };

export type WireType = Wire['type'];

// JSON text per message stays well under the default 64 KiB receive buffer.
export const MAX_BATCH_BYTES = 48 * 1024;

export function encode(msg: Wire): Buffer {
  return Buffer.from(JSON.stringify({ v: HANDOFF_PROTOCOL_VERSION, ...msg }));
}

function protocolError(message: string): FdpassError {
  return new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', message);
}

function isName(n: unknown): n is string {
  return typeof n === 'string' && n.length > 0 && Buffer.byteLength(n) <= MAX_NAME_BYTES;
}

/** Checks a list of listener names: strings of 1..1024 bytes, each once. Returns the first problem. */
export function checkNames(names: unknown): string | undefined {
  if (!Array.isArray(names)) return 'names must be an array';
  const seen = new Set<string>();
  for (const n of names) {
    if (!isName(n)) return `a listener name must be a string of 1 to ${MAX_NAME_BYTES} bytes`;
    if (seen.has(n)) return `the name '${n}' appears twice`;
    seen.add(n);
  }
  return undefined;
}

function isId(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}

function countsProblem(c: unknown): string | undefined {
  const counts = c as Record<string, unknown> | null;
  if (counts === null || typeof counts !== 'object') return 'connection counts must be an object';
  for (const k of ['migrated', 'failed', 'drained', 'pending']) if (!isId(counts[k])) return `connection counts need ${k}`;
  return undefined;
}

// The shape of each message type's body (beyond v and type); undefined when it is well-formed.
function shapeProblem(m: Record<string, unknown>): string | undefined {
  switch (m.type) {
    case 'hello':
      if (m.connections !== undefined && typeof m.connections !== 'boolean') return "'hello' has a malformed connections flag";
      return m.names === undefined ? undefined : checkNames(m.names);
    case 'listeners': {
      const entries = m.entries;
      if (!Array.isArray(entries) || entries.length === 0) return "'listeners' needs a non-empty entries array";
      for (const e of entries as unknown[]) {
        const entry = e as { name?: unknown; kind?: unknown } | null;
        if (entry === null || typeof entry !== 'object' || !isName(entry.name) || !KINDS.includes(entry.kind as string)) {
          return "a 'listeners' entry needs a name and a kind";
        }
      }
      return undefined;
    }
    case 'done': {
      if (!Number.isInteger(m.count) || (m.count as number) < 0) return "'done' needs a count";
      const skipped = m.skipped ?? [];
      if (!Array.isArray(skipped)) return "'done' has a malformed skipped list";
      for (const s of skipped as unknown[]) {
        const entry = s as { name?: unknown; reason?: unknown } | null;
        if (entry === null || typeof entry !== 'object' || !isName(entry.name) || typeof entry.reason !== 'string') {
          return "'done' has a malformed skipped list";
        }
      }
      return undefined;
    }
    case 'ready':
      return undefined;
    case 'ack':
      return m.connections === undefined ? undefined : countsProblem(m.connections);
    case 'connection':
      if (!isId(m.id)) return "'connection' needs an id";
      if (m.protocol !== 'http1' && m.protocol !== 'socket') return "'connection' needs a protocol";
      if (m.listener !== undefined && !isName(m.listener)) return "'connection' has a malformed listener name";
      if (m.unread !== undefined && typeof m.unread !== 'string') return "'connection' has malformed unread bytes";
      return undefined;
    case 'adopted':
      return isId(m.id) ? undefined : "'adopted' needs an id";
    case 'refused':
      return isId(m.id) && typeof m.reason === 'string' ? undefined : "'refused' needs an id and a reason";
    case 'end':
      return countsProblem(m.connections);
    case 'error':
      return typeof m.code === 'string' && typeof m.message === 'string' ? undefined : "'error' needs a code and a message";
    default:
      return `unknown message type '${String(m.type)}'`;
  }
}

/**
 * Decodes one received message, expecting one of `expected`. On any problem (not JSON, another
 * version, a bad shape, an unexpected type, fds where none belong) its fds are closed and it throws
 * ERR_FDPASS_HANDOFF_PROTOCOL (or _VERSION). On success the fds of a 'listeners' message (one per
 * entry) and of a 'connection' message (exactly one) are the caller's; every other type carries none.
 */
export function decode(m: Message, expected: readonly WireType[]): Wire {
  let problem: FdpassError | undefined;
  let msg: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(m.data.toString('utf8'));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    msg = parsed as Record<string, unknown>;
  } catch {
    problem = protocolError('the peer sent a message that is not a JSON object');
  }
  if (msg !== undefined) {
    if (msg.v !== HANDOFF_PROTOCOL_VERSION) {
      problem = new FdpassError(
        'ERR_FDPASS_HANDOFF_VERSION',
        `the peer speaks hand-off protocol version ${String(msg.v)}, this process ${HANDOFF_PROTOCOL_VERSION}`,
      );
    } else {
      const shape = shapeProblem(msg);
      if (shape !== undefined) problem = protocolError(`the peer sent a malformed message: ${shape}`);
      else if (msg.type === 'error') {
        // An error answer is always acceptable: the caller turns it into a rejection.
      } else if (!expected.includes(msg.type as WireType)) {
        problem = protocolError(`expected ${expected.map((t) => `'${t}'`).join(' or ')}, got '${String(msg.type)}'`);
      } else if (msg.type === 'listeners') {
        const n = (msg.entries as unknown[]).length;
        if (n !== m.fds.length) problem = protocolError(`a batch named ${n} listeners but carried ${m.fds.length} fds`);
      } else if (msg.type === 'connection' && m.fds.length !== 1) {
        problem = protocolError(`a 'connection' message carried ${m.fds.length} fds instead of 1`);
      }
    }
    if (problem === undefined && msg.type !== 'listeners' && msg.type !== 'connection' && m.fds.length > 0) {
      problem = protocolError(`a '${String(msg.type)}' message carried ${m.fds.length} fds`);
    }
  }
  if (problem !== undefined) {
    closeQuietly(m.fds);
    throw problem;
  }
  return msg as Wire;
}

/**
 * One message from the control socket. A message larger than the receive buffer (MSG_TRUNC; the
 * channel has already closed the fds it carried) means the peer broke the protocol, so it rejects
 * with ERR_FDPASS_HANDOFF_PROTOCOL like any malformed message; any other error as the channel gave it.
 */
export function receiveWire(ch: Channel, opts?: WaitOptions): Promise<Message> {
  return ch.receive(opts).catch((err: unknown) => {
    throw damagedMessage(err) ?? err;
  });
}

/**
 * The new process's receiveWire() while connections move: a message dropped because its descriptor
 * did not fit in this process (MSG_CTRUNC: at its RLIMIT_NOFILE) resolves 'lost' instead of
 * rejecting. Only a 'connection' carries a descriptor then, so it was the one with the next id.
 */
export function receiveMoved(ch: Channel): Promise<Message | 'lost'> {
  return ch.receive().catch((err: unknown) => {
    if (err instanceof FdpassError && err.code === 'ERR_FDPASS_CTRUNC') return 'lost' as const;
    throw damagedMessage(err) ?? err;
  });
}

// A message the kernel could not deliver whole is a malformed one: the peer is told, as for bad JSON.
function damagedMessage(err: unknown): FdpassError | undefined {
  if (!(err instanceof FdpassError)) return undefined;
  if (err.code === 'ERR_FDPASS_TRUNCATED') {
    return protocolError(
      `the peer sent a message larger than the ${DEFAULT_MAX_MESSAGE_SIZE / 1024} KiB receive buffer (MSG_TRUNC); the fds it carried were closed`,
    );
  }
  if (err.code === 'ERR_FDPASS_CTRUNC') {
    return protocolError(
      "the peer sent a message whose fds did not all fit (MSG_CTRUNC: this process's descriptor limit, RLIMIT_NOFILE, or more than 253); those that arrived were closed",
    );
  }
  return undefined;
}

/**
 * The error a peer's 'error' message stands for. A code this fdpass does not know (not fdpass's, or
 * another version's) becomes PROTOCOL; one that looks like fdpass's is kept in the message.
 */
export function peerError(msg: { code: string; message: string }): FdpassError {
  if (isFdpassErrorCode(msg.code)) return new FdpassError(msg.code, msg.message);
  const unknown = /^ERR_FDPASS_[A-Z_]+$/.test(msg.code) ? ` (the peer's code ${msg.code} is unknown here)` : '';
  return new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `${msg.message}${unknown}`);
}

/**
 * True when `err` means the peer has gone (it closed, exited or was killed): a send then fails with
 * EPIPE/ECONNRESET/ENOTCONN, a receive with ERR_FDPASS_CLOSED. One rule for both directions, so a
 * peer leaving mid-transfer is reported one way, not as whichever call noticed first.
 */
export function isPeerGone(err: unknown): boolean {
  if (err instanceof FdpassSystemError) return err.code === 'EPIPE' || err.code === 'ECONNRESET' || err.code === 'ENOTCONN';
  return err instanceof FdpassError && err.code === 'ERR_FDPASS_CLOSED';
}

export function kindOfListener(fd: number): ListenerKind {
  const s = inspect(fd).socket;
  if (isUdpSocket(s)) return 'udp';
  if (isStreamSocket(s)) return s.domain === 'unix' ? 'unix' : 'tcp';
  return 'other';
}

/**
 * Splits entries into 'listeners' messages of at most 253 fds and MAX_BATCH_BYTES of JSON, sized by
 * the JSON actually sent (a name of 1,000 backslashes takes 2,000 bytes on the wire).
 */
export function batches<T extends { name: string; kind: ListenerKind }>(entries: T[]): T[][] {
  const overhead = encode({ type: 'listeners', entries: [] }).length;
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = overhead;
  for (const e of entries) {
    const size = Buffer.byteLength(JSON.stringify({ name: e.name, kind: e.kind })) + 1; // + the comma
    if (current.length === MAX_FDS_PER_MESSAGE || (current.length > 0 && bytes + size > MAX_BATCH_BYTES)) {
      out.push(current);
      current = [];
      bytes = overhead;
    }
    current.push(e);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}
