// Instructions per relayed messagePeer, counted by valgrind's callgrind: a
// count that does not move with what else the machine runs, unlike CPU time.
// Starts one server (this one, or the bare relay) under callgrind, registers
// broadcaster/player pairs, relays a warm-up, then counts the instructions of
// the whole process (every thread) over windows of `messages` relays, sent in
// bursts of one message per pair and each burst awaited. With `connect`, the
// windows count connections instead: opened 8 at a time, each batch awaited,
// and kept open (the TLS handshake, the WebSocket upgrade and the Socket.IO
// connect with its token), after a warm-up of 2,000. With `reconnect`, each of
// those connections offers the newest TLS session ticket the server sent, as a
// reconnecting browser offers its own, so the windows count resumed handshakes.
//   node --import tsx bench/instructions.ts [server|baseline] [messages] [windows] [connect|reconnect]
// CPU=1: no valgrind; the same windows give the server's CPU time per event
// instead (user and system, from /proc), to see what the counts come to.
// Needs `npm run build` (the server) and one `npm run bench` (the relay's build).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import { join } from 'node:path';
import { makeCertificate } from '../test/helpers/tls';
import { ROOT } from './args';
import { registerChannels } from './load/common';
import { candidate, sdp, STREAM } from './messages';
import { COMPILED } from './spawn';
import { cpuTimes } from './proc';
import { openWire, type Wire } from './wire';

const target = process.argv[2] === 'baseline' ? 'baseline' : 'server';
const messages = Number(process.argv[3] ?? 2000);
const windows = Number(process.argv[4] ?? 2);
const mode = process.argv[5];
const counting = mode === 'connect' ? 'connections' : mode === 'reconnect' ? 'reconnections' : 'messages';
const PAIRS = 8;
const TOKEN = 'instructions-token';
const PORT = 3900 + Math.floor(Math.random() * 1000);

const dir = mkdtempSync(join(os.tmpdir(), 'vw-instructions-'));
const ca = makeCertificate(join(dir, 'ecdsa'), 'ecdsa').toString('utf8');
// SCRIPT: another build of the server (an earlier commit's dist, for a paired comparison).
const script = target === 'server' ? (process.env.SCRIPT ?? join(ROOT, 'dist', 'main.js')) : join(COMPILED, 'bare-relay.js');
const out = join(dir, 'callgrind.out');
// PROFILE=1: no valgrind, a V8 CPU profile of the same load instead (in the printed directory).
const profiling = Boolean(process.env.PROFILE);
const timing = Boolean(process.env.CPU);
const command = profiling
  ? [process.execPath, '--cpu-prof', `--cpu-prof-dir=${dir}`, script]
  : timing
    ? [process.execPath, script]
    : ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, script];
