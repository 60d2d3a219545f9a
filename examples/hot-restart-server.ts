// A zero-downtime HTTP server: start it again and the new process takes over the listener from the
// old one (fdpass hand-off); the old one finishes its in-flight requests and exits.
//   node hot-restart-server.js <port> <control-socket-path>
// Prints one JSON line {"event":"serving",...} when it serves.
import * as http from 'node:http';
import { handoff } from 'fdpass';

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? 8080);
  const control = process.argv[3] ?? '/tmp/hot-restart.sock';
  const server = http.createServer((_req, res) => res.end(`hello from ${process.pid}\n`));

  // 1. Take the listener from the previous generation, or bind it fresh on first start.
  const inherited = await handoff.take(control);
  if (inherited) await inherited.server('http', server);
  else await new Promise<void>((resolve) => server.listen(port, resolve));

  // 2. Serving: after a second side by side (so V8 warms up while the old process still takes its
  //    share), tell the old process, which then closes its copy and drains.
  await inherited?.ready({ overlap: 1000 });

  // 3. Offer the listener to the next generation; exit once handed off and drained.
  const hs = await handoff.serve(control, { http: server }, { drainTimeout: 10_000 });
  hs.on('drained', () => process.exit(0));
  process.stdout.write(`${JSON.stringify({ event: 'serving', pid: process.pid, inherited: inherited !== null })}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
