// What Node users do today: a cluster primary with one worker, replaced by a rolling restart on
// SIGHUP (fork a new worker, wait for 'listening', disconnect the old one). The primary itself can
// never be replaced this way.
//   node cluster-server.js <port> [workers]
// Prints {"event":"serving"} once the workers listen, {"event":"restarted"} after each rolling restart,
// and from each worker at its exit {"event":"accepted","connections":n}: how many connections it was
// given (the workers share the primary's stdout; bench:handoff sums them).
import cluster from 'node:cluster';
import * as http from 'node:http';

const port = Number(process.argv[2] ?? 8080);
const workers = Number(process.argv[3] ?? 1);

if (cluster.isPrimary) {
  let current = Array.from({ length: workers }, () => cluster.fork());
  let ready = 0;
  cluster.on('listening', () => {
    if (++ready === workers) process.stdout.write(`${JSON.stringify({ event: 'serving', pid: process.pid })}\n`);
  });
  process.on('SIGHUP', () => {
    const old = current;
    current = old.map(() => cluster.fork());
    let up = 0;
    for (const w of current) {
      w.once('listening', () => {
        if (++up === current.length) {
          for (const o of old) o.disconnect();
          process.stdout.write(`${JSON.stringify({ event: 'restarted' })}\n`);
        }
      });
    }
  });
  process.on('SIGTERM', () => {
    for (const w of current) w.disconnect();
    process.exit(0);
  });
} else {
  const server = http.createServer((req, res) => {
    // Echoed so that a load generator (bench:handoff's wrk script) can time each request.
    if (req.headers['x-start'] !== undefined) res.setHeader('x-start', req.headers['x-start']);
    res.end(`hello from ${process.pid}\n`);
  });
  let connections = 0;
  server.on('connection', () => connections++);
  process.on('exit', () => process.stdout.write(`${JSON.stringify({ event: 'accepted', pid: process.pid, connections })}\n`));
  server.listen(port);
}
