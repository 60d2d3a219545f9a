// A WebSocket server whose clients stay connected across restarts: start it again and the new process
// takes the listener and every WebSocket connection from the old one (a hand-off with `migrate`), in
// the middle of whatever the clients are sending; the old one exits once all have moved.
//   node websocket-server.js <port> <control-socket-path>
// Each text message is answered `<pid> <n> <message>`, n counting the connection's messages (its state,
// which moves with it). JSON lines on stdout: {"event":"serving"}, {"event":"drained", counts}, each
// with the pid. No permessage-deflate: a compression window cannot move (docs/handoff.md).
import * as http from 'node:http';
import type * as net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { handoff, type MigratedConnection, type OfferOptions } from 'fdpass';

// What ws keeps of a connection, read to move it between two frames.
interface WsInternals {
  _socket: net.Socket;
  _protocol: string;
  _receiver: { _state: number; _fragmented: number; _buffers: Buffer[]; writableLength: number };
  setSocket(socket: net.Socket, head: Buffer, options: object): void;
}

/**
 * The bytes of `ws` read but not yet parsed, when its receiver is between frames (then only a partial
 * frame header can be pending), else null: a frame or a fragmented message is under way, try later.
 */
export function unparsed(ws: WebSocket): Buffer | null {
  const r = (ws as unknown as WsInternals)._receiver;
  const GET_INFO = 0;
  if (r._state !== GET_INFO || r._fragmented !== 0 || r.writableLength > 0 || ws.bufferedAmount > 0) return null;
  return Buffer.concat(r._buffers);
}

/**
 * Offers every open WebSocket of `wss` to the new process, each once it is between frames, with the
 * state `stateOf` gives. Resolves when all have been offered and answered.
 */
export async function moveWebSockets(
  wss: WebSocketServer,
  offer: (socket: net.Socket, opts: OfferOptions) => Promise<boolean>,
  stateOf: (ws: WebSocket) => unknown,
): Promise<void> {
  const left = new Set(wss.clients);
  const answers: Array<Promise<boolean>> = [];
  while (left.size > 0) {
    for (const ws of left) {
      if (ws.readyState !== WebSocket.OPEN) {
        left.delete(ws);
        continue;
      }
      const unread = unparsed(ws);
      if (unread === null) continue;
      left.delete(ws);
      const socket = (ws as unknown as WsInternals)._socket;
      socket.pause(); // no frame is parsed here any more
      const state = { protocol: ws.protocol, app: stateOf(ws) };
      answers.push(
        offer(socket, { state, unread })
          .catch(() => false) // the new process went away: nothing is taking connections
          .then((moved) => {
            if (!moved && !socket.destroyed) socket.resume(); // it stays here
            return moved;
          }),
      );
    }
    if (left.size > 0) await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(answers);
}

/** Makes a moved connection a WebSocket of `wss` again, as its handleUpgrade() would have. */
export function adoptWebSocket(wss: WebSocketServer, socket: net.Socket, state: { protocol: string }): WebSocket {
  const Ctor = WebSocket as unknown as new (address: null, protocols: undefined, options: object) => WebSocket;
  const ws = new Ctor(null, undefined, wss.options);
  const internals = ws as unknown as WsInternals;
  internals._protocol = state.protocol;
  // The unread bytes are already in `socket`, first: no head to give.
  internals.setSocket(socket, Buffer.alloc(0), {
    allowSynchronousEvents: wss.options.allowSynchronousEvents,
    maxPayload: wss.options.maxPayload,
    skipUTF8Validation: wss.options.skipUTF8Validation,
  });
  wss.clients.add(ws);
  ws.on('close', () => wss.clients.delete(ws));
  return ws;
}

function report(event: string, extra: object = {}): void {
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...extra })}\n`);
}

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? 8080);
  const control = process.argv[3] ?? '/tmp/websocket-server.sock';
  const server = http.createServer((_req, res) => res.end(`hello from ${process.pid}\n`));
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const counts = new WeakMap<WebSocket, number>();
  const serveClient = (ws: WebSocket, n: number): void => {
    counts.set(ws, n);
    ws.on('message', (data) => {
      const next = (counts.get(ws) ?? 0) + 1;
      counts.set(ws, next);
      ws.send(`${process.pid} ${next} ${String(data)}`);
    });
    ws.on('error', () => {});
  };
  server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => serveClient(ws, 0)));

  // Take the listener, and then the WebSockets, from the previous generation; or bind fresh.
  const inherited = await handoff.take(control);
  if (inherited) {
    await inherited.server('http', server);
    inherited.on('connection', ({ socket, state }: MigratedConnection) => {
      const s = state as { protocol: string; app: number };
      serveClient(adoptWebSocket(wss, socket, s), s.app);
    });
    await inherited.ready();
  } else {
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  }

  // Offer the listener to the next generation; once it is ready, move every WebSocket to it.
  const hs = await handoff.serve(control, { http: server }, { migrate: true });
  hs.on(
    'handoff',
    () =>
      void moveWebSockets(
        wss,
        (socket, opts) => hs.offer(socket, opts),
        (ws) => counts.get(ws) ?? 0,
      ),
  );
  hs.on('drained', (moved) => {
    report('drained', { counts: moved });
    process.exit(0);
  });
  report('serving');
}

if (require.main === module) {
  main().catch((err: Error) => {
    console.error(err);
    process.exit(1);
  });
}
