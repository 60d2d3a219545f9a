// The old process's side of connection migration (issue 23): after the new process said "ready", the
// control connection stays open, and each connection offered goes over it with its fd, its
// application state and the bytes already read from it. The new process answers each: 'adopted'
// (this process closes its copy, which the kernel does not see as a close: the connection lives on
// there) or 'refused' (its copy of the fd is closed there; this one resumes reading and keeps it).
// One that got no answer when the new process went away is closed here too: the new process may
// have read from it, so serving it here could answer a request twice.
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';
import type { Channel } from '../channel';
import { fdOf } from '../adopt';
import { FdpassError } from '../errors';
import { connectionsOf } from './connections';
import { MAX_BATCH_BYTES, decode, encode, receiveWire, type ConnectionProtocol, type MigrationCounts, type Wire } from './protocol';
import { bufferedBytes, holdReading, writesFlushed } from './socket-hold';

const debug = debuglog('fdpass');

/** What goes with a connection besides its descriptor. */
export interface OfferDetails {
  /** The offered listener's name the connection was accepted on, so the new process knows its server. */
  listener?: string | undefined;
  /** The application's state of the connection, a JSON value. */
  state?: unknown;
  /** Bytes read from the connection that the application has not processed, sent before those Node still holds. */
  unread?: Buffer | undefined;
}

export class Migration {
  readonly #channel: Channel;
  #nextId = 1;
  readonly #answers = new Map<number, (adopted: boolean | 'gone') => void>();
  readonly #offers = new Set<Promise<boolean>>();
  readonly #sockets = new Set<net.Socket>(); // every connection of the old process's listeners, and each offered
  readonly #failed = new Set<net.Socket>();
  readonly #offering = new Set<net.Socket>(); // sent or about to be, not yet answered
  #migrated = 0;
  #open = true;
  #ended = false;

  constructor(channel: Channel) {
    this.#channel = channel;
    void this.#readAnswers();
  }

  /** False once the new process has gone or the migration ended: offers then keep their sockets here. */
  get open(): boolean {
    return this.#open;
  }

