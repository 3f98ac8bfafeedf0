// Installing as a site owner does, from the files the repository ships:
// README's one production command builds the server and leaves only the
// runtime dependencies, and the result starts and answers /ready. And, where
// Docker runs, the compose file builds and starts the server with its services.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { get } from './helpers/api';
import { freePort, waitForOutput } from './helpers/process';
import { TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const run = promisify(execFile);
const root = join(__dirname, '..');

/** The production install command, exactly as README.md gives it. */
const PRODUCTION_INSTALL = 'npm ci && npm prune --omit=dev';

test('a production install without dev dependencies starts and answers /ready', { timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vw-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // What a clone holds: the tracked files (and new ones not yet committed), nothing built.
  const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, maxBuffer: 1 << 24 });
  for (const file of stdout.split('\0').filter((f) => f && existsSync(join(root, f)))) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(join(root, file), join(dir, file));
  }
  assert.ok(readFileSync(join(root, 'README.md'), 'utf8').includes(PRODUCTION_INSTALL), 'README gives this command');

  // npm's cache already holds the packages: no download is needed.
  await run('sh', ['-c', PRODUCTION_INSTALL], {
    cwd: dir,
    env: { ...process.env, npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false' },
    maxBuffer: 1 << 24,
  });
  assert.ok(existsSync(join(dir, 'dist', 'main.js')), 'built');
  // patches/ applied: ws's (test/websocket-close.test.ts says what it does), then engine.io's and node-redis's.
  assert.match(readFileSync(join(dir, 'node_modules', 'ws', 'lib', 'websocket.js'), 'utf8'), /if \(!websocket\._receiver\.writableEnded\)/);
  // engine.io's: an upgrade's response does not outlive the upgrade (src/signaling/first-request.ts).
  assert.match(readFileSync(join(dir, 'node_modules', 'engine.io', 'build', 'server.js'), 'utf8'), /res\.forgetUnlessListened\(\)/);
  // node-redis's: a cached lookup's string is returned as it is, not copied through the V8 serializer.
  assert.match(
    readFileSync(join(dir, 'node_modules', '@redis', 'client', 'dist', 'lib', 'client', 'cache.js'), 'utf8'),
    /cloneUnlessImmutable\(val\)/,
  );
  for (const dev of ['typescript', 'tsx', 'pm2', 'socket.io-client', 'playwright-core'])
    assert.ok(!existsSync(join(dir, 'node_modules', dev)), `${dev} is not installed`);
  assert.ok(!existsSync(join(dir, 'node_modules', 'utf-8-validate')), 'utf-8-validate is not needed');

  const port = await freePort();
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      CERTIFICATE: testCertificate().prefix,
      STATIC_TOKEN: TOKEN,
      API_KEY: 'install-test-key',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => void child.kill('SIGKILL'));
  await waitForOutput(child, 'the installed server', /VideoWhisper WebRTC signaling on/, 30_000);
  const ready = await get(`https://127.0.0.1:${port}`, '/ready');
  assert.equal(ready.status, 200, ready.text);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('docker compose builds and starts the server with MariaDB, Redis and coturn', { timeout: 900_000 }, async (t) => {
  // Docker is optional: without a running engine this test is skipped (also in CI), never failed.
  const engine = await run('docker', ['info', '--format', '{{.ServerVersion}}']).then(
    () => undefined,
    (err: { stderr?: string; message: string }) => (err.stderr || err.message).trim().split('\n')[0],
  );
  if (engine !== undefined) return void t.skip(`no Docker engine here (docker info: ${engine})`);

  const project = `vwtest${process.pid}`;
  const port = await freePort();
  const env = { ...process.env, COMPOSE_PROJECT_NAME: project, PORT: String(port), STATIC_TOKEN: TOKEN, API_KEY: 'compose-test-key' };
  const compose = (...args: string[]) => run('docker', ['compose', ...args], { cwd: root, env, maxBuffer: 1 << 26 });
  t.after(() => compose('down', '--volumes', '--remove-orphans').catch(() => undefined));
  await compose('up', '--build', '--detach', '--wait', '--wait-timeout', '300');
  const ready = await fetch(`http://127.0.0.1:${port}/ready`);
  assert.equal(ready.status, 200, await ready.text());
  assert.deepEqual(((await ready.json()) as { checks: unknown }).checks, { accounts: true, redis: true, running: true });
});
