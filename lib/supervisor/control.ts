// The control socket of `fdpass run --control PATH`, both ends: a seqpacket socket where a client
// sends one command and gets one JSON answer: 'reload' (`fdpass reload PATH`), the reload's outcome;
// 'status' (`fdpass status PATH`), the supervisor's SupervisorStatus.
import type { Channel } from '../channel';
import { connect, listen, type ChannelServer } from '../endpoints';
import type { Log } from './options';
import type { SupervisorStatus } from './status';

/** A reload's outcome, as the control socket answers it. */
export interface ReloadResult {
  ok: boolean;
  message: string;
}

export interface ControlHandlers {
  reload(): Promise<ReloadResult>;
  status(): SupervisorStatus;
}

const COMMAND_TIMEOUT_MS = 10_000;

/** Listens on `path`; each connection's one command is answered by its handler. */
export async function serveControl(path: string, on: ControlHandlers, log: Log): Promise<ChannelServer> {
  const server = await listen(path, { type: 'seqpacket' });
  server.on('connection', (ch: Channel) => {
    // A client that never sends its command, or sends one too big to read, is not kept waiting
    // (nor is its descriptor kept) forever.
    const idle = setTimeout(() => ch.close(), COMMAND_TIMEOUT_MS);
    idle.unref();
    ch.on('error', () => {
      clearTimeout(idle);
      ch.close();
    });
    ch.once('message', (m) => {
      clearTimeout(idle);
      const cmd = m.data.toString('utf8').trim();
      const reply = (r: ReloadResult | SupervisorStatus): void => {
        ch.send({ data: Buffer.from(JSON.stringify(r)) }).then(
          () => ch.close(),
          () => ch.close(),
        );
      };
      if (cmd === 'reload') void on.reload().then(reply);
      else if (cmd === 'status') reply(on.status());
      else reply({ ok: false, message: `unknown command '${cmd.slice(0, 100)}'` });
    });
  });
  server.on('error', (err: Error) => log(`control socket: ${err.message}`, 'failure'));
  return server;
}

/** Asks the supervisor at `target` to reload; undefined if it closed the connection without an answer. */
export function requestReload(target: string): Promise<ReloadResult | undefined> {
  return request<ReloadResult>(target, 'reload');
}

/** Asks the supervisor at `target` for its status; undefined if it closed the connection without an answer. */
export function requestStatus(target: string): Promise<SupervisorStatus | undefined> {
  return request<SupervisorStatus>(target, 'status');
}

// A status grows with the workers (about 100 bytes each, two generations during a reload): past a
// default message at a few hundred. The kernel's send buffer bounds what the supervisor can send.
const MAX_ANSWER = 4 * 1024 * 1024;

async function request<T>(target: string, command: string): Promise<T | undefined> {
  const ch = await connect(target, { type: 'seqpacket', maxMessageSize: MAX_ANSWER });
  try {
    await ch.send({ data: Buffer.from(command) });
    for await (const m of ch) return JSON.parse(m.data.toString('utf8')) as T;
    return undefined;
  } finally {
    ch.close();
  }
}
