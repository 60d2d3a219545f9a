// The listeners a new process took (take.ts builds this from the old process's answer): adopting
// them, saying "ready" so that the old process closes its copies, and then adopting the connections
// the old process moves here. Once this process holds the listeners, losing the old process costs it
// nothing: ready() resolves when the old one acknowledged or is gone.
import { EventEmitter } from 'node:events';
import type * as dgram from 'node:dgram';
import type * as net from 'node:net';
import { debuglog } from 'node:util';
import type { Channel } from '../channel';
import { closeQuietly } from '../fds';
import type { PeerCredentials } from '../message';
import { FdpassError } from '../errors';
import { toDgram, toServer } from '../adopt';
import { adoptConnection } from './adopt-connection';
import { processExiting, whenGone } from '../proc';
import { validateInteger, validateObject } from '../validate';
import { trackConnections } from './connections';
import {
  decode,
  encode,
  isPeerGone,
  receiveMoved,
  peerError,
  type ListenerKind,
  type MigrationCounts,
  type SkippedListener,
  type Wire,
} from './protocol';

const debug = debuglog('fdpass');

/** One listener received from the old process. */
export interface InheritedListener {
  name: string;
  kind: ListenerKind;
  fd: number;
}

/** How a hand-off ended for the new process (what `ready()` resolves with). */
export interface ReadyResult {
  /**
   * true: the old process closed its copies and acknowledged. false: it went away first (it exited,
   * was stopped or killed during the overlap); its copies closed with it. Either way this process now
   * holds the only copies.
   */
  acknowledged: boolean;
  /**
   * Present when the old process moves its connections here (`serve()` with `migrate`): how they
   * stood when it acknowledged. Connections busy then keep moving afterwards; the final counts come
   * with the `'migrated'` event.
   */
  connections?: MigrationCounts;
}

/** A connection the old process moved here with {@link HandoffServer.offer}: the `'connection'` event's argument. */
export interface MigratedConnection {
  /** The connection, adopted: the bytes the old process had read but not processed come first. */
  socket: net.Socket;
  /** The state the old process sent with it (a JSON value), or undefined. */
  state: unknown;
  /** The name of the listener it was accepted on, when the old process offered that listener. */
  listener: string | undefined;
}

/** How long the new process waits for the old one to answer, unless told otherwise. */
export const DEFAULT_TIMEOUT = 30_000;

/**
 * The listeners a new process took from the old one. Adopt each (or take its fd), start serving,
 * then call ready(): only then does the old process close its copies. Events, when the old process
 * moves its connections here (`serve()` with `migrate`), from ready() on:
 * - `'connection'` ({@link MigratedConnection}): a connection the old process offered with
 *   `offer()`; with no listener for this event such connections are refused (they stay there), as
 *   is one whose listener throws. HTTP/1.1 connections go to the http.Server adopted under their
 *   listener's name, as new connections, without this event. Either kind is refused too when that
 *   server has its `maxConnections`, or when its descriptor cannot be received (this process at its
 *   RLIMIT_NOFILE).
 * - `'migrated'` ({@link MigrationCounts}): the old process has moved or drained every connection;
 *   if it went away first, what it still held counts as drained.
 */
export class Inheritance extends EventEmitter {
  readonly #channel: Channel;
  readonly #listeners = new Map<string, InheritedListener>();
  readonly #servers = new Map<string, net.Server>(); // adopted by server(), for the connections that move
  /** Listeners the old process had but could not offer (it had closed them), with the reason. */
  readonly skipped: readonly SkippedListener[];
  #settled = false;
  #nextId = 1; // of the next connection the old process moves (see receiveMoved)

  /** @internal Use take(). */
  constructor(channel: Channel, listeners: InheritedListener[], skipped: SkippedListener[]) {
    super();
    this.#channel = channel;
    for (const l of listeners) this.#listeners.set(l.name, l);
    this.skipped = skipped;
  }

