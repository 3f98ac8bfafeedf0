// Redis CPU per handshake, this tree against other checkouts, paired:
//   node --import tsx bench/redis-cpu.ts --against ../other-checkout [--against ...] [--rounds 4] [--pairs 40] [--handshakes 25] [--instances 1,2] [--cpu-prof-dir dir]
// Each run starts the checkout's server (1 or 2 instances, `node --import tsx
// src/main.ts`, plain HTTP) on a redis-server of the bench's own, runs one
// warm-up call set-up per pair, then `handshakes` more per pair (each pair's
// second and later, so each side moves from its previous channel, as in
// `npm run bench -- --cluster`), and reads Redis's CPU (INFO) and
// `INFO commandstats` before and after, and the instances' own CPU
// (/proc). An idle interval after the load, as long as the load up to 3 s,
// is taken off Redis's figures in proportion (heartbeats).
// Broadcasters are on instance A and players on B, so with 2 instances every
// handshake crosses. The checkouts take turns at going first; Redis is
// emptied, its scripts and functions flushed, before each run.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createClient } from 'redis';
import { io, type Socket } from 'socket.io-client';
import { freePort } from '../test/helpers/ports';
import { ROOT } from './args';
import { cpuMs } from './proc';
import { median } from './report';
import { redisCpuUs, startRedisServer } from './redis-server';

const TOKEN = 'redis-cpu-token';
const STREAM = { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 };
const sdp = (kind: string, id: number) => ({
  type: kind,
  sdp: `v=0\r\no=- ${id} 2 IN IP4 127.0.0.1\r\ns=${kind}\r\n${'a=x\r\n'.repeat(400)}`,
});
const candidate = (id: number) => ({
  candidate: `candidate:${id} 1 udp 2122260223 127.0.0.1 ${50000 + id} typ host`,
  sdpMid: '0',
  sdpMLineIndex: 0,
});

