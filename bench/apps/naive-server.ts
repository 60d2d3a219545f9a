// The naive restart, for comparison: the old process closes its listener and exits, then the new one
// binds the port. Connections arriving in between are refused.
//   node naive-server.js <port>      (SIGTERM: close and exit)
// Prints {"event":"serving"} once bound, and at exit {"event":"accepted","connections":n}: how many
// connections it accepted (bench:handoff sums them over the processes).
import * as http from 'node:http';

const port = Number(process.argv[2] ?? 8080);
const server = http.createServer((req, res) => {
  // Echoed so that a load generator (bench:handoff's wrk script) can time each request.
  if (req.headers['x-start'] !== undefined) res.setHeader('x-start', req.headers['x-start']);
  res.end(`hello from ${process.pid}\n`);
});

let connections = 0;
server.on('connection', () => connections++);
process.on('exit', () => process.stdout.write(`${JSON.stringify({ event: 'accepted', pid: process.pid, connections })}\n`));

function bind(): void {
  server.once('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EADDRINUSE') throw err;
    setTimeout(bind, 5); // the old process has not let go yet
  });
  server.listen(port, () => process.stdout.write(`${JSON.stringify({ event: 'serving', pid: process.pid })}\n`));
}
bind();
process.on('SIGTERM', () => server.close(() => process.exit(0)));