  /** The names received. */
  get names(): string[] {
    return [...this.#listeners.keys()];
  }

  /** The old process's credentials. */
  get peer(): PeerCredentials {
    return this.#channel.peer;
  }

  /** Says whether this inheritance holds a listener named `name`. */
  has(name: string): boolean {
    return this.#listeners.has(name);
  }

  /** What kind of socket `name` is. */
  kind(name: string): ListenerKind {
    return this.#get(name).kind;
  }

  /** Takes the raw descriptor of `name`, which is yours from then on. */
  takeFd(name: string): number {
    const l = this.#get(name);
    this.#listeners.delete(name);
    return l.fd;
  }

  /**
   * Adopts a TCP or Unix listener into `server`, or into a new `net.Server`. If adoption fails the
   * fd stays here (ready()/abort() close it).
   */
  async server<S extends net.Server = net.Server>(name: string, server?: S): Promise<S> {
    const l = this.#get(name);
    const adopted = await toServer(l.fd, server);
    this.#listeners.delete(name);
    this.#servers.set(name, adopted);
    trackConnections(adopted); // its connections and HTTP/2 sessions, for the next hand-off's drain
    return adopted;
  }

  /** Adopts a UDP socket. */
  async dgram(name: string): Promise<dgram.Socket> {
    const l = this.#get(name);
    const adopted = await toDgram(l.fd);
    this.#listeners.delete(name);
    return adopted;
  }

  /**
   * Tells the old process this one is serving. Listeners not adopted or taken are closed. Resolves
   * with `{ acknowledged }` once the old process has closed its copies and its control socket (so
   * this process may serve() the same path for the next generation), or has gone away (exited,
   * killed: then once its exit has closed all its descriptors, so that its control socket no longer
   * accepts): either way this process holds the only copies.
   *
   * Rejects with ERR_FDPASS_HANDOFF_ROLLBACK when the old process gave up on this one (e.g. its
   * readyTimeout passed): it keeps serving, and this process should close what it adopted and exit.
   * Rejects with ERR_FDPASS_TIMEOUT when the old process neither answers nor goes away within
   * `timeout` (default 30 s; it hangs): both hold the listeners, keep serving.
   *
   * `overlap` (ms, default 0): first let both processes accept side by side for that long. A fresh V8
   * serves at about half speed for its first few hundred milliseconds under load, until its handlers
   * are compiled; meanwhile the warm old process takes what this one cannot. Keep it well under the
   * old process's `readyTimeout`. If the old process goes away during the overlap, ready() resolves
   * at once.
   */
  async ready(opts: { timeout?: number; overlap?: number } = {}): Promise<ReadyResult> {
    validateObject(opts as unknown, 'options');
    if (opts.timeout !== undefined) validateInteger(opts.timeout, 'options.timeout', 1, 2 ** 31 - 1);
    if (opts.overlap !== undefined) validateInteger(opts.overlap, 'options.overlap', 0, 2 ** 31 - 1);
    this.#settle();
    const ch = this.#channel;
    const timeout = opts.timeout ?? DEFAULT_TIMEOUT;
    let migrating = false;
    // The old process's next word (ack, or an error when it rolled back) or its disappearance. One
    // that hung up as it exits (killed, crashed) is gone only once its exit has closed its other
    // descriptors: until then its control socket still accepts, and serve() on that path would fail.
    const oldPid = ch.peer.pid;
    const answer: Promise<Wire | 'gone'> = this.#untilAck().then(
      (w) => w,
      async (err: Error) => {
        if (!isPeerGone(err)) throw err;
        if (processExiting(oldPid)) await whenGone(oldPid, timeout);
        return 'gone' as const;
      },
    );
    answer.catch(() => {}); // settled below; close() may reject it first
    let timer: NodeJS.Timeout | undefined;
    const after = (ms: number): Promise<'elapsed'> => new Promise((resolve) => (timer = setTimeout(() => resolve('elapsed'), ms)));
    try {
      if (opts.overlap) {
        const early = await Promise.race([answer, after(opts.overlap)]);
        clearTimeout(timer);
        if (early !== 'elapsed') return readyOutcome(early, false);
      }
      await ch.send({ data: encode({ type: 'ready' }) }).catch((err: Error) => {
        if (!isPeerGone(err)) throw err; // gone: `answer` says so
      });
      const outcome = await Promise.race([answer, after(timeout)]);
      if (outcome === 'elapsed') throw new FdpassError('ERR_FDPASS_TIMEOUT', `the old process did not acknowledge within ${timeout} ms`);
      const result = readyOutcome(outcome, true);
      if (result.connections !== undefined) {
        migrating = true;
        void this.#keepAdopting(result.connections);
      }
      return result;
    } finally {
      clearTimeout(timer);
      if (!migrating) await ch.close();
    }
  }

