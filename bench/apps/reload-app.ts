// The app of `npm run bench:supervisor`, the same under every restart method: under `fdpass run` it
// takes its listener from LISTEN_FDS and says READY=1; elsewhere (PM2's cluster mode, a plain start)
// it listens on PORT. SIGTERM or SIGINT: drain (idle keep-alive connections get a grace period, later
// requests `Connection: close`), then exit. CLOSE_SPREAD=ms spreads those closes over a window
// (drain's closeSpread), so keep-alive clients move to the next generation a few at a time.
// Before it says ready it warms up (warmUp: WARM_UP=n requests, default 500; 0: none).
//   node reload-app.js            (PORT=8080, CLOSE_SPREAD=0, WARM_UP=500)
import * as http from 'node:http';
import { drain, listenFds, notify, toServer, warmUp } from 'fdpass';

async function main(): Promise<void> {
  const closeSpread = Number(process.env.CLOSE_SPREAD ?? 0);
  if (!Number.isInteger(closeSpread) || closeSpread < 0 || closeSpread >= 10_000) {
    throw new RangeError(`CLOSE_SPREAD must be an integer of ms from 0 to 9999, not '${process.env.CLOSE_SPREAD}'`);
  }
  let served = 0;
  const server = http.createServer((_req, res) => {
    served++;
    res.end(`hello from ${process.pid}\n`);
  });
  const warmRequests = Number(process.env.WARM_UP ?? 500);
  if (warmRequests > 0) await warmUp(server, { requests: warmRequests });
  const [inherited] = listenFds();
  if (inherited) await toServer(inherited.fd, server);
  else await new Promise<void>((resolve) => server.listen(Number(process.env.PORT ?? 8080), '127.0.0.1', resolve));
  await notify({ ready: true }); // fdpass run / systemd; false (nothing sent) elsewhere
  process.send?.('ready'); // PM2's --wait-ready
  const stop = (): void =>
    void drain(server, { timeout: 10_000, idleGrace: 1000, closeSpread }).then(() => {
      // How many requests this process answered, for bench/workers.ts' spread between workers.
      process.stdout.write(`${JSON.stringify({ event: 'stopped', pid: process.pid, worker: process.env.FDPASS_WORKER, served })}\n`);
      process.exit(0);
    });
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop); // PM2 stops with SIGINT
  process.stdout.write(`${JSON.stringify({ event: 'serving', pid: process.pid })}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
