'use strict';
// Smoke test, process 1: listens on 127.0.0.1:0 with http, sends the listener to process 2 with
// sendFd, closes its own copy and exits. From then on only process 2 can answer on that port.
const http = require('node:http');
const { sendFd } = require('fdpass');
const { log } = require('./loaded.cjs');

const sock = process.argv[2];
const server = http.createServer((_req, res) => res.end(`sender ${process.pid}`));
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  send(port).then(
    () => {
      server.close(); // drops this process's copy only
      log({ event: 'sent', port });
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
});

// Process 2 may not listen on the socket path yet: retry while the path is missing or refuses.
async function send(port) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await sendFd(sock, server, `port ${port}`);
    } catch (err) {
      if (!['ENOENT', 'ECONNREFUSED'].includes(err.code) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