  // Until 'ack': connections the old process moves at once are adopted as they come.
  async #untilAck(): Promise<Wire> {
    for (;;) {
      const m = await receiveMoved(this.#channel);
      if (m === 'lost') {
        await this.#refuseLost();
        continue;
      }
      const w = decode(m, ['ack', 'connection']);
      if (w.type !== 'connection') return w;
      await this.#adoptOne(w, m.fds[0]!);
    }
  }

  // After 'ack': the connections that were busy move as they become idle, until 'end'. The channel
  // does not keep this process alive, and the old process going away ends it like 'end'.
  async #keepAdopting(atAck: MigrationCounts): Promise<void> {
    const ch = this.#channel;
    ch.unref();
    let final: MigrationCounts | undefined;
    const tally = { migrated: atAck.migrated, failed: atAck.failed };
    for (;;) {
      let w: Wire;
      let fd: number | undefined;
      try {
        const m = await receiveMoved(ch);
        if (m === 'lost') {
          await this.#refuseLost();
          tally.failed++;
          continue;
        }
        w = decode(m, ['connection', 'end']);
        fd = m.fds[0];
      } catch (err) {
        debug('handoff: the old process ended the migration without its counts: %s', (err as Error).message);
        break;
      }
      if (w.type === 'end') {
        final = w.connections;
        break;
      }
      if (w.type !== 'connection') break;
      if (await this.#adoptOne(w, fd!)) tally.migrated++;
      else tally.failed++;
    }
    await ch.close();
    // Gone without its counts: what it still held went with it.
    final ??= {
      ...tally,
      drained: atAck.drained + atAck.pending - (tally.migrated + tally.failed - atAck.migrated - atAck.failed),
      pending: 0,
    };
    this.emit('migrated', final);
  }

  // Adopts one moved connection (or refuses it, closing its fd) and answers the old process.
  async #adoptOne(w: Extract<Wire, { type: 'connection' }>, fd: number): Promise<boolean> {
    this.#nextId = w.id + 1;
    const refusal = adoptConnection(w, fd, this.#servers, this);
    if (refusal !== undefined) debug('handoff: refusing a moved connection: %s', refusal);
    await this.#answer(refusal === undefined ? { type: 'adopted', id: w.id } : { type: 'refused', id: w.id, reason: refusal });
    return refusal === undefined;
  }

  // A connection whose descriptor did not fit here (MSG_CTRUNC; what arrived is closed): refused, so
  // that the old process keeps it.
  async #refuseLost(): Promise<void> {
    const id = this.#nextId++;
    const reason = "its descriptor could not be received (MSG_CTRUNC: this process's descriptor limit, RLIMIT_NOFILE)";
    debug('handoff: refusing moved connection %d: %s', id, reason);
    await this.#answer({ type: 'refused', id, reason });
  }

  async #answer(answer: Wire): Promise<void> {
    await this.#channel.send({ data: encode(answer) }).catch((err: Error) => {
      if (!isPeerGone(err)) throw err;
    });
  }

  /** Gives up the hand-off: the old process keeps serving. */
  async abort(): Promise<void> {
    this.#settle();
    this.#channel.destroy();
  }

  #settle(): void {
    if (this.#settled) throw new FdpassError('ERR_FDPASS_CLOSED', 'ready() or abort() was already called');
    this.#settled = true;
    closeQuietly([...this.#listeners.values()].map((l) => l.fd));
    this.#listeners.clear();
  }

  #get(name: string): InheritedListener {
    const l = this.#listeners.get(name);
    if (l === undefined)
      throw new FdpassError('ERR_FDPASS_HANDOFF_UNKNOWN_NAME', `no inherited listener named '${name}' (or it was already adopted)`);
    return l;
  }
}

function readyOutcome(w: Wire | 'gone', sentReady: boolean): ReadyResult {
  if (w === 'gone') {
    debug('handoff: the old process went away before acknowledging; its copies are closed');
    return { acknowledged: false };
  }
  if (w.type === 'error') {
    const why = peerError(w);
    throw new FdpassError('ERR_FDPASS_HANDOFF_ROLLBACK', `the old process rolled back and keeps serving: ${why.message} (${why.code})`);
  }
  if (!sentReady) throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', "the old process acknowledged before this one said 'ready'");
  if (w.type === 'ack' && w.connections !== undefined) return { acknowledged: true, connections: w.connections };
  return { acknowledged: true };
}
