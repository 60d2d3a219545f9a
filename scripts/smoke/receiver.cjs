'use strict';
// Smoke test, process 2: receives the listener with recvFd, adopts it into an http.Server with
// toServer, answers one request with its pid, then closes and exits.
const http = require('node:http');
const { recvFd, toServer } = require('fdpass');
const { log } = require('./loaded.cjs');

async function main() {
  const { fd, data } = await recvFd(process.argv[2], { timeout: 60_000 });
  const server = http.createServer((_req, res) => {
    res.end(`receiver ${process.pid}`, () => server.close());
  });
  await toServer(fd, server); // the server owns fd now
  log({ event: 'serving', port: server.address().port, data: data.toString() });
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