const { values } = parseArgs({
  options: {
    against: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '4' },
    pairs: { type: 'string', default: '40' },
    handshakes: { type: 'string', default: '25' },
    instances: { type: 'string', default: '1,2' },
    /** A redis-server of your own (e.g. one under perf) instead of one the bench starts: it is flushed. */
    redis: { type: 'string' },
    /** Each server writes a V8 CPU profile there when it stops (node --cpu-prof; start-up included). */
    'cpu-prof-dir': { type: 'string' },
  },
});
const trees = [ROOT, ...(values.against ?? []).map((dir) => resolve(dir))];
const rounds = Number(values.rounds);
const pairCount = Number(values.pairs);
const perPair = Number(values.handshakes);
const instanceCounts = values.instances.split(',').map(Number);
const profiling = values['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof-dir'])}`] : [];

type Redis = ReturnType<typeof createClient>;

// No server outlives the bench, also on Ctrl-C (the exit handlers then run).
const running = new Set<ChildProcess>();
process.on('exit', () => running.forEach((child) => child.kill('SIGKILL')));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

interface Reading {
  cpuUs: number;
  /** usec and calls by command. */
  stats: Map<string, { usec: number; calls: number }>;
  at: number;
}

async function read(redis: Redis): Promise<Reading> {
  const info = String(await redis.sendCommand(['INFO', 'ALL']));
  const stats = new Map<string, { usec: number; calls: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm))
    stats.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  return { cpuUs: redisCpuUs(info), stats, at: performance.now() };
}

function startInstance(tree: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [...profiling, '--import', 'tsx', 'src/main.ts'], {
    cwd: tree,
    env: { ...process.env, ...env },
    stdio: 'ignore',
  });
  running.add(child);
  child.once('exit', (code, signal) => {
    running.delete(child);
    if (signal !== 'SIGINT' && code !== 0) console.error(`${tree}: server exited ${code ?? signal}`);
  });
  return child;
}

async function until(url: string, ms = 30_000) {
  for (const end = performance.now() + ms; performance.now() < end; await sleep(100))
    if ((await fetch(`${url}/ready`).catch(() => undefined))?.status === 200) return;
  throw new Error(`${url} not ready`);
}

function connectSocket(url: string): Promise<Socket> {
  const socket = io(url, { auth: { token: TOKEN }, transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise((ok, fail) => {
    socket.once('connect', () => ok(socket));
    socket.once('connect_error', fail);
  });
}

/** One pair's call set-ups, each in a new channel. */
function pair(broadcaster: Socket, player: Socket, id: number) {
  const [b, p] = [`b${id}`, `p${id}`];
  let round = 0;
  return () =>
    new Promise<void>((done, fail) => {
      const channel = `c${id}-${round++}`;
      const got = { offer: 0, answer: 0, toPlayer: 0, toBroadcaster: 0 };
      const timer = setTimeout(() => fail(new Error(`pair ${id} stalled: ${JSON.stringify(got)}`)), 20_000);
      const check = () => {
        if (got.offer && got.answer && got.toPlayer === 2 && got.toBroadcaster === 2) {
          clearTimeout(timer);
          broadcaster.off('message', onB);
          player.off('message', onP);
          done();
        }
      };
      const onB = (m: { type?: string; target?: string }) => {
        if (m.type === 'peers' && m.target === b) player.emit('subscribe', p, channel);
        else if (m.type === 'peer') {
          broadcaster.emit('messagePeer', { target: p, type: 'offer', content: sdp('offer', id) });
          broadcaster.emit('messagePeer', { target: p, type: 'candidate', candidate: candidate(id) });
          broadcaster.emit('messagePeer', { target: p, type: 'candidate', candidate: candidate(id) });
        } else if (m.type === 'answer') got.answer++;
        else if (m.type === 'candidate') got.toBroadcaster++;
        check();
      };
      const onP = (m: { type?: string }) => {
        if (m.type === 'offer') {
          got.offer++;
          player.emit('messagePeer', { target: b, type: 'answer', content: sdp('answer', id) });
          player.emit('messagePeer', { target: b, type: 'candidate', candidate: candidate(id + 1) });
          player.emit('messagePeer', { target: b, type: 'candidate', candidate: candidate(id + 1) });
        } else if (m.type === 'candidate') got.toPlayer++;
        check();
      };
      broadcaster.on('message', onB);
      player.on('message', onP);
      broadcaster.emit('publish', b, channel, STREAM);
    });
}

interface RunResult {
  cpuUs: number;
  /** The instances' own CPU per handshake, all of them together (from /proc). */
  serverCpuUs: number;
  /** Per handshake: usec inside each command Redis counted (commandstats), the main ones. */
  usec: Record<string, number>;
  calls: Record<string, number>;
  rate: number;
}

async function run(redis: Redis, redisUrl: string, tree: string, instances: number, tag: string): Promise<RunResult> {
  await redis.sendCommand(['FLUSHALL']);
  await redis.sendCommand(['SCRIPT', 'FLUSH']);
  await redis.sendCommand(['FUNCTION', 'FLUSH']);
  const ports = await Promise.all(Array.from({ length: instances }, () => freePort()));
  const servers = ports.map((port) =>
    startInstance(tree, {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      STATIC_TOKEN: TOKEN,
      REDIS_URL: redisUrl,
      REDIS_PREFIX: `${tag}:`,
      LOG_LEVEL: 'warn',
      ADMIN: 'false',
      DRAIN_TIMEOUT_MS: '0',
    }),
  );
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  const sockets: Socket[] = [];
  try {
    await Promise.all(urls.map((url) => until(url)));
    const pairs = await Promise.all(
      Array.from({ length: pairCount }, async (_, i) => {
        const [b, p] = await Promise.all([connectSocket(urls[0] as string), connectSocket(urls[instances - 1] as string)]);
        sockets.push(b, p);
        return pair(b, p, i);
      }),
    );
    // The first call set-up of each pair: nothing to leave yet, and Redis learns the scripts.
    await Promise.all(pairs.map((handshake) => handshake()));
    const serverCpu = () => servers.reduce((sum, child) => sum + cpuMs(child.pid as number), 0);
    const serverBefore = serverCpu();
    const before = await read(redis);
    await Promise.all(
      pairs.map(async (handshake) => {
        for (let i = 0; i < perPair; i++) await handshake();
      }),
    );
    const after = await read(redis);
    const serverAfter = serverCpu();
    const loadMs = after.at - before.at;
    await sleep(Math.min(loadMs, 3000));
    const idle = await read(redis);
    const idleShare = loadMs / (idle.at - after.at);
    const count = pairCount * perPair;
    const usec: Record<string, number> = {};
    const calls: Record<string, number> = {};
    for (const [name, s] of after.stats) {
      const was = before.stats.get(name) ?? { usec: 0, calls: 0 };
      const idleUsec = (idle.stats.get(name)?.usec ?? s.usec) - s.usec;
      const idleCalls = (idle.stats.get(name)?.calls ?? s.calls) - s.calls;
      const u = (s.usec - was.usec - idleUsec * idleShare) / count;
      const c = (s.calls - was.calls - idleCalls * idleShare) / count;
      if (c > 0.05) {
        usec[name] = u;
        calls[name] = c;
      }
    }
    const cpuUs = (after.cpuUs - before.cpuUs - (idle.cpuUs - after.cpuUs) * idleShare) / count;
    return { cpuUs, serverCpuUs: ((serverAfter - serverBefore) * 1000) / count, usec, calls, rate: (count / loadMs) * 1000 };
  } finally {
    for (const socket of sockets) socket.close();
    await Promise.all(
      servers.map((child) => {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGINT');
        return exited;
      }),
    );
  }
}

async function main() {
  const server = values.redis ? { url: values.redis, stop: async () => undefined } : await startRedisServer();
  const redis = createClient({ url: server.url });
  await redis.connect();
  const results = new Map<string, RunResult[]>();
  const name = (tree: string, instances: number) => `${tree === ROOT ? 'this tree' : tree} x${instances}`;
  try {
    for (let r = 0; r < rounds; r++)
      for (const instances of instanceCounts)
        for (let i = 0; i < trees.length; i++) {
          const tree = trees[(i + r) % trees.length] as string;
          const result = await run(redis, server.url, tree, instances, `r${r}t${i}i${instances}`);
          const key = name(tree, instances);
          results.set(key, [...(results.get(key) ?? []), result]);
          const top = Object.entries(result.usec)
            .sort((a, b) => b[1] - a[1])
            .slice(0, 5)
            .map(([cmd, us]) => `${cmd} ${us.toFixed(1)} µs/${(result.calls[cmd] ?? 0).toFixed(2)}`)
            .join(', ');
          // What carries events between instances, whatever its share: the adapter's stream and direct PUBLISHes.
          const carriers = ['xadd', 'xread', 'publish'].map((cmd) => `${cmd} ${(result.calls[cmd] ?? 0).toFixed(2)}`).join(', ');
          process.stderr.write(
            `round ${r + 1} ${key}: ${result.cpuUs.toFixed(1)} µs Redis CPU per handshake, server CPU ${result.serverCpuUs.toFixed(0)} µs, ${result.rate.toFixed(0)}/s; ${top}; calls ${carriers}\n`,
          );
        }
  } finally {
    await redis.quit();
    await server.stop();
  }
  const load = (await import('node:os')).loadavg().map((n) => n.toFixed(2));
  console.log(
    `\nRedis CPU per handshake (µs): median [range] of ${rounds} round(s), ${pairCount} pairs × ${perPair}; load average now ${load.join(' ')}`,
  );
  const summary = (figure: (x: RunResult) => number) => {
    for (const instances of instanceCounts) {
      const own = (results.get(name(ROOT, instances)) ?? []).map(figure);
      for (const tree of trees) {
        const figures = (results.get(name(tree, instances)) ?? []).map(figure);
        const ratios = figures.map((f, i) => (own[i] ?? Number.NaN) / f);
        console.log(
          `${name(tree, instances)}: ${median(figures).toFixed(1)} [${Math.min(...figures).toFixed(1)}–${Math.max(...figures).toFixed(1)}]` +
            (tree === ROOT ? '' : `; this tree / it per round: ${ratios.map((x) => x.toFixed(2)).join(', ')}`),
        );
      }
    }
  };
  summary((x) => x.cpuUs);
  console.log('\nServer CPU per handshake (µs), all instances (/proc), same rounds:');
  summary((x) => x.serverCpuUs);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
