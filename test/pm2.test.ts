// The server as a site owner runs it: pm2 with ecosystem.config.js and a
// `.env` file, one process without Redis, one per core (cluster mode) with it.
// Each test runs its own pm2 daemon (a private PM2_HOME) and kills it after.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { get } from './helpers/api';
import { connect, nextMessage, offerAndAnswer, type Client } from './helpers/client';
import { testDatabase } from './helpers/mysql';
import { freePort } from './helpers/process';
import { testRedis } from './helpers/redis';
import { API_KEY, TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const run = promisify(execFile);
const root = join(__dirname, '..');
const pm2Bin = join(root, 'node_modules', '.bin', 'pm2');
const APP = 'videowhisper-webrtc';

interface Pm2Process {
  name: string;
  pid: number;
  pm2_env: { status: string; restart_time: number; exec_mode: string; kill_timeout: number };
}

type LogLine = Record<string, unknown>;

let built: Promise<unknown> | undefined;

/**
 * A private pm2 (its own PM2_HOME) that starts the server from
 * ecosystem.config.js with `settings` written to a `.env` file, which the
 * server reads itself (DOTENV_CONFIG_PATH names it, as `.env` beside the
 * code would be read).
 */
async function pm2Session(t: TestContext, settings: Record<string, string> = {}) {
  built ??= run('npm', ['run', 'build'], { cwd: root });
  await built;
  const home = mkdtempSync(join(tmpdir(), 'vw-pm2-'));
  const port = await freePort();
  const envFile = join(home, 'site.env');
  const writeEnv = (values: Record<string, string>) =>
    writeFileSync(
      envFile,
      Object.entries(values)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n') + '\n',
    );
  writeEnv({
    PORT: String(port),
    HOST: '127.0.0.1',
    CERTIFICATE: testCertificate().prefix,
    STATIC_TOKEN: TOKEN,
    API_KEY,
    ...settings,
  });
  const env: NodeJS.ProcessEnv = { ...process.env, PM2_HOME: home, DOTENV_CONFIG_PATH: envFile };
  const pm2 = async (...args: string[]) => (await run(pm2Bin, args, { cwd: root, env })).stdout;
  t.after(async () => {
    await pm2('kill').catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });
  const logs = join(home, 'logs');

  /** Every JSON log line the processes have written so far. */
  const lines = (): LogLine[] => {
    let files: string[];
    try {
      files = readdirSync(logs).filter((f) => f.endsWith('.log'));
    } catch {
      return []; // no process has written yet
    }
    return files.flatMap((f) =>
      readFileSync(join(logs, f), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LogLine),
    );
  };
  /** The first log line `match` accepts, written already or still to come. */
  const waitForLog = (match: (line: LogLine) => boolean, ms = 30_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const hit = lines().find(match);
        if (!hit) return;
        clearTimeout(timer);
        watcher.close();
        resolve(hit);
      };
      const watcher = watch(logs, check);
      const timer = setTimeout(() => {
        watcher.close();
        reject(new Error(`no such log line within ${ms} ms; last lines: ${JSON.stringify(lines().slice(-4))}`));
      }, ms);
      check();
    });

  return {
    pm2,
    home,
    url: `https://127.0.0.1:${port}`,
    writeEnv,
    waitForLog,
    lines,
    list: async () => JSON.parse(await pm2('jlist')) as Pm2Process[],
  };
}

type Session = Awaited<ReturnType<typeof pm2Session>>;

/** The pid of the process that accepted `socket` (its `connected` debug line). */
async function processOf(session: Session, socket: Client): Promise<number> {
  const line = await session.waitForLog((l) => l.msg === 'connected' && l.socket === socket.id);
  return Number(line.pid);
}

test(
  'fork mode: pm2 starts the server, `pm2 restart` applies an edited .env, pm2 keeps no secret, and stops it cleanly',
  { timeout: 120_000 },
  async (t) => {
    const session = await pm2Session(t, { API_KEY: 'first-api-key' });
    const { pm2, url, list } = session;
    // wait_ready: pm2 returns once the server has said it listens.
    await pm2('start', 'ecosystem.config.js', '--env', 'production');
    const res = await get(url, '/');
    assert.equal(res.status, 200);
    assert.equal(res.json<{ server: string }>().server, 'VideoWhisper WebRTC');
    assert.equal((await get(url, '/stats')).status, 401, 'production mode from --env production');
    assert.equal((await get(url, '/stats?apikey=first-api-key')).status, 200);
    const [started] = await list();
    assert.deepEqual([started?.name, started?.pm2_env.exec_mode], [APP, 'fork_mode']);
    assert.ok((started?.pm2_env.kill_timeout ?? 0) > 5000, 'pm2 waits longer than the shutdown may take');

    // The site owner edits .env (a new API key) and restarts.
    session.writeEnv({
      PORT: new URL(url).port,
      HOST: '127.0.0.1',
      CERTIFICATE: testCertificate().prefix,
      STATIC_TOKEN: TOKEN,
      API_KEY: 'second-api-key',
    });
    await pm2('restart', APP);
    assert.equal((await get(url, '/stats?apikey=second-api-key')).status, 200, 'the edited .env applies');
    assert.equal((await get(url, '/stats?apikey=first-api-key')).status, 401);

    await pm2('save');
    const dump = readFileSync(join(session.home, 'dump.pm2'), 'utf8');
    for (const secret of ['first-api-key', 'second-api-key', TOKEN]) assert.ok(!dump.includes(secret), `${secret} is not in dump.pm2`);

    await pm2('stop', APP);
    const [app] = await list();
    assert.equal(app?.pm2_env.status, 'stopped');
    assert.equal(app?.pm2_env.restart_time, 1, 'restarted once, never crashed');
    await assert.rejects(get(url, '/'), 'the port is closed');
    const stopped = session.lines().filter((l) => l.msg === 'shutting down');
    assert.deepEqual(
      stopped.map((l) => l.signal),
      ['SIGINT', 'SIGINT'],
      'pm2 stops with SIGINT, which shuts down cleanly',
    );
    assert.equal(session.lines().filter((l) => l.msg === 'server closed').length, 2);
    assert.ok(stopped.every((l) => l.level === 'info' && typeof l.time === 'string' && !Number.isNaN(Date.parse(String(l.time)))));
    const text = readdirSync(join(session.home, 'logs'))
      .map((f) => readFileSync(join(session.home, 'logs', f), 'utf8'))
      .join('');
    assert.doesNotMatch(text, new RegExp(`${TOKEN}|api-key`), 'no secret reaches production logs');
  },
);

