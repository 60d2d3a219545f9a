// npm run bench:migrate-websocket — WebSocket clients across hand-offs that move their connections:
// CLIENTS (200) ws clients of examples/websocket-server.ts, each sending a message every 100 ms, while
// HANDOFFS (10) generations take over one after another (each started 1 s after the previous one
// exited). Every answer says `<pid> <n> <message>`, n counting the connection's messages (state that
// moves with it), so a lost, repeated or reordered message shows. Prints one JSON line: messages,
// answers, lost, out of order, the clients' 'close' events, and the connections moved per hand-off.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { WebSocket } from 'ws';
import { freePort } from './load';

const ROOT = path.join(__dirname, '..', '..');
const SERVER = path.join(ROOT, '.bench-out', 'examples', 'websocket-server.js'); // compiled with the bench
const CLIENTS = Number(process.env.CLIENTS ?? 200);
const HANDOFFS = Number(process.env.HANDOFFS ?? 10);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Generation {
  child: ChildProcess;
  wait(name: string): Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

function start(port: number, control: string): Generation {
  const child = spawn(process.execPath, [SERVER, String(port), control], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as Record<string, unknown>);
    for (const w of waiters.splice(0)) w();
  });
  return {
    child,
    async wait(name) {
      for (;;) {
        const e = events.find((x) => x.event === name);
        if (e) return e;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
    exited: new Promise<void>((resolve) => child.once('exit', () => resolve())),
  };
}

async function main(): Promise<void> {
  const port = await freePort();
  const control = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-ws-')), 'control.sock');
  let current = start(port, control);
  await current.wait('serving');
  let closes = 0;
  let outOfOrder = 0;
  let answers = 0;
  const sent: number[] = [];
  const got: number[] = [];
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
      sent[i] = 0;
      got[i] = 0;
      ws.on('message', (data) => {
        got[i]!++;
        answers++;
        const [, n, message] = String(data).split(' ');
        if (n !== String(got[i]) || message !== String(got[i])) outOfOrder++;
      });
      ws.on('close', () => closes++);
      await new Promise((resolve) => ws.once('open', resolve));
      return ws;
    }),
  );
  let sending = true;
  const senders = clients.map(async (ws, i) => {
    await sleep(Math.random() * 100);
    while (sending) {
      ws.send(String(++sent[i]!));
      await sleep(100);
    }
  });
  const moved: number[] = [];
  let failed = 0;
  let drained = 0;
  for (let k = 0; k < HANDOFFS; k++) {
    await sleep(1000);
    const next = start(port, control);
    await next.wait('serving');
    const counts = (await current.wait('drained')).counts as { migrated: number; failed: number; drained: number };
    moved.push(counts.migrated);
    failed += counts.failed;
    drained += counts.drained;
    await current.exited;
    current = next;
  }
  await sleep(1000);
  sending = false;
  await Promise.all(senders);
  await sleep(500);
  const messages = sent.reduce((a, b) => a + b, 0);
  const lost = messages - got.reduce((a, b) => a + b, 0);
  console.log(
    JSON.stringify({ clients: CLIENTS, handoffs: HANDOFFS, messages, answers, lost, outOfOrder, closes, moved, failed, drained }),
  );
  for (const ws of clients) ws.terminate();
  current.child.kill('SIGKILL');
  await current.exited;
  fs.rmSync(path.dirname(control), { recursive: true, force: true });
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
