// The server as a site owner runs it: pm2 with ecosystem.config.js.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { get } from './helpers/api';
import { API_KEY, TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const run = promisify(execFile);
const root = join(__dirname, '..');
const pm2 = join(root, 'node_modules', '.bin', 'pm2');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('pm2 starts the server from ecosystem.config.js, and stops it cleanly', { timeout: 120_000 }, async (t) => {
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
  };
  t.after(async () => {
    await run(pm2, ['kill'], { cwd: root, env }).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });
  // wait_ready: pm2 returns once the server has said it listens.
  await run(pm2, ['start', 'ecosystem.config.js', '--env', 'production'], { cwd: root, env });
  const res = await get(`https://127.0.0.1:${port}`, '/');
  assert.equal(res.status, 200);
  assert.equal(res.json<{ server: string }>().server, 'VideoWhisper WebRTC');
  assert.equal((await get(`https://127.0.0.1:${port}`, '/stats')).status, 401, 'production mode from --env production');

  await run(pm2, ['stop', 'videowhisper-webrtc'], { cwd: root, env });
  const { stdout } = await run(pm2, ['jlist'], { cwd: root, env });
  const [app] = JSON.parse(stdout) as { pm2_env: { status: string; restart_time: number } }[];
  assert.equal(app?.pm2_env.status, 'stopped');
  assert.equal(app?.pm2_env.restart_time, 0, 'it never crashed');
  await assert.rejects(get(`https://127.0.0.1:${port}`, '/'), 'the port is closed');
  const { stdout: logs } = await run(pm2, ['logs', 'videowhisper-webrtc', '--nostream', '--lines', '50'], { cwd: root, env });
  assert.match(logs, /shutting down/);
  assert.match(logs, /server closed/);
  assert.doesNotMatch(logs, new RegExp(TOKEN), 'the token never reaches production logs');
});
