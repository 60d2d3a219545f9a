// npm run chaos — hand-offs under load where, at a random point of each, the old or the new process
// gets SIGKILL, SIGTERM, or SIGSTOP and later SIGCONT. The server is bench/apps/hot-restart-server.ts
// (the hand-off recipe). After each round it checks:
//   - the port is served by exactly the process that should serve it (or by nobody, when the one
//     serving process was killed: then a fresh generation is started, as a supervisor would);
//   - no connection was refused unless the only process holding the listener had been killed, and
//     none was reset unless a killed process held it in flight;
//   - every process that should have exited did, and was reaped (no zombie);
//   - the survivor's descriptor count is that of any generation serving in the same way;
//   - and the next round's hand-off works.
// Knobs: ROUNDS (default 100), SEED (default: time), WORKERS (clients making new connections, 4).
// Exits 1 when an invariant was violated. Loopback only; every loop is bounded.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ask, fdCount, freePort, sleep, start, until, type Generation } from './generations';

const ROUNDS = Number(process.env.ROUNDS ?? 100);
const SEED = Number(process.env.SEED ?? Date.now() % 1_000_000);
const WORKERS = Number(process.env.WORKERS ?? 4);

// A small deterministic PRNG (mulberry32), so a failing seed can be replayed.
let state = SEED;
function random(): number {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function pick<T>(xs: readonly T[]): T {
  return xs[Math.floor(random() * xs.length)]!;
}

const PHASES = ['before-hello', 'mid-transfer', 'overlap', 'after-ready', 'mid-drain'] as const;
const SIGNALS = ['SIGKILL', 'SIGTERM', 'SIGSTOP'] as const;

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-chaos-'));
  const control = path.join(dir, 'control.sock');
  const port = await freePort();
  console.log(`chaos: ${ROUNDS} rounds, seed ${SEED}, ${WORKERS} clients making new connections, port ${port}`);

  // Load: clients making new connections, tallied per round.
  let tally = new Map<string, number>();
  let loading = true;
  const loadEnd = Date.now() + ROUNDS * 20_000; // bounded even if a round hangs
  const clients = Array.from({ length: WORKERS }, async () => {
    while (loading && Date.now() < loadEnd) {
      const r = await ask(port);
      const key = r.startsWith('hello from') ? 'ok' : r;
      tally.set(key, (tally.get(key) ?? 0) + 1);
      if (key !== 'ok') await sleep(2); // the port may be closed for a while: do not spin
    }
  });

  let current = start(port, control);
  await current.serving;
  const fdsServing = new Map<boolean, number>([[false, fdCount(current.pid)]]); // by "inherited"
  const all: Generation[] = [current];
  const violations: string[] = [];
  let evidence = '';
  const outcomes = new Map<string, number>();

  for (let round = 1; round <= ROUNDS; round++) {
    const phase = pick(PHASES);
    const victimRole = pick(['old', 'new'] as const);
    const signal = pick(SIGNALS);
    const label = `round ${round}: ${signal} to the ${victimRole} process ${phase}`;
    tally = new Map();
    const old = current;
    const fresh = start(port, control);
    all.push(fresh);
    const victim = victimRole === 'old' ? old : fresh;
    // Wait for the phase, as the processes' own debug output and reports show it.
    let reached = true;
    if (phase === 'before-hello') await sleep(random() * 20);
    else if (phase === 'mid-transfer') reached = await until(phase, () => /said hello/.test(old.stderr) || fresh.done, 15_000);
    else if (phase === 'overlap') {
      reached = await until(phase, () => /took \d+ listeners/.test(fresh.stderr) || fresh.done, 15_000);
      await sleep(random() * 900);
    } else if (phase === 'after-ready')
      reached = await fresh.serving.then(
        () => true,
        () => false,
      );
    else reached = await until(phase, () => /complete to pid/.test(old.stderr) || old.done, 15_000);
    // What the two processes said (their debug output, and why one died), for a violation's report.
    const said = (): string => `\n--- old ${old.pid}:\n${old.stderr.slice(-2000)}\n--- new ${fresh.pid}:\n${fresh.stderr.slice(-2000)}`;
    if (!reached) {
      violations.push(`${label}: the phase was never reached${said()}`);
      break;
    }
    const wasServing = /took \d+ listeners/.test(fresh.stderr); // the new process held the listeners
    victim.child.kill(signal);
    if (signal === 'SIGSTOP') {
      await sleep(100 + random() * 1400);
      victim.child.kill('SIGCONT');
    }
    const killed = signal !== 'SIGSTOP';
    // Who should serve now: the new process, unless it was killed before it took over (then the old
    // one rolled back), or it was killed after taking over (then nobody: the serving process died).
    let expected: Generation | null;
    if (!killed) expected = fresh;
    else if (victimRole === 'old') expected = fresh;
    else if (phase === 'after-ready' || phase === 'mid-drain') expected = null;
    else expected = /complete to pid/.test(old.stderr) ? null : old;
    const others = all.filter((g) => g !== expected && !g.done);
    // Settle: the expected one serves (answers), every other one exits.
    const settled = await until('settle', () => others.every((g) => g.done), 40_000);
    if (!settled)
      violations.push(
        `${label}: still running: ${others
          .filter((g) => !g.done)
          .map((g) => g.pid)
          .join(', ')}`,
      );
    let answer = await ask(port);
    if (expected !== null) {
      const ok = await until('answer', () => answer === `hello from ${expected!.pid}\n`, 10_000);
      if (!ok) {
        for (let i = 0; i < 50 && answer !== `hello from ${expected.pid}\n`; i++) {
          await sleep(100);
          answer = await ask(port);
        }
      }
      if (answer !== `hello from ${expected.pid}\n`)
        violations.push(`${label}: expected pid ${expected.pid} to serve, got '${answer.trim()}'`);
      const inherited = await expected.serving.then(
        (s) => s.inherited,
        () => undefined,
      );
      if (inherited !== undefined) {
        const fds = fdCount(expected.pid);
        const want = fdsServing.get(inherited);
        if (want === undefined) fdsServing.set(inherited, fds);
        else if (fds !== want) violations.push(`${label}: pid ${expected.pid} has ${fds} fds, a generation serving like it had ${want}`);
      }
    } else if (answer.startsWith('hello from')) {
      violations.push(`${label}: nobody should serve, yet '${answer.trim()}'`);
    }
    // Zombies: every exited generation was reaped by us (Node reaps on 'exit'); /proc must not list it.
    for (const g of all.filter((x) => x.done)) {
      if (fs.existsSync(`/proc/${g.pid}`) && /\) Z /.test(fs.readFileSync(`/proc/${g.pid}/stat`, 'utf8')))
        violations.push(`${label}: zombie ${g.pid}`);
    }
    // Refused connections are allowed only while no live process held the listener.
    const refused = tally.get('ECONNREFUSED') ?? 0;
    const reset = (tally.get('ECONNRESET') ?? 0) + (tally.get('socket hang up') ?? 0);
    const outage = killed && (expected === null || (victimRole === 'old' && !wasServing));
    if (refused > 0 && !outage) violations.push(`${label}: ${refused} connections refused`);
    if (reset > 0 && !killed) violations.push(`${label}: ${reset} connections reset`);
    const unknown = [...tally.keys()].filter((k) => !['ok', 'ECONNREFUSED', 'ECONNRESET', 'socket hang up'].includes(k));
    if (unknown.length > 0) violations.push(`${label}: unexpected results ${unknown.map((k) => `${k} x${tally.get(k)}`).join(', ')}`);
    const outcome = expected === null ? 'nobody (restarted)' : expected === fresh ? 'new serves' : 'old serves (rollback)';
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (process.env.VERBOSE) console.log(`${label}: ${outcome}; ok ${tally.get('ok') ?? 0}, refused ${refused}, reset ${reset}`);
    current = expected ?? start(port, control);
    if (expected === null) {
      all.push(current);
      await current.serving;
    }
    if (violations.length > 0) {
      evidence = `${label}: what the processes said${said()}`;
      break;
    }
    if (round % 10 === 0) console.log(`  ${round} rounds, ${violations.length} violations`);
  }

  loading = false;
  await Promise.all(clients);
  current.child.kill('SIGTERM');
  await Promise.race([current.exited, sleep(15_000)]);
  for (const g of all) if (!g.done) g.child.kill('SIGKILL');
  await Promise.all(all.map((g) => g.exited));
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`outcomes: ${[...outcomes].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`RESULT rounds=${[...outcomes.values()].reduce((a, b) => a + b, 0)} violations=${violations.length} seed=${SEED}`);
  for (const v of violations) console.log(`VIOLATION ${v}`);
  if (evidence !== '') console.log(evidence);
  if (violations.length > 0) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