test(
  'cluster mode, two workers on Redis: one server across processes; accounts reload everywhere; pm2 reload keeps calls',
  { timeout: 300_000 },
  async (t) => {
    const redis = await testRedis(t);
    if (!redis) return;
    const db = await testDatabase(t);
    if (!db) return;
    await db.loadSample();
    const session = await pm2Session(t, {
      REDIS_URL: redis.url,
      REDIS_PREFIX: redis.prefix,
      PM2_INSTANCES: '2',
      ...db.env,
      LOG_LEVEL: 'debug',
      DRAIN_TIMEOUT_MS: '120000',
    });
    const { pm2, url, list } = session;
    redis.onCleanup(() => pm2('kill').catch(() => undefined));
    await pm2('start', 'ecosystem.config.js', '--env', 'production');
    const started = await list();
    assert.equal(started.length, 2);
    assert.ok(started.every((p) => p.pm2_env.exec_mode === 'cluster_mode' && p.pm2_env.status === 'online'));
    assert.ok(
      started.every((p) => p.pm2_env.kill_timeout > 120_000),
      'pm2 waits for a drain to end',
    );

    // A broadcaster on one process and a player on the other complete a handshake.
    const broadcaster = await connect(t, url, TOKEN);
    const broadcasterPid = await processOf(session, broadcaster);
    let player: Client | undefined;
    let playerPid = broadcasterPid;
    for (let i = 0; i < 10 && !player; i++) {
      const candidate = await connect(t, url, TOKEN);
      playerPid = await processOf(session, candidate);
      if (playerPid !== broadcasterPid) player = candidate;
      else candidate.close();
    }
    assert.ok(player, 'pm2 spreads connections over both processes');
    const published = nextMessage(broadcaster, 'peers');
    broadcaster.emit('publish', 'Studio', 'across', { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 });
    await published;
    const noticed = nextMessage(broadcaster, 'peer');
    player.emit('subscribe', 'Viewer', 'across');
    await noticed;
    const call = () => offerAndAnswer(broadcaster, player);
    await call();

    // An account added to MySQL, then one /update-accounts: every process knows it.
    await db.addAccount('Added Site', 'addedToken', {}, null);
    const reload = await get(url, `/update-accounts?apikey=${API_KEY}`);
    assert.equal(reload.status, 200);
    assert.deepEqual(reload.json<{ outcome: string; instances: unknown }>().instances, { reloaded: 2, total: 2 });
    const accepted: number[] = [];
    for (let i = 0; i < 20; i++) {
      const socket = await connect(t, url, 'addedToken');
      accepted.push(await processOf(session, socket));
      socket.close();
    }
    assert.equal(accepted.length, 20, '20 of 20 accepted');
    assert.equal(new Set(accepted).size, 2, 'on both processes');

    // Whichever process answers, /metrics shows every process's series, each once.
    for (let i = 0; i < 3; i++) {
      const text = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
      const instances = new Set([...text.matchAll(/^process_cpu_user_seconds_total\{instance="([^"]+)"\}/gm)].map((m) => m[1]));
      assert.equal(instances.size, 2, text.slice(0, 300));
      const gauge = text.split('\n').filter((l) => l.startsWith('videowhisper_connections'));
      assert.equal(gauge.length, 1, 'cluster-wide gauges once');
      assert.match(gauge[0] ?? '', /^videowhisper_connections \d+$/, 'without an instance label');
    }

    // pm2 reload: each process hands over to a new one; the call goes on, new connections succeed throughout.
    const reloading = spawn(pm2Bin, ['reload', APP], { cwd: root, env: { ...process.env, PM2_HOME: session.home }, stdio: 'ignore' });
    const reloaded = new Promise<number | null>((resolve) => reloading.once('exit', resolve));
    t.after(() => void reloading.kill());
    const draining = await session.waitForLog((l) => String(l.msg).startsWith('draining'), 60_000);
    assert.ok([broadcasterPid, playerPid].includes(Number(draining.pid)), 'a process of the call drains');
    for (let i = 0; i < 6; i++) {
      const socket = await connect(t, url, TOKEN);
      socket.close();
    }
    assert.equal((await get(url, '/ready')).status, 200, 'another process answers /ready');
    await call();
    assert.ok(broadcaster.connected && player.connected, 'the call kept its sockets');
    assert.equal(broadcaster.messages.filter((m) => (m.payload as { action?: string })?.action === 'close').length, 0);
    // The call ends; the old processes then finish and the reload completes.
    broadcaster.close();
    player.close();
    assert.equal(await reloaded, 0);
    const after = await list();
    assert.equal(after.length, 2);
    assert.ok(after.every((p) => p.pm2_env.status === 'online' && p.pm2_env.restart_time === 1));
    assert.ok(
      after.every((p) => !started.some((s) => s.pid === p.pid)),
      'both processes were replaced',
    );
    const socket = await connect(t, url, 'addedToken');
    socket.close();
    await pm2('stop', 'all');
  },
);
