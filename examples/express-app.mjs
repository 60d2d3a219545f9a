// An Express app run by `fdpass run` (or by systemd with socket activation). Its listener comes from
// LISTEN_FDS (the one named "http"), it says READY=1 once it serves, and on SIGTERM (sent when the next
// generation is ready) it drains: idle keep-alive connections get a grace period and later requests
// `Connection: close`, so no client's next request meets a closed connection. From a clone:
//   npx fdpass run -l http=127.0.0.1:8080 --control /tmp/express-app.ctl -- node examples/express-app.mjs
//   npx fdpass reload /tmp/express-app.ctl
import * as http from 'node:http';
import express from 'express';
import { adoptListenFds, drain, notify, startWatchdog, warmUp } from 'fdpass';

const app = express();
app.get('/', (_req, res) => res.type('text').send(`hello from ${process.pid}\n`));
app.get('/healthz', (_req, res) => res.json({ pid: process.pid }));

// Express only makes the request handler: the http.Server is ours, so fdpass can adopt the inherited
// listener into it and drain its connections.
const server = http.createServer(app);
await warmUp(server, { requests: 200 }); // compile the routes before the first client, who would wait for it

const listeners = await adoptListenFds({ servers: { http: server } });
if (!server.listening) {
  const names = listeners.map((l) => l.name).join(', ') || 'none';
  console.error(
    `express-app: no listener named "http" (got: ${names}); run it as: fdpass run -l http=HOST:PORT -- node ${process.argv[1]}`,
  );
  process.exit(1);
}
await notify({ ready: true }); // READY=1: fdpass run now stops the old generation
startWatchdog(); // WATCHDOG=1 pings when --watchdog or WatchdogSec= asks for them

process.once('SIGTERM', async () => {
  await drain(server, { closeSpread: 500 }); // keep-alive clients move over a few at a time
  process.exit(0);
});
