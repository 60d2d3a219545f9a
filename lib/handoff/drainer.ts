// What the drain of one server is (a Drainer), and the drain of a server whose protocol fdpass does
// not know: its connections end when their clients or the application end them, or at the deadline.
import type * as net from 'node:net';
import { connectionsOf } from './connections';
import { stopListening } from './stop-listening';

/** One server's drain: started at once, finished (or cut) at the deadline. */
export interface Drainer {
  /** Resolves when the server's last connection has ended. */
  closed: Promise<void>;
  /** Called every sweep: closes what has stayed idle long enough. */
  sweep(now: number): void;
  /** The deadline: cut whatever is left. */
  cut(): void;
}

export function drainPlain(server: net.Server): Drainer {
  return {
    closed: stopListening(server),
    sweep() {},
    cut() {
      for (const socket of connectionsOf(server)) socket.destroy();
    },
  };
}
