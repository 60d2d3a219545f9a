// The old process's side of a hand-off: offer the listeners on a control socket, hand them to one new
// process at a time, close our copies only after it says "ready", then drain (DESIGN.md §7).
// Whatever the new process does, this process keeps serving until it has said "ready"; and no error
// of a session escapes as an uncaught exception. Over ~350 lines as one class: the session, rollback,
// stop() and the letting go share one state (#state, #session, #migration); its options live in
// serve-options.ts.
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';
import type { Channel } from '../channel';
import { asError, emitGuarded } from '../emit';
import { closeQuietly } from '../fds';
import type { Message, PeerCredentials } from '../message';
import { sameUser } from '../channel-server';
import { listen, type ChannelServer } from '../endpoints';
import { FdpassError } from '../errors';
import { fdOf } from '../adopt';
import { isHttp1 } from '../http-kind';
import { validateObject } from '../validate';
import { trackConnections } from './connections';
import { closeAndDrain } from './drain';
import { liveFd, validateListeners, type HandoffListener } from './listeners';
import { migrateHttp1 } from './migrate-http1';
import { Migration } from './migration';
import { serveTiming, validateOffer, validateServeOptions, type OfferOptions, type ServeOptions, type ServeTiming } from './serve-options';
import {
  batches,
  decode,
  encode,
  isPeerGone,
  kindOfListener,
  receiveWire,
  peerError,
  type ListenerKind,
  type MigrationCounts,
  type SkippedListener,
} from './protocol';

const debug = debuglog('fdpass');

// A taker is only a taker once it has said hello: a connection that leaves first (the stale-socket
// probe of a second serve() on this path, a port scanner) is no hand-off and changes nothing.
interface Session {
  channel: Channel;
  peer: PeerCredentials;
  offered: boolean; // 'done' went out: the new process holds copies of every listener
  connections: boolean; // its hello said it can adopt connections
}

/**
 * The old process's side of a hand-off: a control socket from which one new process at a time can
 * take the listeners. Events:
 * - `'start'` (peer): a new process said hello and asked for the listeners
 * - `'rollback'` (error, peer): it failed before saying ready; nothing changed here, we keep serving.
 *   `error.code`: ERR_FDPASS_CLOSED (it disconnected, exited or was killed, at any point),
 *   ERR_FDPASS_TIMEOUT (not ready within readyTimeout), ERR_FDPASS_HANDOFF_PROTOCOL / _VERSION /
 *   _UNKNOWN_NAME (it asked for something we cannot give; it is told so)
 * - `'handoff'` (peer): it is ready; our copies are closed and draining has begun (with `migrate`:
 *   and moving connections, so that offers made in this event's handler count in `ready()`'s result).
 *   A listener that throws is reported as `'error'`; the hand-off goes on.
 * - `'drained'` (counts): every connection of ours has ended, moved, or been cut at the drain
 *   deadline; with `migrate`, {@link MigrationCounts} (else undefined)
 * - `'error'`: a problem with the control socket itself, or a `'handoff'` listener that threw (only
 *   emitted when someone listens)
 */
export class HandoffServer extends EventEmitter {
  /** Resolves once this process has let go of the listeners (handed off or stopped) and drained. */
  readonly drained: Promise<void>;
  #control: ChannelServer;
  #listeners: Map<string, HandoffListener>;
  #opts: ServeTiming;
  #session: Session | null = null;
  #migration: Migration | null = null;
  #state: 'serving' | 'handed-off' | 'stopped' = 'serving';
  /** An absolute end (Date.now() ms) for every hand-off, besides readyTimeout (see endAt()). */
  #endAt = Infinity;
  #resolveDrained!: () => void;

