// What an operator relies on: metrics, health and readiness, graceful
// shutdown, SIGHUP reloads, and logs that never carry secrets.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { get } from './helpers/api';
import { broadcastAndWatch, connect, next, nextMessage, refusal, STREAM } from './helpers/client';
import { spawnServer } from './helpers/process';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { progressing, within } from './helpers/wait';

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : NaN;
}

test('metrics move after a handshake, a relay and a refusal; /metrics needs the key', async (t) => {
  const { url } = await startServer(t);
  assert.equal((await get(url, '/metrics')).status, 401);
  const before = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
  assert.equal(metric(before, 'videowhisper_connections'), 0);

  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'metrics' });
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

  const { player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'shutdown' });

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
  socket.emit('publish', 'Studio', 'secrets', STREAM);
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

test('SIGHUP reloads accounts, like /update-accounts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vw-hup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'accounts.json');
  const accounts = (tokens: string[]) =>
    JSON.stringify({
      plans: [{ id: 1, name: 'Plan', properties: {} }],
      accounts: tokens.map((token) => ({ name: token, token, planId: 1 })),
    });
  writeFileSync(file, accounts(['first-token']));
  // Accounts from the file only: no static token.
  const spawned = await spawnServer(t, { STATIC_TOKEN: undefined, ACCOUNTS_FILE: file });
  await spawned.waitForLog('accounts loaded');
  const { url } = spawned;
  assert.equal(await refusal(url, { token: 'first-token' }), 'connected');
  assert.equal(await refusal(url, { token: 'second-token' }), 'ERROR: Authentication error');

  writeFileSync(file, accounts(['second-token']));
  spawned.child.kill('SIGHUP');
  await spawned.waitForLog('accounts reloaded on signal');
  assert.equal(await refusal(url, { token: 'second-token' }), 'connected');
  assert.equal(await refusal(url, { token: 'first-token' }), 'ERROR: Authentication error');
  spawned.child.kill('SIGTERM');
  assert.equal(await within(spawned.exited, 'the server to exit', 30_000), 0, 'SIGTERM exits cleanly');
});

test('ACCOUNTS_REFRESH_SECONDS reloads the accounts on its own, with no request or signal', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vw-refresh-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'accounts.json');
  const accounts = (tokens: string[]) =>
    JSON.stringify({
      plans: [{ id: 1, name: 'Plan', properties: {} }],
      accounts: tokens.map((token) => ({ name: token, token, planId: 1 })),
    });
  writeFileSync(file, accounts(['first-token']));
  const { url, logs, server } = await startServer(t, { STATIC_TOKEN: '', ACCOUNTS_FILE: file, ACCOUNTS_REFRESH_SECONDS: '1' });
  // The file is read after the port opens: on a busy machine a handshake could come first.
  assert.equal((await server.accounts.reload()).outcome, 'reloaded');
  assert.equal(await refusal(url, { token: 'first-token' }), 'connected');
  assert.equal(await refusal(url, { token: 'second-token' }), 'ERROR: Authentication error');

  const loadsBefore = logs.filter((l) => l.msg === 'accounts loaded').length;
  writeFileSync(file, accounts(['second-token']));
  // Two more loads at least: the second surely read the new file.
  await progressing('two reloads on the interval', loadsBefore + 2, () => logs.filter((l) => l.msg === 'accounts loaded').length);
  assert.equal(await refusal(url, { token: 'second-token' }), 'connected');
  assert.equal(await refusal(url, { token: 'first-token' }), 'ERROR: Authentication error');
});

test('METRICS_PER_ACCOUNT=true adds per-account series to /metrics; without it there are none', async (t) => {
  const perAccount = await startServer(t, { METRICS_PER_ACCOUNT: 'true' });
  const plain = await startServer(t);
  for (const { url } of [perAccount, plain]) await broadcastAndWatch(t, url, TOKEN, { channel: 'per-account' });

  const withSeries = (await get(perAccount.url, `/metrics?apikey=${API_KEY}`)).text;
  assert.equal(metric(withSeries, 'videowhisper_account_connections', '{account="_static"}'), 2);
  // Plan usage counts the stream once for its broadcaster and once for its player.
  assert.equal(metric(withSeries, 'videowhisper_account_bitrate_kbps', '{account="_static"}'), 2 * (STREAM.bitrate + STREAM.audioBitrate));
  const without = (await get(plain.url, `/metrics?apikey=${API_KEY}`)).text;
  assert.equal(metric(without, 'videowhisper_connections'), 2);
  assert.doesNotMatch(without, /videowhisper_account_/);
});

test('CORS_ORIGIN: the REST API allows any origin by default, or only the origins listed', async (t) => {
  const open = await startServer(t);
  const anyOrigin = await get(open.url, '/', { Origin: 'https://site.example' });
  assert.equal(anyOrigin.headers['access-control-allow-origin'], '*');

  const listed = await startServer(t, { CORS_ORIGIN: 'https://a.example, https://b.example' });
  for (const origin of ['https://a.example', 'https://b.example']) {
    const allowed = await get(listed.url, '/', { Origin: origin });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers['access-control-allow-origin'], origin);
    assert.match(String(allowed.headers.vary), /Origin/);
  }
  const other = await get(listed.url, '/', { Origin: 'https://evil.example' });
  assert.equal(other.headers['access-control-allow-origin'], undefined, 'no CORS header for an origin not listed');
});
