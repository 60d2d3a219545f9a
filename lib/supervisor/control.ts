// The control socket of `fdpass run --control PATH`, both ends: a seqpacket socket where a client
// (`fdpass reload PATH`) sends one command, 'reload', and gets one JSON answer, the reload's outcome.
import type { Channel } from '../channel';
import { connect, listen, type ChannelServer } from '../endpoints';
import type { Log } from './options';

/** A reload's outcome, as the control socket answers it. */
export interface ReloadResult {
  ok: boolean;
  message: string;
}

/** Listens on `path`; each connection's 'reload' runs `reload` and is answered with its result. */
export async function serveControl(path: string, reload: () => Promise<ReloadResult>, log: Log): Promise<ChannelServer> {
  const server = await listen(path, { type: 'seqpacket' });
  server.on('connection', (ch: Channel) => {
    ch.on('error', () => {});
    ch.once('message', (m) => {
      const cmd = m.data.toString('utf8').trim();
      const reply = (r: ReloadResult): void => {
        ch.send({ data: Buffer.from(JSON.stringify(r)) }).then(
          () => ch.close(),
          () => ch.close(),
        );
      };
      if (cmd === 'reload') void reload().then(reply);
      else reply({ ok: false, message: `unknown command '${cmd}'` });
    });
  });
  server.on('error', (err: Error) => log(`control socket: ${err.message}`, 'failure'));
  return server;
}

/** Asks the supervisor at `target` to reload; undefined if it closed the connection without an answer. */
export async function requestReload(target: string): Promise<ReloadResult | undefined> {
  const ch = await connect(target, { type: 'seqpacket' });
  try {
    await ch.send({ data: Buffer.from('reload') });
    for await (const m of ch) return JSON.parse(m.data.toString('utf8')) as ReloadResult;
    return undefined;
  } finally {
    ch.close();
  }
}
