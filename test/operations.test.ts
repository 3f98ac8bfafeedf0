// What an operator relies on: metrics, health and readiness, graceful
// shutdown, SIGHUP reloads, and logs that never carry secrets.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { get } from './helpers/api';
import { connect, next, nextMessage, refusal } from './helpers/client';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const stream = { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 };

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : NaN;
}

test('metrics move after a handshake, a relay and a refusal; /metrics needs the key', async (t) => {
  const { url } = await startServer(t);
  assert.equal((await get(url, '/metrics')).status, 401);
  const before = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
  assert.equal(metric(before, 'videowhisper_connections'), 0);

  const broadcaster = await connect(t, url, TOKEN);
  broadcaster.emit('publish', 'Studio', 'metrics', stream);
  await nextMessage(broadcaster, 'peers');
  const player = await connect(t, url, TOKEN);
  const noticed = nextMessage(broadcaster, 'peer');
  player.emit('subscribe', 'Viewer', 'metrics');
  await noticed;
  const offered = nextMessage(player, 'offer');
  broadcaster.emit('messagePeer', { target: 'Viewer', type: 'offer', content: { sdp: 'v=0' } });
  await offered;
  assert.equal(await refusal(url, { token: 'wrong' }), 'ERROR: Authentication error');
  const refused = next(broadcaster, 'publishError');
  broadcaster.emit('publish', 'Studio', 'metrics', { width: 'x' });
  await refused;

  const after = (await get(url, '/metrics', { authorization: `Bearer ${API_KEY}` })).text;
  assert.equal(metric(after, 'videowhisper_connections'), 2);
  assert.equal(metric(after, 'videowhisper_channels'), 1);
  assert.equal(metric(after, 'videowhisper_peers', '{role="player"}'), 1);
  assert.equal(metric(after, 'videowhisper_peers', '{role="broadcaster"}'), 1);
  assert.equal(metric(after, 'videowhisper_relayed_messages_total', '{type="offer"}'), 1);
  assert.equal(metric(after, 'videowhisper_refusals_total', '{reason="auth"}'), 1);
  assert.equal(metric(after, 'videowhisper_refusals_total', '{reason="validation"}'), 1);
  assert.ok(metric(after, 'videowhisper_handshake_duration_seconds_count', '{outcome="accepted"}') >= 2);
  assert.ok(Number.isFinite(metric(after, 'nodejs_eventloop_lag_max_seconds')), 'event-loop delay is reported');
  assert.ok(Number.isFinite(metric(after, 'process_resident_memory_bytes')));
});

test('/health answers; /ready turns 503 while shutting down; peers hear their channel close', async (t) => {
  const { url, server } = await startServer(t, { SHUTDOWN_GRACE_MS: '3000' });
  assert.deepEqual((await get(url, '/health')).json<{ status: string }>().status, 'ok');
  const ready = await get(url, '/ready');
  assert.equal(ready.status, 200);
  assert.deepEqual(ready.json(), { ready: true, checks: { accounts: true, running: true } });

  const broadcaster = await connect(t, url, TOKEN);
  broadcaster.emit('publish', 'Studio', 'shutdown', stream);
  await nextMessage(broadcaster, 'peers');
  const player = await connect(t, url, TOKEN);
  const noticed = nextMessage(broadcaster, 'peer');
  player.emit('subscribe', 'Viewer', 'shutdown');
  await noticed;

  const closed = nextMessage(player, 'close');
  const closing = server.close();
  await closed;
  const during = await get(url, '/ready');
  assert.equal(during.status, 503);
  assert.deepEqual(during.json(), { ready: false, checks: { accounts: true, running: false } });
  assert.equal(await refusal(url, { token: TOKEN }), 'ERROR: Server unavailable', 'no new sockets while draining');
  await closing;
  await assert.rejects(get(url, '/health'), 'the port is closed after the grace period');
});

test('production logs never carry tokens, API keys or the TURN secret', async (t) => {
  const secrets = { STATIC_TOKEN: 'static-token-value-123', API_KEY: 'api-key-value-456', COTURN_SECRET: 'turn-secret-789' };
  const { url, logs } = await startServer(t, { ...secrets, COTURN_SERVER: '127.0.0.1:3478', LOG_LEVEL: 'trace' });
  const socket = await connect(t, url, secrets.STATIC_TOKEN);
  socket.emit('publish', 'Studio', 'secrets', stream);
  await nextMessage(socket, 'peers');
  assert.equal(await refusal(url, { token: 'guessed-token-000' }), 'ERROR: Authentication error');
  await get(url, `/stats?apikey=${secrets.API_KEY}`);
  await get(url, '/stats?apikey=wrong-key-000');
  await get(url, '/stats', { authorization: `Bearer ${secrets.API_KEY}` });
  socket.disconnect();
  await server(url);
  const text = JSON.stringify(logs);
  assert.ok(logs.length > 3, 'something was logged');
  for (const secret of [...Object.values(secrets), 'guessed-token-000', 'wrong-key-000']) assert.ok(!text.includes(secret), secret);
});

// A last request orders the server's logs of everything before it.
async function server(url: string) {
  await get(url, '/health');
}

test('SIGHUP reloads accounts, like /update-accounts', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vw-hup-'));
  const file = join(dir, 'accounts.json');
  const accounts = (tokens: string[]) =>
    JSON.stringify({ plans: [{ id: 1, name: 'Plan', properties: {} }], accounts: tokens.map((token) => ({ name: token, token, planId: 1 })) });
  writeFileSync(file, accounts(['first-token']));
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '..', 'src', 'main.ts')], {
    env: {
      ...process.env,
      NODE_ENV: 'production',
      PORT: '0',
      HOST: '127.0.0.1',
      CERTIFICATE: testCertificate().prefix,
      ACCOUNTS_FILE: file,
      API_KEY,
      LOG_LEVEL: 'info',
      DOTENV_CONFIG_PATH: '/nonexistent',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const lines: Record<string, unknown>[] = [];
  const waitForLog = (match: (l: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const found = lines.find(match);
      if (found) return resolve(found);
      const timer = setTimeout(() => reject(new Error('log line not seen')), 20_000);
      child.stdout.on('data', function check() {
        const hit = lines.find(match);
        if (!hit) return;
        clearTimeout(timer);
        child.stdout.off('data', check);
        resolve(hit);
      });
    });
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const part of parts) if (part.trim()) lines.push(JSON.parse(part) as Record<string, unknown>);
  });
  const started = await waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('VideoWhisper WebRTC signaling on'));
  await waitForLog((l) => l.msg === 'accounts loaded');
  const port = /:(\d+)\//.exec(String(started.msg))?.[1];
  const url = `https://127.0.0.1:${port}`;
  assert.equal(await refusal(url, { token: 'first-token' }), 'connected');
  assert.equal(await refusal(url, { token: 'second-token' }), 'ERROR: Authentication error');

  writeFileSync(file, accounts(['second-token']));
  child.kill('SIGHUP');
  await waitForLog((l) => l.msg === 'accounts reloaded on signal');
  assert.equal(await refusal(url, { token: 'second-token' }), 'connected');
  assert.equal(await refusal(url, { token: 'first-token' }), 'ERROR: Authentication error');
  child.kill('SIGTERM');
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, 'SIGTERM exits cleanly');
});