  /** @internal Use serve(). */
  constructor(control: ChannelServer, listeners: Map<string, HandoffListener>, opts: ServeOptions) {
    super();
    this.#control = control;
    this.#listeners = listeners;
    this.#opts = serveTiming(opts);
    this.drained = new Promise((resolve) => (this.#resolveDrained = resolve));
    control.on('connection', (ch: Channel) => {
      this.#accept(ch).catch((err: Error) => {
        ch.destroy();
        this.#report(err);
      });
    });
    control.on('error', (err: Error) => this.#report(err));
  }

  /** The control socket's path (or '\0name'). */
  get path(): string {
    return this.#control.path;
  }

  /**
   * @internal For upgrader(): hand-offs must end by `at` (Date.now() ms), its one deadline from the
   * successor's spawn, so that this server and the upgrader never judge the same successor apart.
   */
  endAt(at: number): void {
    this.#endAt = at;
  }

  // ms left for a hand-off begun `since` (Date.now() ms): readyTimeout from then, and no later than #endAt.
  #left(since: number): number {
    return Math.max(1, Math.min(since + this.#opts.readyTimeout, this.#endAt) - Date.now());
  }

  /** True while a new process is taking the listeners. */
  get busy(): boolean {
    return this.#session !== null;
  }

  /** Stops offering the listeners, which stay open and keep serving here. */
  close(): Promise<void> {
    return this.#control.close();
  }

  /**
   * Stops serving: closes the control socket and this process's listeners, and drains. A new process
   * that already holds the listeners (it is in its `overlap`) keeps them and its `ready()` resolves;
   * one still taking them is refused (ERR_FDPASS_HANDOFF_REFUSED). After a hand-off it just waits
   * for the drain under way.
   */
  async stop(): Promise<void> {
    if (this.#state !== 'serving') return this.drained;
    this.#state = 'stopped';
    await this.#control.close();
    const s = this.#session;
    this.#session = null;
    if (s !== null) {
      if (!s.offered) await this.#sendError(s.channel, new FdpassError('ERR_FDPASS_HANDOFF_REFUSED', 'the old process is shutting down'));
      s.channel.destroy();
    }
    await this.#letGo();
  }

  async #accept(ch: Channel): Promise<void> {
    // The first message, or why it could not be read: one too large for the receive buffer, or whose
    // fds did not fit in this process's descriptor table, is a malformed hello, answered and reported
    // like any other.
    let first: Message | Error;
    try {
      first = await receiveWire(ch, { timeout: this.#left(Date.now()) });
    } catch (err) {
      const code = (err as FdpassError).code;
      if (code === 'ERR_FDPASS_HANDOFF_PROTOCOL') {
        first = err as FdpassError; // MSG_TRUNC or MSG_CTRUNC
      } else {
        // It left, or stayed silent: no taker, and it never held up another. A silent one hears why.
        debug('handoff: a connection left or said nothing before saying hello (%s)', (err as Error).message);
        if (code === 'ERR_FDPASS_TIMEOUT') {
          await this.#sendError(ch, new FdpassError('ERR_FDPASS_TIMEOUT', `no hello within ${this.#opts.readyTimeout} ms`));
        }
        ch.destroy();
        return;
      }
    }
    if (this.#state !== 'serving' || this.#session !== null) {
      if (!(first instanceof Error)) closeQuietly(first.fds);
      debug('handoff: refusing a second peer while busy');
      const busy =
        this.#state === 'serving'
          ? new FdpassError('ERR_FDPASS_HANDOFF_BUSY', 'another hand-off is in progress')
          : new FdpassError('ERR_FDPASS_HANDOFF_REFUSED', 'the listeners were already handed off or the old process is shutting down');
      await this.#sendError(ch, busy);
      await ch.close();
      return;
    }
    const session: Session = { channel: ch, peer: ch.peer, offered: false, connections: false };
    this.#session = session;
    try {
      await this.#handOff(session, first);
    } catch (err) {
      this.#rollback(session, err);
      return;
    }
    if (this.#session !== session) return; // stop() ran meanwhile and let go itself
    this.#session = null;
    this.#state = 'handed-off';
    await this.#control.close();
    if (this.#opts.migrate && session.connections) {
      await this.#migrate(session);
      return;
    }
    const draining = this.#letGo(); // our copies close synchronously here, before the ack
    await ch.send({ data: encode({ type: 'ack' }) }).catch(() => {});
    await ch.close();
    debug('handoff: complete to pid %d', session.peer.pid);
    this.#emitHandoff(session.peer);
    await draining;
  }

  // hello -> listeners batches -> done -> (the new process adopts, serves) -> ready
  async #handOff(session: Session, first: Message | Error): Promise<void> {
    if (first instanceof Error) throw first;
    const ch = session.channel;
    const since = Date.now();
    const hello = decode(first, ['hello']);
    if (hello.type === 'error') throw peerError(hello);
    if (hello.type !== 'hello') throw new FdpassError('ERR_FDPASS_HANDOFF_PROTOCOL', 'expected hello');
    debug('handoff: pid %d said hello', session.peer.pid);
    session.connections = hello.connections === true;
    this.emit('start', session.peer);
    const names = hello.names ?? [...this.#listeners.keys()];
    const unknown = names.filter((n) => !this.#listeners.has(n));
    if (unknown.length > 0) {
      throw new FdpassError('ERR_FDPASS_HANDOFF_UNKNOWN_NAME', `no listener named ${unknown.map((n) => `'${n}'`).join(', ')}`);
    }
    const entries: Array<{ name: string; fd: number; kind: ListenerKind }> = [];
    const skipped: SkippedListener[] = [];
    for (const name of names) {
      const fd = liveFd(this.#listeners.get(name)!);
      if (fd === undefined) skipped.push({ name, reason: 'this process closed it before the hand-off' });
      else entries.push({ name, fd, kind: kindOfListener(fd) });
    }
    for (const s of skipped) debug("handoff: not offering '%s': %s", s.name, s.reason);
    for (const batch of batches(entries)) {
      if (this.#session !== session) return;
      await ch.send({
        data: encode({ type: 'listeners', entries: batch.map(({ name, kind }) => ({ name, kind })) }),
        fds: batch.map((e) => e.fd),
      });
    }
    await ch.send({ data: encode({ type: 'done', count: entries.length, skipped }) });
    session.offered = true;
    const m = await receiveWire(ch, { timeout: this.#left(since) }).catch((err: Error) => {
      if ((err as FdpassError).code === 'ERR_FDPASS_TIMEOUT') {
        throw new FdpassError('ERR_FDPASS_TIMEOUT', `the new process was not ready within ${this.#opts.readyTimeout} ms`);
      }
      throw err;
    });
    const ready = decode(m, ['ready']);
    if (ready.type === 'error') throw peerError(ready);
  }

  // The hand-off with migration: the control connection stays open until the drain ends, for the
  // connections that move. The ack waits for the first offers' answers, so that ready()'s counts
  // say what moved at once.
  async #migrate(session: Session): Promise<void> {
    const migration = new Migration(session.channel);
    this.#migration = migration;
    const draining = this.#letGo(migration); // our copies close synchronously here, before the ack
    this.#emitHandoff(session.peer);
    await Promise.race([migration.settled(), draining]); // a new process that does not answer holds nothing up
    await session.channel.send({ data: encode({ type: 'ack', connections: migration.counts() }) }).catch(() => {});
    debug('handoff: complete to pid %d, moving connections', session.peer.pid);
    await draining;
  }

  /**
   * Moves a connected socket (TCP or Unix, of an offered listener or not) to the new process during
   * a hand-off with `migrate`, with `state` and the bytes already read from it. For any protocol (a
   * WebSocket, a custom one): hold the application's reading first, and pass what its parser holds
   * unprocessed as `unread`; the bytes still in the socket's own buffer go too. Until the promise
   * settles, neither write to the socket nor resume it. Resolves true once the new process adopted
   * it (the socket is then destroyed here, without closing the connection), false when it stays
   * here: refused by the new process (reading resumes), too large a message (state and unread bytes
   * over 48 KiB), refused by the kernel at once (e.g. EMFILE: this process at its descriptor limit
   * when the message had to wait; it may be offered again), or the new process went away before it
   * was sent; or once it went away after (the socket is then destroyed: the new process may have
   * read from it).
   *
   * Possible from the `'handoff'` event until `'drained'`: rejects with ERR_FDPASS_CLOSED before,
   * after, or once the new process has gone. Rejects with ERR_FDPASS_HANDOFF_BUSY when the socket is
   * being offered already, or when Node still holds writes for it (they would be lost: offer it
   * again after its `'drain'` event); ERR_FDPASS_NO_FD for a closed socket; ERR_INVALID_ARG_VALUE
   * for a TLS connection (or the TCP socket under one), an HTTP/2 one, and a `state` that is not JSON;
   * ERR_INVALID_ARG_TYPE for other arguments of the wrong type.
   */
  offer(socket: net.Socket, opts: OfferOptions = {}): Promise<boolean> {
    try {
      validateOffer(socket, opts);
      const migration = this.#migration;
      if (migration === null || !migration.open) {
        throw new FdpassError(
          'ERR_FDPASS_CLOSED',
          'no new process is taking connections (offer() works during a hand-off with migrate, from its handoff event until drained)',
        );
      }
      return migration.offer(socket, 'socket', { listener: this.#nameOf(socket), state: opts.state, unread: opts.unread });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  // The offered listener a connection came from, when it is one of ours.
  #nameOf(socket: net.Socket): string | undefined {
    const server = (socket as net.Socket & { server?: unknown }).server;
    for (const [name, l] of this.#listeners) if (l === server) return name;
    return undefined;
  }

  // The application's handler runs in the middle of the hand-off: one that throws is reported like a
  // failure of the control socket, and the hand-off (with migrate: the moving of connections) goes on.
  #emitHandoff(peer: PeerCredentials): void {
    try {
      this.emit('handoff', peer);
    } catch (err) {
      this.#report(asError(err));
    }
  }

  // Nothing was taken from us: we keep serving. The peer is told why when it can still hear it.
  #rollback(session: Session, err: unknown): void {
    const reason = isPeerGone(err)
      ? new FdpassError('ERR_FDPASS_CLOSED', 'the new process disconnected before it was ready')
      : err instanceof Error
        ? err
        : new Error(String(err));
    if (this.#session !== session) {
      session.channel.destroy(); // stop() took over; its own refusal went out
      return;
    }
    this.#session = null;
    debug('handoff: rollback (%s)', reason.message);
    const ch = session.channel;
    const told = isPeerGone(err) ? Promise.resolve() : this.#sendError(ch, reason);
    void told.then(() => ch.destroy());
    this.emit('rollback', reason, session.peer);
  }

  async #sendError(ch: Channel, err: Error): Promise<void> {
    const code = (err as FdpassError).code ?? 'ERR_FDPASS_HANDOFF_PROTOCOL';
    await ch.send({ data: encode({ type: 'error', code, message: err.message }) }).catch(() => {});
  }

  async #letGo(migration?: Migration): Promise<void> {
    let counts: MigrationCounts | undefined;
    if (migration === undefined) {
      await closeAndDrain(this.#listeners.values(), this.#opts);
    } else {
      const names = new Map<HandoffListener, string>();
      for (const [name, l] of this.#listeners) {
        names.set(l, name);
        if (l instanceof net.Server) migration.track(l);
      }
      await closeAndDrain(this.#listeners.values(), this.#opts, (server) =>
        isHttp1(server) && !(server instanceof tls.Server)
          ? migrateHttp1(server, names.get(server)!, migration, this.#opts.idleGrace, this.#opts.closeSpread)
          : undefined,
      );
      await migration.end();
      counts = migration.counts();
      debug('handoff: connections migrated %d, failed %d, drained %d', counts.migrated, counts.failed, counts.drained);
    }
    this.emit('drained', counts);
    this.#resolveDrained();
  }

  #report(err: Error): void {
    // An 'error' listener that throws is thrown again on the next tick: the hand-off goes on.
    if (this.listenerCount('error') > 0) emitGuarded(this, 'error', err);
    else debug('handoff: %s', err.message);
  }
}

/**
 * Old process: offers `listeners` by name to the next process on the control socket `path`. Rejects
 * with EADDRINUSE when another process (or another serve()) is already serving that path.
 */
export async function serve(path: string, listeners: Record<string, HandoffListener>, opts: ServeOptions = {}): Promise<HandoffServer> {
  const map = validateListeners(listeners);
  validateObject(opts as unknown, 'options');
  validateServeOptions(opts);
  for (const [name, l] of map) {
    fdOf(l, `listeners.${name}`); // each must have an fd now
    if (l instanceof net.Server) trackConnections(l);
  }
  const control = await listen(path, {
    type: 'seqpacket',
    allow: opts.allow ?? sameUser,
    ...(opts.mode !== undefined ? { mode: opts.mode } : {}),
  });
  control.unref(); // waiting for a successor must not keep the process alive
  return new HandoffServer(control, map, opts);
}
