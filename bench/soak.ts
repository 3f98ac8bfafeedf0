// Soak: many channels with churn for a fixed time against a production-mode
// server on loopback, sampling the server's RSS from /proc, then checking that
// the registry drained to zero and memory came back.
//   npm run soak -- [--seconds 120] [--channels 100] [--viewers 3]
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SECONDS = arg('seconds', 120);
const CHANNELS = arg('channels', 100);
const VIEWERS = arg('viewers', 3);
const TOKEN = 'soak-token';
const API_KEY = 'soak-key';
const root = join(__dirname, '..');

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function getJson<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(JSON.parse(body) as T));
      })
      .on('error', reject);
  });
}

async function heapUsedMb(url: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    https
      .get(`${url}/metrics`, { rejectUnauthorized: false, headers: { 'x-api-key': API_KEY } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  return Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1]) / 1024 / 1024;
}

function client(url: string): Promise<Socket> {
  const socket = io(url, {
    auth: { token: TOKEN },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    rejectUnauthorized: false,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/** One channel's life: a broadcaster, viewers that offer/answer, then everyone leaves. */
async function channelLife(url: string, name: string, stats: { sessions: number; messages: number }) {
  const broadcaster = await client(url);
  const viewers = await Promise.all(Array.from({ length: VIEWERS }, () => client(url)));
  try {
    const peers = new Promise((resolve) => broadcaster.once('message', resolve));
    broadcaster.emit('publish', `b-${name}`, name, { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 });
    await peers;
    broadcaster.on('message', (m: { type?: string; peerID?: string }) => {
      if (m.type === 'peer')
        broadcaster.emit('messagePeer', { target: m.peerID, type: 'offer', content: { type: 'offer', sdp: 'v=0\r\n'.repeat(200) } });
    });
    await Promise.all(
      viewers.map((viewer, i) => {
        const answered = new Promise<void>((resolve) =>
          viewer.on('message', (m: { type?: string; from?: string }) => {
            if (m.type !== 'offer') return;
            viewer.emit('messagePeer', { target: m.from, type: 'answer', content: { type: 'answer', sdp: 'v=0\r\n'.repeat(200) } });
            for (let c = 0; c < 4; c++)
              viewer.emit('messagePeer', {
                target: m.from,
                type: 'candidate',
                candidate: { candidate: `candidate:${c} 1 udp 1 127.0.0.1 ${5000 + c} typ host` },
              });
            stats.messages += 6;
            resolve();
          }),
        );
        viewer.emit('subscribe', `v-${name}-${i}`, name);
        return answered;
      }),
    );
    stats.sessions++;
  } finally {
    for (const s of [broadcaster, ...viewers]) s.close();
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'vw-soak-'));
  const prefix = join(dir, 'localhost');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-keyout',
      `${prefix}.key`,
      '-out',
      `${prefix}.crt`,
    ],
    { stdio: 'ignore' },
  );
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore' });
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = spawn(process.execPath, [join(root, 'dist', 'main.js')], {
    env: {
      ...process.env,
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      CERTIFICATE: prefix,
      STATIC_TOKEN: TOKEN,
      API_KEY,
      LOG_LEVEL: 'warn',
      RATE_EVENTS_PER_SECOND: '10000',
      DOTENV_CONFIG_PATH: '/dev/null',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const stop = () => {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => (stop(), process.exit(130)));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('message', () => resolve());
      server.once('exit', () => reject(new Error('server exited')));
    });
    const url = `https://127.0.0.1:${port}`;
    const pid = server.pid as number;
    const stats = { sessions: 0, messages: 0 };
    // CHANNELS channels live and die in parallel until the time is up.
    const churn = (seconds: number, label: string) => {
      const deadline = performance.now() + seconds * 1000;
      return Promise.all(
        Array.from({ length: CHANNELS }, async (_, c) => {
          for (let round = 0; performance.now() < deadline; round++)
            await channelLife(url, `${label}-${c}-${round}`, stats).catch(() => undefined);
        }),
      );
    };
    // A warm-up churn first, then idle: the baseline includes what the
    // server allocates once (code, TLS, pools), so growth after it is a leak.
    await churn(Math.min(10, Math.max(2, SECONDS / 10)), 'warmup');
    await sleep(3000);
    const baseline = rssKb(pid);
    const heapBaseline = await heapUsedMb(url);
    const samples: { second: number; rssMb: number; sessions: number }[] = [];
    const started = performance.now();
    stats.sessions = 0;
    stats.messages = 0;
    const sampler = setInterval(
      () => samples.push({ second: Math.round((performance.now() - started) / 1000), rssMb: rssKb(pid) / 1024, sessions: stats.sessions }),
      Math.max(1000, (SECONDS * 1000) / 24),
    );
    await churn(SECONDS, 'soak');
    clearInterval(sampler);
    // Every client is gone: the registry must be empty.
    let connections: unknown[] = [];
    let serverStats: [string, { connections: number; players: number; broadcasters: number; bitrate: number }][] = [];
    for (let i = 0; i < 100; i++) {
      connections = await getJson<unknown[]>(`${url}/connections?apikey=${API_KEY}`);
      serverStats = await getJson(`${url}/stats?apikey=${API_KEY}`);
      if (connections.length === 0 && serverStats.every(([, u]) => u.connections + u.players + u.broadcasters + u.bitrate === 0)) break;
      await sleep(100);
    }
    const drained = connections.length === 0 && serverStats.every(([, u]) => u.connections + u.players + u.broadcasters + u.bitrate === 0);
    // The same idle time as before the baseline.
    await sleep(3000);
    const end = rssKb(pid);
    const heapEnd = await heapUsedMb(url);
    const peak = Math.max(...samples.map((s) => s.rssMb * 1024), end);
    const result = {
      seconds: SECONDS,
      channels: CHANNELS,
      viewersPerChannel: VIEWERS,
      sessions: stats.sessions,
      relayedMessages: stats.messages,
      drained,
      rssMb: { baseline: +(baseline / 1024).toFixed(1), peak: +(peak / 1024).toFixed(1), end: +(end / 1024).toFixed(1) },
      endVsBaseline: +(end / baseline).toFixed(3),
      heapUsedMb: { baseline: +heapBaseline.toFixed(1), end: +heapEnd.toFixed(1) },
      samples: samples.map((s) => ({ ...s, rssMb: +s.rssMb.toFixed(1) })),
    };
    console.log(`soak: ${SECONDS} s, ${CHANNELS} channels x (1 broadcaster + ${VIEWERS} viewers), churning`);
    console.log('second  rss MB  sessions');
    for (const s of result.samples)
      console.log(`${String(s.second).padStart(6)}  ${s.rssMb.toFixed(1).padStart(6)}  ${String(s.sessions).padStart(8)}`);
    console.log(`sessions ${result.sessions}, relayed ${result.relayedMessages}; registry drained: ${drained ? 'yes' : 'NO'}`);
    console.log(
      `RSS baseline ${result.rssMb.baseline} MB, peak ${result.rssMb.peak} MB, end ${result.rssMb.end} MB (${((result.endVsBaseline - 1) * 100).toFixed(1)}% vs baseline)`,
    );
    console.log(`V8 heap used: baseline ${result.heapUsedMb.baseline} MB, end ${result.heapUsedMb.end} MB`);
    mkdirSync(join(root, 'bench', 'results'), { recursive: true });
    writeFileSync(join(root, 'bench', 'results', 'soak.json'), `${JSON.stringify(result, null, 2)}\n`);
    if (!drained) process.exitCode = 1;
  } finally {
    stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
