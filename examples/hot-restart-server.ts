// A zero-downtime server: start it again and the new process takes over the listener from the old
// one (fdpass hand-off); the old one finishes its in-flight requests and exits. The recipe of
// docs/handoff.md ("server.mjs") in TypeScript:
//   npm run example -- hot-restart-server [port] [control-socket-path]
// SIGTERM: stop offering, drain, exit 0. (The benchmarks run bench/apps/hot-restart-server.ts, this
// with knobs and reports for a load generator.)
import * as http from 'node:http';
import { handoff, warmUp, type FdpassError } from 'fdpass';

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? 8080);
  const control = process.argv[3] ?? '/tmp/hot-restart.sock';
  const server = http.createServer((_req, res) => res.end(`hello from ${process.pid}\n`));

  await warmUp(server); // 500 requests through it first, so clients never meet a cold JIT
  const inherited = await handoff.take(control); // null on first start
  if (inherited)
    await inherited.server('http', server); // adopt the old process's listener
  else await new Promise<void>((resolve) => server.listen(port, resolve)); // or bind fresh
  try {
    await inherited?.ready({ overlap: 1000 }); // both serve for 1 s, then the old one closes and drains
  } catch (err) {
    if ((err as FdpassError).code === 'ERR_FDPASS_HANDOFF_ROLLBACK') process.exit(1); // the old one kept serving: leave
    console.error(`hand-off: ${(err as Error).message}; serving anyway`); // ERR_FDPASS_TIMEOUT: the old one hangs
  }
  const hs = await handoff.serve(control, { http: server }).catch((err: Error) => {
    console.error(`not offering a hand-off: ${err.message}`); // e.g. a hung old process holds the path
    return null;
  });
  hs?.on('drained', () => process.exit(0)); // handed to the next generation, in-flight work done
  process.on('SIGTERM', () => void (hs ? hs.stop() : Promise.resolve()).then(() => process.exit(0)));
  console.log(`serving on port ${port} as pid ${process.pid}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