const child = spawn(command[0] as string, command.slice(1), {
  cwd: dir,
  env: {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    PORT: String(PORT),
    HOST: '127.0.0.1',
    CERTIFICATE: join(dir, 'ecdsa'),
    STATIC_TOKEN: TOKEN,
    API_KEY: 'instructions-api-key',
    // Without valgrind's slowness the pairs would exceed the default rate.
    RATE_EVENTS_PER_SECOND: '100000',
    // vgdb finds the process by user and HOST: callgrind_control is given the same.
    USER: 'bench',
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
process.on('exit', () => child.kill('SIGKILL'));

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const answers = () =>
  new Promise<boolean>((done) => {
    https.get({ host: '127.0.0.1', port: PORT, path: '/', ca }, (res) => done(res.resume() && true)).on('error', () => done(false));
  });

async function main() {
  while (!(await answers())) await sleep(500);
  const url = `https://127.0.0.1:${PORT}`;
  const wires: Wire[] = [];
  for (let i = 0; i < 2 * PAIRS; i++) wires.push(await openWire({ url, token: TOKEN, ca, timeoutMs: 120_000 }));
  await registerChannels(wires, () => 2, 'count', STREAM);

  // The bench's mix: per pair an offer, an answer, then four candidates each way.
  const cycle = (i: number) => {
    const [b, p] = [wires[2 * i] as Wire, wires[2 * i + 1] as Wire];
    const send = (wire: Wire, from: string, to: string, body: object) => () => wire.emit('messagePeer', { from, target: to, ...body });
    const [bName, pName] = [`count-${i}-b`, `count-${i}-p0`];
    const sends = [
      send(b, bName, pName, { type: 'offer', content: { type: 'offer', sdp: sdp('offer', i) } }),
      send(p, pName, bName, { type: 'answer', content: { type: 'answer', sdp: sdp('answer', i) } }),
    ];
    for (let k = 0; k < 4; k++)
      sends.push(
        send(b, bName, pName, { type: 'candidate', candidate: candidate(i * 10 + k) }),
        send(p, pName, bName, { type: 'candidate', candidate: candidate(i * 10 + k + 5) }),
      );
    return sends;
  };
  const cycles = Array.from({ length: PAIRS }, (_, i) => cycle(i));
  let received = 0;
  for (const w of wires) w.onEvent = () => void received++;
  let seq = 0;
  async function relay(count: number) {
    for (let sent = 0; sent < count;) {
      const burst = Math.min(PAIRS, count - sent);
      const expected = received + burst;
      const kind = Math.floor(seq / PAIRS) % 10;
      for (let pair = 0; pair < burst; pair++) (cycles[pair] as (() => void)[])[kind]?.();
      seq += PAIRS;
      sent += burst;
      while (received < expected) await sleep(1);
    }
  }
  const callgrind = (...args: string[]) =>
    profiling ||
    timing ||
    spawnSync('callgrind_control', [...args, String(child.pid)], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, USER: 'bench', HOST: '127.0.0.1' },
    });

  // Connections opened in batches of 8, as the pairs' messages go. A resumed
  // handshake brings no new ticket (Node's ticket callback never asks OpenSSL
  // to renew one), so one ticket serves many: the newest, since under valgrind
  // a ticket soon outlives the server's session timeout (300 s).
  let ticket: Buffer | undefined;
  let resumed = 0;
  const resuming = mode === 'reconnect' && {
    onTls: ({ resumed: wasResumed, session }: { resumed: boolean; session?: Buffer }) => {
      if (session) ticket = session;
      else if (wasResumed) resumed++;
    },
  };
  const open = () => openWire({ url, token: TOKEN, ca, timeoutMs: 120_000, ...(resuming && { ...resuming, session: ticket }) });
  async function connect(count: number) {
    for (let opened = 0; opened < count; opened += PAIRS) {
      const batch = Math.min(PAIRS, count - opened);
      wires.push(...(await Promise.all(Array.from({ length: batch }, open))));
    }
  }
  // The warm-up lasts until V8 has compiled what the windows run: their counts then hold steady.
  const [load, warmUp] = counting !== 'messages' ? [connect, Math.max(2000, 2 * messages)] : [relay, Math.max(10000, 2 * messages)];
  await load(warmUp);
  const counts: number[] = [];
  const times: { user: number; system: number }[] = [];
  // Per window, the share of its connections that resumed a session (reconnect only).
  const resumedPct: number[] = [];
  for (let w = 0; w < windows; w++) {
    callgrind('--zero');
    const before = cpuTimes(child.pid as number);
    const resumedBefore = resumed;
    await load(messages);
    const after = cpuTimes(child.pid as number);
    times.push({ user: after.user - before.user, system: after.system - before.system });
    if (resuming) resumedPct.push(Math.round(((resumed - resumedBefore) / messages) * 100));
    callgrind(`--dump=window${w}`);
  }
  if (timing) {
    // µs per event, user and system apart.
    const perEvent = (ms: number) => Math.round((ms * 10_000) / messages) / 10;
    const cpuUs = times.map((t) => ({ user: perEvent(t.user), system: perEvent(t.system) }));
    console.log(JSON.stringify({ target, [counting]: messages, cpuUs, ...(resuming && { resumedPct }) }));
    child.kill('SIGKILL');
    process.exit(0);
  }
  // Each dump is its own file; their totals are the windows', in order.
  const dumps = readdirSync(dir)
    .filter((f) => f.startsWith('callgrind.out.'))
    .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
  for (const f of dumps) {
    const totals = /^(?:totals|summary): (\d+)/m.exec(readFileSync(join(dir, f), 'utf8'));
    if (totals) counts.push(Number(totals[1]));
  }
  for (const w of wires) w.close();
  const perWindow = counts.map((c) => Math.round(c / messages));
  console.log(JSON.stringify({ target, [counting]: messages, windows: perWindow, ...(resuming && { resumedPct }) }));
  if (profiling) {
    child.kill('SIGINT');
    await new Promise((done) => child.once('exit', done));
    console.log(dir);
  } else child.kill('SIGKILL');
  process.exit(0);
}

void main();
