// The server as a site owner runs it: pm2 with ecosystem.config.js, one
// process without Redis, one per core (cluster mode) with it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { get } from './helpers/api';
import { broadcastAndWatch } from './helpers/client';
import { freePort } from './helpers/process';
import { testRedis } from './helpers/redis';
import { API_KEY, TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const run = promisify(execFile);
const root = join(__dirname, '..');
const pm2Bin = join(root, 'node_modules', '.bin', 'pm2');

interface Pm2Process {
  name: string;
  pm2_env: { status: string; restart_time: number; exec_mode: string };
}

/** A private pm2 (its own PM2_HOME) with the server's settings in its environment. */
async function pm2Session(t: TestContext, extraEnv: Record<string, string> = {}) {
  await run('npm', ['run', 'build'], { cwd: root });
  const home = mkdtempSync(join(tmpdir(), 'vw-pm2-'));
  const port = await freePort();
  const env = {
    ...process.env,
    PM2_HOME: home,
    PORT: String(port),
    HOST: '127.0.0.1',
    CERTIFICATE: testCertificate().prefix,
    STATIC_TOKEN: TOKEN,
    API_KEY,
    // A developer's .env must not change what is tested.
    DOTENV_CONFIG_PATH: '/nonexistent',
    ...extraEnv,
  };
  const pm2 = async (...args: string[]) => (await run(pm2Bin, args, { cwd: root, env })).stdout;
  t.after(async () => {
    await pm2('kill').catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });
  return { pm2, url: `https://127.0.0.1:${port}`, list: async () => JSON.parse(await pm2('jlist')) as Pm2Process[] };
}

test('pm2 starts the server from ecosystem.config.js, and stops it cleanly', { timeout: 120_000 }, async (t) => {
  const { pm2, url, list } = await pm2Session(t);
  // wait_ready: pm2 returns once the server has said it listens.
  await pm2('start', 'ecosystem.config.js', '--env', 'production');
  const res = await get(url, '/');
  assert.equal(res.status, 200);
  assert.equal(res.json<{ server: string }>().server, 'VideoWhisper WebRTC');
  assert.equal((await get(url, '/stats')).status, 401, 'production mode from --env production');
  const started = await list();
  assert.deepEqual(started.map((p) => [p.name, p.pm2_env.exec_mode]), [['videowhisper-webrtc', 'fork_mode']]);

  await pm2('stop', 'videowhisper-webrtc');
  const [app] = await list();
  assert.equal(app?.pm2_env.status, 'stopped');
  assert.equal(app?.pm2_env.restart_time, 0, 'it never crashed');
  await assert.rejects(get(url, '/'), 'the port is closed');
  const logs = await pm2('logs', 'videowhisper-webrtc', '--nostream', '--lines', '50');
  assert.match(logs, /shutting down/);
  assert.match(logs, /server closed/);
  assert.doesNotMatch(logs, new RegExp(TOKEN), 'the token never reaches production logs');
});

test('with REDIS_URL, the same command starts a pm2 cluster whose processes act as one', { timeout: 120_000 }, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const { pm2, url, list } = await pm2Session(t, { REDIS_URL: redis.url, REDIS_PREFIX: redis.prefix, PM2_INSTANCES: '2' });
  redis.onCleanup(() => pm2('kill').catch(() => undefined));
  await pm2('start', 'ecosystem.config.js', '--env', 'production');
  const started = await list();
  assert.equal(started.length, 2);
  assert.ok(started.every((p) => p.pm2_env.exec_mode === 'cluster_mode' && p.pm2_env.status === 'online'));
  // pm2 spreads connections over its processes: a few pairs signal whichever process each peer lands on.
  for (let i = 0; i < 4; i++) await broadcastAndWatch(t, url, TOKEN, { channel: `pm2-${i}` });
  const connections = (await get(url, `/connections?apikey=${API_KEY}`)).json<unknown[]>();
  assert.equal(connections.length, 4, 'every process sees the cluster-wide channels');

  await pm2('stop', 'all');
  assert.ok((await list()).every((p) => p.pm2_env.status === 'stopped' && p.pm2_env.restart_time === 0));
});
