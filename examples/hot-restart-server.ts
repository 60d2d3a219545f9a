// A zero-downtime server: start it again and the new process takes over the listener from the old
// one (fdpass hand-off); the old one finishes its in-flight requests and exits. The README's recipe in
// TypeScript, with a choice of protocol:
//   node hot-restart-server.js <port> <control-socket-path> [http|https|http2 [key.pem cert.pem]]
// Prints one JSON line {"event":"serving",...} when it serves. SIGTERM: stop serving, drain, exit 0.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type * as net from 'node:net';
import { handoff, type FdpassError } from 'fdpass';

function createServer(kind: string, key?: string, cert?: string): net.Server {
  const hello = (_req: unknown, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    res.end(`hello from ${process.pid}\n`);
  };
  if (kind === 'http') return http.createServer(hello);
  const tls = { key: fs.readFileSync(key!), cert: fs.readFileSync(cert!) };
  if (kind === 'https') return https.createServer(tls, hello);
  if (kind === 'http2') return http2.createSecureServer({ ...tls, allowHTTP1: true }, hello);
  throw new Error(`unknown server kind '${kind}'`);
}

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? 8080);
  const control = process.argv[3] ?? '/tmp/hot-restart.sock';
  const server = createServer(process.argv[4] ?? 'http', process.argv[5], process.argv[6]);

  // 1. Take the listener from the previous generation, or bind it fresh on first start.
  const inherited = await handoff.take(control);
  if (inherited) await inherited.server('http', server);
  else await new Promise<void>((resolve) => server.listen(port, resolve));

  // 2. Serving: after a second side by side (so V8 warms up while the old process still takes its
  //    share), tell the old process, which then closes its copy and drains. If it rolled back, it
  //    still serves: leave. Anything else (it hangs): keep serving.
  try {
    await inherited?.ready({ overlap: 1000 });
  } catch (err) {
    if ((err as FdpassError).code === 'ERR_FDPASS_HANDOFF_ROLLBACK') process.exit(1);
    console.error(`hand-off: ${(err as Error).message}; serving anyway`);
  }

  // 3. Offer the listener to the next generation; exit once handed off and drained.
  const hs = await handoff.serve(control, { http: server }, { drainTimeout: 10_000 });
  hs.on('drained', () => process.exit(0));
  process.on('SIGTERM', () => void hs.stop().then(() => process.exit(0)));
  process.stdout.write(`${JSON.stringify({ event: 'serving', pid: process.pid, inherited: inherited !== null })}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