  /** Counts `server`'s connections (those open now and those it still accepts) in the tallies. */
  track(server: net.Server): void {
    for (const s of connectionsOf(server)) this.#sockets.add(s);
    server.on('connection', (s: net.Socket) => this.#sockets.add(s));
  }

  counts(): MigrationCounts {
    let pending = 0;
    for (const s of this.#sockets) if (!s.destroyed && !this.#failed.has(s)) pending++;
    const failed = this.#failed.size;
    return { migrated: this.#migrated, failed, pending, drained: this.#sockets.size - this.#migrated - failed - pending };
  }

  /** Resolves once every offer made so far has been answered. */
  async settled(): Promise<void> {
    while (this.#offers.size > 0) await Promise.all([...this.#offers]);
  }

  /**
   * Sends `socket` to the new process. Resolves true once it adopted it (the socket is destroyed
   * here), false when it stays here: not sent (the migration is over, the message would be too large,
   * the kernel refused it at once), or refused (reading resumes); or when the new process went away
   * before answering (then it is destroyed here). Throws only on a socket that cannot move (no fd, TLS), or not now
   * (ERR_FDPASS_HANDOFF_BUSY: being offered already, or writes not yet flushed).
   */
  offer(socket: net.Socket, protocol: ConnectionProtocol, details: OfferDetails = {}): Promise<boolean> {
    if (socket instanceof tls.TLSSocket) {
      throw new TypeError('a TLS connection cannot move: its session keys stay in this process');
    }
    const fd = fdOf(socket, 'socket');
    // Two offers would give the new process two sockets reading one connection.
    if (this.#offering.has(socket)) throw new FdpassError('ERR_FDPASS_HANDOFF_BUSY', 'this socket is being offered already');
    // What Node still holds to write (or an end() not yet done) would be lost when our copy closes.
    if (!writesFlushed(socket) || (socket.writableEnded && !socket.writableFinished)) {
      throw new FdpassError('ERR_FDPASS_HANDOFF_BUSY', "the socket has writes not yet flushed to the kernel: offer it after its 'drain'");
    }
    if (!this.#open) return Promise.resolve(false);
    this.#sockets.add(socket); // counted from its offer on, wherever it ends up
    const unread = Buffer.concat([details.unread ?? Buffer.alloc(0), bufferedBytes(socket)]);
    const id = this.#nextId; // consecutive from 1, taken only once sent: see the 'connection' message in protocol.ts
    const data = encode({
      type: 'connection',
      id,
      protocol,
      ...(details.listener !== undefined ? { listener: details.listener } : {}),
      ...(details.state !== undefined ? { state: details.state } : {}),
      ...(unread.length > 0 ? { unread: unread.toString('base64') } : {}),
    });
    if (data.length > MAX_BATCH_BYTES) {
      debug('migration: a connection with %d bytes of state and unread bytes stays here (more than %d)', data.length, MAX_BATCH_BYTES);
      return Promise.resolve(false);
    }
    const release = holdReading(socket);
    if (release === null) return Promise.resolve(false);
    let sent: Promise<void>;
    try {
      sent = this.#sendNow(data, fd);
    } catch (err) {
      // Refused at once (EMFILE duplicating the fd to queue it, ENOBUFS): it never left, its id is
      // not used, and the migration goes on; a closed channel ends it.
      debug('migration: a connection stays here, not sent: %s', (err as Error).message);
      release();
      if (this.#channel.closed) this.#gone();
      return Promise.resolve(false);
    }
    this.#nextId++;
    this.#offering.add(socket);
    const answered = new Promise<boolean | 'gone'>((resolve) => this.#answers.set(id, resolve));
    const outcome = sent.then(
      () => answered,
      (err: Error) => {
        // Queued, then the channel failed: the new process never had it, so it stays here as if never offered.
        debug('migration: sending a connection failed: %s', err.message);
        this.#answers.delete(id);
        this.#gone();
        return 'unsent' as const;
      },
    );
    const done = outcome.then((answer) => {
      this.#offers.delete(done);
      this.#offering.delete(socket);
      if (answer === true) {
        this.#migrated++;
        this.#failed.delete(socket); // refused before, offered again: counted once
        socket.destroy(); // our copy only: the new process holds the connection
        release(); // destroyed: only its handle's readStart is given back
        return true;
      }
      if (answer !== 'unsent') this.#failed.add(socket);
      if (answer === 'gone') socket.destroy();
      release(); // refused or not sent: reading restarts as it was, or as asked for meanwhile
      return false;
    });
    this.#offers.add(done);
    return done;
  }

  // Throws when the kernel refuses the message at once; the promise settles once it has left.
  #sendNow(data: Buffer, fd: number): Promise<void> {
    let settle: (err: Error | null) => void = () => {};
    const left = new Promise<void>((resolve, reject) => (settle = (err) => (err === null ? resolve() : reject(err))));
    this.#channel.write({ data, fds: [fd] }, (err) => settle(err));
    return left;
  }

  /**
   * Tells the new process the migration is over, with the final counts, and closes the connection.
   * Offers still unanswered `grace` ms later count as failed: their sockets are closed here, as when
   * the new process goes away (a new process that stopped answering must not keep this one alive).
   */
  async end(grace = 1000): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), grace)));
    const outcome = await Promise.race([this.settled(), late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      debug('migration: %d offers unanswered at the end: closing them', this.#answers.size);
      this.#gone();
      await this.settled();
    }
    if (this.#open) {
      this.#open = false;
      await this.#channel.send({ data: encode({ type: 'end', connections: this.counts() }) }).catch(() => {});
    }
    await this.#channel.close();
  }

  async #readAnswers(): Promise<void> {
    for (;;) {
      let answer: Wire;
      try {
        answer = decode(await receiveWire(this.#channel), ['adopted', 'refused']);
      } catch (err) {
        debug('migration: the control connection ended: %s', (err as Error).message);
        this.#gone();
        return;
      }
      if (answer.type !== 'adopted' && answer.type !== 'refused') {
        this.#gone(); // an 'error': the new process gave up on migration
        return;
      }
      if (answer.type === 'refused') debug('migration: the new process refused connection %d: %s', answer.id, answer.reason);
      this.#answers.get(answer.id)?.(answer.type === 'adopted');
      this.#answers.delete(answer.id);
    }
  }

  #gone(): void {
    const wasOpen = this.#open;
    this.#open = false;
    for (const resolve of this.#answers.values()) resolve('gone');
    this.#answers.clear();
    if (!this.#ended || wasOpen) this.#channel.destroy();
  }
}
