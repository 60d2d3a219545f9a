'use strict';
// Smoke test of an installed fdpass: hand a listening HTTP socket from one process to another.
//
//   node smoke.cjs --arch ARCH --node MAJOR [--binding DIR/] -- NODE_COMMAND...
//
// Runs receiver.cjs (process 2) and sender.cjs (process 1) beside this file, each with NODE_COMMAND
// (e.g. `/path/to/node`, or `qemu-aarch64-static -L /usr/aarch64-linux-gnu /path/to/arm64/node`),
// in the project where fdpass is installed. Process 1 listens on 127.0.0.1:0, sends the listener to
// process 2 and exits; this process then makes a request on that port, which process 2 must answer.
// Both must have loaded the addon from prebuilds/linux-ARCH/ (or --binding's folder, e.g. build/Release/
// for an addon compiled at install) on Node MAJOR.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const sep = process.argv.indexOf('--');
const opts = {};
for (let i = 2; i < sep; i += 2) opts[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const command = sep > 0 ? process.argv.slice(sep + 1) : [];
if (!opts.arch || !opts.node || command.length === 0) {
  console.error('usage: node smoke.cjs --arch ARCH --node MAJOR -- NODE_COMMAND...');
  process.exit(2);
}

const TIMEOUT_MS = 120_000; // qemu-user starts Node in seconds, not milliseconds
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-smoke-'));
const sock = path.join(dir, 'handoff.sock');
const children = [];

function run(name) {
  const [file, ...args] = command;
  const child = spawn(file, [...args, path.join(__dirname, `${name}.cjs`), sock], {
    cwd: __dirname,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = { name, child, records: [], stderr: '', waiters: [] };
  proc.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  child.on('error', (err) => {
    proc.stderr += `spawn ${file}: ${err.message}\n`;
  });
  child.stderr.on('data', (chunk) => {
    proc.stderr += chunk;
  });
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    // biome-ignore lint/suspicious/noAssignInExpressions: the usual line-splitting loop
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let record;
      try {
        record = JSON.parse(line);
      } catch {
        proc.stderr += `(stdout) ${line}\n`;
        continue;
      }
      proc.records.push(record);
      for (const w of proc.waiters.splice(0)) w();
    }
  });
  children.push(proc);
  return proc;
}

async function until(proc, event) {
  for (;;) {
    const found = proc.records.find((r) => r.event === event);
    if (found) return found;
    const outcome = await Promise.race([
      new Promise((resolve) => proc.waiters.push(() => resolve('record'))),
      proc.exited.then(() => 'exit'),
    ]);
    if (outcome === 'exit' && !proc.records.some((r) => r.event === event)) {
      throw new Error(`${proc.name} exited before '${event}'`);
    }
  }
}

function get(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('request timed out')));
  });
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function checkLoaded(loaded, who) {
  const want = opts.binding ?? `prebuilds/linux-${opts.arch}/`;
  check(loaded.arch === opts.arch, `${who} runs on ${loaded.arch}, expected ${opts.arch}`);
  check(loaded.node.startsWith(`v${opts.node}.`), `${who} runs Node ${loaded.node}, expected ${opts.node}`);
  check(loaded.binding.startsWith(want), `${who} loaded ${loaded.binding}, expected one in ${want}`);
}

async function main() {
  const receiver = run('receiver');
  const sender = run('sender');
  const rLoaded = await until(receiver, 'loaded');
  checkLoaded(rLoaded, 'process 2');
  checkLoaded(await until(sender, 'loaded'), 'process 1');
  const sent = await until(sender, 'sent');
  const senderExit = await sender.exited;
  check(senderExit.code === 0, `process 1 exited with ${senderExit.code ?? senderExit.signal}`);
  const serving = await until(receiver, 'serving');
  check(serving.port === sent.port, `process 2 serves port ${serving.port}, process 1 sent ${sent.port}`);
  check(serving.data === `port ${sent.port}`, `process 2 got payload '${serving.data}'`);
  // Process 1 has exited: only process 2 holds the listener now.
  const body = await get(sent.port);
  check(body === `receiver ${serving.pid}`, `the request was answered '${body}', expected 'receiver ${serving.pid}'`);
  const receiverExit = await receiver.exited;
  check(receiverExit.code === 0, `process 2 exited with ${receiverExit.code ?? receiverExit.signal}`);
  console.log(
    `smoke ok: Node ${rLoaded.node} ${rLoaded.arch}, ${rLoaded.binding}:` +
      ` pid ${sent.pid} listened on 127.0.0.1:${sent.port}, passed it to pid ${serving.pid}, which answered`,
  );
}

const timer = setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_MS / 1000}s`)), TIMEOUT_MS);

function fail(err) {
  console.error(`smoke FAILED (Node ${opts.node} ${opts.arch}): ${err.message}`);
  for (const { name, child, records, stderr } of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    console.error(`--- ${name}: ${records.map((r) => JSON.stringify(r)).join(' ')}`);
    if (stderr) console.error(stderr.trimEnd());
  }
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}

main().then(() => {
  clearTimeout(timer);
  fs.rmSync(dir, { recursive: true, force: true });
}, fail);
