// Loopback TCP helpers for tests: a free port, and one line from a plain TCP server.
import * as net from 'node:net';

/** A port that was free on 127.0.0.1 a moment ago (bound to 0, read, closed). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Everything a plain TCP server on 127.0.0.1:port writes before it ends the connection, trimmed. */
export function line(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = net.connect(port, '127.0.0.1');
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got.trim()));
    s.on('error', reject);
  });
}
