// The new process's side of a hand-off: connect to the old process, check it may be trusted, and
// receive its listeners (an Inheritance, inheritance.ts); or learn that there is no old process
// (first start) or that it died meanwhile, and wait until its exit has released its ports.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { debuglog } from 'node:util';
import type { Channel } from '../channel';
import { closeQuietly } from '../fds';
import type { PeerCredentials } from '../message';
import { sameUser } from '../channel-server';
import { connect } from '../endpoints';
import { FdpassError, FdpassSystemError } from '../errors';
import { parseName } from '../names';
import { processExiting, processesExiting, whenGone } from '../proc';
import { invalidArgValue, validateFunction, validateInteger, validateObject } from '../validate';
import { DEFAULT_TIMEOUT, Inheritance, type InheritedListener } from './inheritance';
import { checkNames, decode, encode, isPeerGone, receiveWire, peerError } from './protocol';

const debug = debuglog('fdpass');

export interface TakeOptions {
  /** Take only these listeners (default: all), each named once. An unknown name is an error. */
  names?: string[];
  /** Give up on an unresponsive old process after this long. Default 30 s. */
  timeout?: number;
  /** Which old processes to trust. Default: the same uid as this process (or root). */
  allow?: (peer: PeerCredentials) => boolean;
}

// A refused connect says that whoever listened on the path has closed the socket, and a refusal
// carries no pid. If that was an old process's exit, its listeners may still be open for a moment
// (the kernel closes a dying process's newest descriptors first, and the control socket is usually
// newer than the listeners): wait for the exits under way of processes that could have been it (this
// user's and root's, as `sameUser`), so the caller can bind the same ports. Closing descriptors takes
// milliseconds: an exit stuck for longer (a process in uninterruptible sleep) is not waited out.
const EXIT_WAIT_MAX = 5000;
async function exitsFinished(ms: number): Promise<void> {
  const uid = process.getuid?.() ?? 0;
  const exiting = processesExiting(new Set([uid, 0]));
  if (exiting.length === 0) return;
  debug('handoff: waiting for exiting processes %o before a first start', exiting);
  const end = Date.now() + Math.min(ms, EXIT_WAIT_MAX);
  for (const pid of exiting) await whenGone(pid, Math.max(0, end - Date.now()));
}

// A control path whose directory does not exist is a configuration error, not a first start.
function checkDirectory(path: string): void {
  const name = parseName(path);
  if (name.abstract) return;
  const dir = nodePath.dirname(nodePath.resolve(name.name));
  try {
    fs.statSync(dir);
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).errno;
    throw new FdpassSystemError(typeof errno === 'number' ? errno : -2, 'stat', { path: dir });
  }
}

/**
 * New process: takes the listeners from the old process serving `path`. Resolves with null when no
 * old process is there (no socket file, or nobody listening on it: first start, bind fresh sockets)
 * or when it died during the transfer (its listeners died with it), else with an {@link Inheritance}.
 * An old process that is dying is waited for until its exit has closed its listeners, so that their
 * ports can be bound at once; before a refused connect's null (a refusal carries no pid), the exits
 * under way of this user's and root's processes, at most 5 s. A peer in a pid namespace this one
 * cannot see (SO_PEERCRED pid 0) that hangs up rejects with ERR_FDPASS_HANDOFF_REFUSED: whether it
 * died cannot be told. A path whose directory does not exist rejects (ENOENT, syscall 'stat',
 * naming the directory): a typo must not look like a first start.
 */
export async function take(path: string, opts: TakeOptions = {}): Promise<Inheritance | null> {
  validateObject(opts as unknown, 'options');
  const timeout = opts.timeout ?? DEFAULT_TIMEOUT;
  validateInteger(timeout, 'options.timeout', 1, 2 ** 31 - 1);
  if (opts.names !== undefined) {
    const problem = checkNames(opts.names);
    if (problem !== undefined) throw invalidArgValue('options.names', opts.names, problem);
  }
  if (opts.allow !== undefined) validateFunction(opts.allow, 'options.allow');
  let channel: Channel;
  try {
    channel = await connect(path, { type: 'seqpacket', timeout });
  } catch (err) {
    if (err instanceof FdpassSystemError && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
      if (err.code === 'ENOENT') checkDirectory(path);
      else await exitsFinished(timeout);
      debug('handoff: no old process at %s (%s)', path, err.code);
      return null;
    }
    throw err;
  }
  const received: InheritedListener[] = [];
  const oldPid = channel.peer.pid;
  const deadline = Date.now() + timeout;
  try {
    if (!(opts.allow ?? sameUser)(channel.peer)) {
      throw new FdpassError('ERR_FDPASS_HANDOFF_REFUSED', `the process serving '${path}' (uid ${channel.peer.uid}) is not allowed`);
    }
    await channel
      .send({ data: encode({ type: 'hello', ...(opts.names ? { names: opts.names } : {}), connections: true }) })
      .catch((err: Error) => {
        // A busy old process answers and hangs up at once: its answer is still ours to read.
        if (!isPeerGone(err)) throw err;
      });
    const wanted = opts.names ? new Set(opts.names) : undefined;
    for (;;) {
      const m = await receiveWire(channel, { timeout: Math.max(1, deadline - Date.now()) }).catch((err: Error) => {
        if (isPeerGone(err)) {
          throw new FdpassError(
            'ERR_FDPASS_HANDOFF_REFUSED',
            'the old process closed the control connection (refused by its allow policy, or it is shutting down)',
          );
        }
        throw err;
      });
      const msg = decode(m, ['listeners', 'done']); // closes m's fds when it throws
      if (msg.type === 'listeners') {
        // The fds are ours from here: into `received` before any check that may throw.
        msg.entries.forEach((e, i) => received.push({ name: e.name, kind: e.kind, fd: m.fds[i]! }));
        const names = received.map((l) => l.name);
        const problem = checkNames(names) ?? (wanted ? names.find((n) => !wanted.has(n)) : undefined);
        if (problem !== undefined) {
          throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `the old process sent a listener twice or one not asked for (${problem})`);
        }
      } else if (msg.type === 'done') {
        if (msg.count !== received.length) {
          throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', `expected ${msg.count} listeners, received ${received.length}`);
        }
        debug('handoff: took %d listeners from pid %d', received.length, channel.peer.pid);
        return new Inheritance(channel, received, msg.skipped ?? []);
      } else if (msg.type === 'error') {
        throw peerError(msg);
      }
    }
  } catch (err) {
    closeQuietly(received.map((l) => l.fd));
    channel.destroy();
    // It died mid-transfer (killed, crashed): its listeners go with it, nothing is left to take. It
    // hung up as its exit began: wait until that exit has closed them all, so that the caller can bind
    // the same ports and control path (of one in a pid namespace this process cannot see, nothing is
    // known: REFUSED stands).
    if ((err as FdpassError).code === 'ERR_FDPASS_HANDOFF_REFUSED' && processExiting(oldPid)) {
      if (await whenGone(oldPid, Math.max(1, deadline - Date.now()))) {
        debug('handoff: the old process (pid %d) died during the hand-off; starting fresh', oldPid);
        return null;
      }
      throw new FdpassError('ERR_FDPASS_TIMEOUT', `the old process (pid ${oldPid}) began to exit but had not exited within ${timeout} ms`);
    }
    throw err;
  }
}
