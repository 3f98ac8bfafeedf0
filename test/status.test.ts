// GET /status as the original answers it: with an account's token, that
// account's own view (and nothing of any other); with the API key, the whole
// server; with neither, or an unknown token, 401.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { get } from './helpers/api';
import { broadcastAndWatch, connect } from './helpers/client';
import { API_KEY, startServer } from './helpers/server';

const plan = { connections: 10, totalBitrate: 5000, bitrate: 800, audioBitrate: 64, width: 1280, height: 720, frameRate: 30 };

async function twoSites(t: TestContext, env: Record<string, string> = {}) {
  const file = join(mkdtempSync(join(tmpdir(), 'vw-status-')), 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [{ id: 1, name: 'Standard', properties: plan }],
      accounts: [
        { name: 'Site A', token: 'tokenA', properties: { loginURL: 'https://site-a.example/login' }, planId: 1 },
        { name: 'Site B', token: 'tokenB', properties: {}, planId: 1 },
        { name: 'Site C', token: 'tokenC', properties: {}, planId: 1 },
      ],
    }),
  );
  const started = await startServer(t, { ACCOUNTS_FILE: file, STATIC_TOKEN: undefined, ...env });
  assert.equal((await started.server.accounts.reload()).outcome, 'reloaded');
  return started;
}

type AccountView = {
  account: string;
  status: string;
  stats?: Record<string, unknown>;
  webrtc?: Record<string, Record<string, unknown>>;
  plan: unknown;
};

test("/status?token= shows the account's own view: status, stats, its channels under webrtc, its plan", async (t) => {
  const { url } = await twoSites(t);
  await broadcastAndWatch(t, url, 'tokenA', { channel: 'Lobby' });
  await broadcastAndWatch(t, url, 'tokenB', { channel: 'Lobby', broadcaster: 'OtherStudio', player: 'OtherViewer' });
  await broadcastAndWatch(t, url, 'tokenB', { channel: 'B only', broadcaster: 'Secret', player: 'SecretViewer' });

  const response = await get(url, '/status?token=tokenA');
  assert.equal(response.status, 200);
  const view = response.json<AccountView>();
  assert.equal(view.account, 'Site A');
  assert.equal(view.status, 'Active');
  assert.deepEqual(view.plan, plan);
  assert.deepEqual(Object.keys(view.webrtc ?? {}), ['Lobby']);
  assert.equal(view.webrtc?.Lobby?.publisher, 'Studio');
  assert.equal(view.webrtc?.Lobby?.peers, 2);
  assert.equal(view.stats?.broadcasters, 1);
  assert.equal(view.stats?.players, 1);
  assert.equal(view.stats?.bitrate, 1000);
  // Nothing of Site B: not its peers, channels, name, nor any token or login URL.
  for (const secret of ['Site B', 'OtherStudio', 'Secret', 'B only', 'tokenA', 'tokenB', 'site-a.example'])
    assert.ok(!response.text.includes(secret), `leaks ${secret}`);

  // An account with no one connected is Inactive, with its plan.
  assert.deepEqual((await get(url, '/status?token=tokenC')).json(), { account: 'Site C', status: 'Inactive', plan });
  // Connected but in no channel yet is Active already.
  await connect(t, url, 'tokenC');
  assert.equal((await get(url, '/status?token=tokenC')).json<AccountView>().status, 'Active');
});

test('/status with the API key shows the whole server, channels grouped by account', async (t) => {
  const { url } = await twoSites(t);
  await broadcastAndWatch(t, url, 'tokenA', { channel: 'Lobby' });
  await broadcastAndWatch(t, url, 'tokenB', { channel: 'Lobby', broadcaster: 'OtherStudio', player: 'OtherViewer' });
  const response = await get(url, `/status?apikey=${API_KEY}`);
  assert.equal(response.status, 200);
  const view = response.json<{
    connections: number;
    stats: Record<string, { players: number }>;
    webrtc: Record<string, Record<string, { publisher: string }>>;
  }>();
  assert.equal(view.connections, 2);
  assert.deepEqual(Object.keys(view.stats).sort(), ['Site A', 'Site B']);
  assert.equal(view.stats['Site B']?.players, 1);
  assert.equal(view.webrtc['Site A']?.Lobby?.publisher, 'Studio');
  assert.equal(view.webrtc['Site B']?.Lobby?.publisher, 'OtherStudio');
  assert.ok(!response.text.includes('tokenA'));
});

test('/status with neither key nor token, or with an unknown token, answers 401', async (t) => {
  const { url } = await twoSites(t);
  const none = await get(url, '/status');
  assert.equal(none.status, 401);
  assert.equal(none.text, 'Invalid API key and no account token');
  const wrongKey = await get(url, '/status?apikey=wrong');
  assert.equal(wrongKey.status, 401);
  const unknown = await get(url, '/status?token=nope');
  assert.equal(unknown.status, 401);
  assert.equal(unknown.text, 'Invalid account token');
  // An unknown token with the right key is still an unknown token: the token asks for one account.
  assert.equal((await get(url, `/status?token=nope&apikey=${API_KEY}`)).status, 401);
  // In development mode the whole server needs no key; a token still needs to be right.
  const dev = await twoSites(t, { NODE_ENV: 'development' });
  assert.equal((await get(dev.url, '/status')).status, 200);
  assert.equal((await get(dev.url, '/status?token=nope')).status, 401);
});

test('guessing tokens on /status counts toward the failed-attempt limit', async (t) => {
  const { url } = await twoSites(t, { RATE_FAILED_AUTH_PER_MINUTE: '3' });
  for (const guess of ['a', 'b', 'c']) assert.equal((await get(url, `/status?token=${guess}`)).status, 401);
  const blocked = await get(url, '/status?token=tokenA');
  assert.equal(blocked.status, 429);
  assert.equal(blocked.text, 'Too many failed attempts');
});
