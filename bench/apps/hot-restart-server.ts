// The benchmarks' zero-downtime server (bench:handoff, bench:migrate, chaos, soak): the hand-off
// recipe of examples/hot-restart-server.ts with a choice of protocol, knobs and reports for the bench.
// Start it again and the new process takes over the listener from the old one; the old one finishes its
// in-flight requests and exits.
//   node hot-restart-server.js <port> <control-socket-path> [http|https|http2 [key.pem cert.pem]]
// Prints JSON lines: {"event":"took"} once it accepts on a listener taken from the old process,
// {"event":"serving"} when it serves (and offers the listener on), {"event":"draining"} once it handed
// the listener off and drains; each with its pid and "t", ms since the epoch. SIGTERM: stop serving,
// drain, exit 0. Responses echo a request's X-Start header, so that a load generator (bench:handoff's
// wrk script) can time each request. CLOSE_SPREAD=ms spreads the drain's connection closes over a
// window (serve's closeSpread; default 0, all at once). MIGRATE=1: keep-alive connections move to
// the next generation instead (serve's migrate), and {"event":"drained","counts":...} says where they
// went; CLOSE_SPREAD then spreads the moves over its window (e.g. `CLOSE_SPREAD=1000 MIGRATE=1`). WARM_UP=n: requests warmUp() sends the new server before it takes the listener (default 500;
// 0: none, so the first clients meet a cold JIT). At exit, {"event":"accepted","connections":n}: how
// many connections its listener accepted (those that moved in from the old process not counted; null
// if their final count had not come yet), which bench:handoff sums over the generations.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { handoff, warmUp, type FdpassError, type MigrationCounts } from 'fdpass';

function report(event: string, extra: object = {}): void {
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...extra, t: performance.timeOrigin + performance.now() })}\n`);
}

function createServer(kind: string, key?: string, cert?: string): net.Server {
  const hello = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    const start = req.headers['x-start'];
    if (start !== undefined) res.setHeader('x-start', start);
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

  // 1. Warm up: run requests through the server's own code first, so that the clients moving over from
  //    the old process do not queue behind a cold JIT (paced, so the old process keeps its CPU share).
  const warmRequests = Number(process.env.WARM_UP ?? 500);
  if (warmRequests > 0) await warmUp(server, { requests: warmRequests });

  // Connections from clients: the server's 'connection' events from here on (after the warm-up's own),
  // less those that moved in from the old process, which it emits there too.
  let connections = 0;
  server.on('connection', () => connections++);
  let movedIn: number | null = 0;
  process.on('exit', () => report('accepted', { connections: movedIn === null ? null : connections - movedIn }));

  // 2. Take the listener from the previous generation, or bind it fresh on first start.
  const inherited = await handoff.take(control);
  let moved = false; // the final count of connections moved in has come
  inherited?.on('migrated', (counts: MigrationCounts) => {
    movedIn = counts.migrated;
    moved = true;
  });
  if (inherited) {
    await inherited.server('http', server);
    report('took');
  } else await new Promise<void>((resolve) => server.listen(port, resolve));

  // 3. Serving: after a second side by side (so V8 warms up while the old process still takes its
  //    share), tell the old process, which then closes its copy and drains. If it rolled back, it
  //    still serves: leave. Anything else (it hangs): keep serving.
  try {
    const result = await inherited?.ready({ overlap: 1000 });
    if (result?.connections !== undefined && !moved) movedIn = null; // until 'migrated'
  } catch (err) {
    if ((err as FdpassError).code === 'ERR_FDPASS_HANDOFF_ROLLBACK') process.exit(1);
    console.error(`hand-off: ${(err as Error).message}; serving anyway`);
  }

  // 4. Offer the listener to the next generation; exit once handed off and drained.
  const closeSpread = Number(process.env.CLOSE_SPREAD ?? 0); // serve() refuses a bad one
  // MIGRATE=1: idle keep-alive connections move to the next generation instead of being drained
  // (spread over CLOSE_SPREAD ms too: one option for letting go of connections, moved or closed).
  const migrate = process.env.MIGRATE === '1';
  const hs = await handoff.serve(control, { http: server }, { drainTimeout: 10_000, closeSpread, migrate });
  hs.on('handoff', () => report('draining'));
  hs.on('drained', (counts) => {
    if (counts !== undefined) report('drained', { counts });
    process.exit(0);
  });
  process.on('SIGTERM', () => void hs.stop().then(() => process.exit(0)));
  report('serving', { inherited: inherited !== null });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
