// A stand-in for the NOTIFY_SOCKET that systemd gives the service `fdpass run` runs in: a datagram
// socket that records each message's text and sender pid, and closes any descriptors sent with it.
import { bindDgram, closeFds, type Channel, type Message } from 'fdpass';

export interface Notification {
  text: string;
  pid: number;
}

/** Binds `path`; `got` fills with every message in the order it came. */
export async function upstreamNotifySocket(path: string): Promise<{ upstream: Channel; got: Notification[] }> {
  const got: Notification[] = [];
  const upstream = await bindDgram(path, { allow: () => true });
  upstream.on('message', (m: Message) => {
    closeFds(m.fds);
    got.push({ text: m.data.toString(), pid: m.cred?.pid ?? -1 });
  });
  return { upstream, got };
}
