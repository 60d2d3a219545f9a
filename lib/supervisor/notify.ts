// sd_notify, both ways: the NOTIFY_SOCKET the supervisor reads for its generations (credentials
// checked against each generation's process tree), and the few messages it sends to a systemd above it.
import * as fs from 'node:fs';
import type { Channel } from '../channel';
import { closeQuietly } from '../fds';
import type { Message } from '../message';
import { bindDgram } from '../endpoints';
import { parentOf } from '../proc';
import { notify, type NotifyState } from '../systemd';
import type { Log } from './options';

/**
 * Which of `roots` has `pid` in its process tree (pid itself, or an ancestor by the ppid chain).
 * Undefined if none does, or if the sender is gone already (systemd drops such messages too).
 */
export function rootOf(pid: number, roots: ReadonlySet<number>): number | undefined {
  let p: number | undefined = pid;
  for (let hops = 0; p !== undefined && p > 1 && hops < 64; hops++) {
    if (roots.has(p)) return p;
    p = parentOf(p);
  }
  return undefined;
}

/** One notify message, parsed: KEY=VALUE lines (the protocol's; VALUE may hold '=' but no newline). */
export function parseNotify(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of data.toString('utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/**
 * The supervisor's NOTIFY_SOCKET: a Unix datagram socket (owner-only) in a private directory.
 * Accepts a datagram only when its sender's pid (SCM_CREDENTIALS) is a live generation's main process
 * or one of its descendants: systemd's NotifyAccess=all, limited to the generation's process tree.
 * The fds a message carries go to `onMessage`, which owns them from then on (the fd store keeps some
 * and closes the rest, which also answers BARRIER=1).
 */
export class NotifyReceiver {
  readonly path: string;
  readonly #dir: string;
  #channel: Channel | undefined;
  /** Attribution made by `allow` for the message delivered right after it. */
  #pending = new Map<number, number>();

  private constructor(dir: string) {
    this.#dir = dir;
    this.path = `${dir}/notify`;
  }

  static async open(
    dir: string,
    roots: () => ReadonlySet<number>,
    onMessage: (root: number, fields: Map<string, string>, pid: number, fds: number[]) => void,
    onReject: (pid: number) => void,
  ): Promise<NotifyReceiver> {
    const r = new NotifyReceiver(dir);
    const ch = await bindDgram(r.path, {
      allow: (cred) => {
        const root = rootOf(cred.pid, roots());
        if (root === undefined) return false;
        r.#pending.set(cred.pid, root);
        return true;
      },
    });
    r.#channel = ch;
    ch.unref();
    ch.on('message', (m: Message) => {
      const pid = m.cred?.pid ?? -1;
      const root = r.#pending.get(pid);
      r.#pending.delete(pid);
      if (root === undefined) closeQuietly(m.fds);
      else onMessage(root, parseNotify(m.data), pid, m.fds);
    });
    ch.on('reject', (cred: { pid: number }) => onReject(cred.pid));
    ch.on('error', () => {
      // a receive error on a datagram socket loses one message at most; keep reading
    });
    return r;
  }

  close(): void {
    this.#channel?.close();
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }
}

/**
 * Sends to a systemd (or another supervisor) above this one, at `target` (its NOTIFY_SOCKET; none:
 * nothing is sent). Best effort: a failure is logged.
 */
export function upstreamNotifier(target: string | undefined, log: Log): (state: NotifyState) => void {
  return (state) => {
    if (target === undefined) return;
    notify(state, { socket: target }).catch((err: Error) => log(`notifying systemd (${target}): ${err.message}`, 'failure'));
  };
}
