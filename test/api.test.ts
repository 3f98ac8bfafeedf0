// The REST API: the original's paths and JSON shapes, and the API key rules.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { get } from './helpers/api';
import { broadcastAndWatch, STREAM } from './helpers/client';
import { API_KEY, startServer, TOKEN } from './helpers/server';

test('GET / names the server, its version and features without a key', async (t) => {
  const { url } = await startServer(t);
  const res = await get(url, '/');
  assert.equal(res.status, 200);
  const body = res.json<Record<string, unknown>>();
  assert.equal(body.server, 'VideoWhisper WebRTC');
  // The release date as a semver version (CHANGELOG.md): no leading zeros.
  assert.match(String(body.version), /^\d{4}\.(1[0-2]|[1-9])\.(3[01]|[12]\d|[1-9])$/);
  assert.equal(typeof body.features, 'string');
});

test('outside development mode a wrong or missing key gets 401 "Invalid API key"', async (t) => {
  const { url, logs } = await startServer(t);
  for (const path of ['/connections', '/channels', '/stats', '/update-accounts']) {
    for (const query of ['', '?apikey=wrong', '?apikey=', `?apikey=${API_KEY}x`, `?apikey=${API_KEY}&apikey=${API_KEY}`]) {
      const res = await get(url, path + query);
      assert.equal(res.status, 401, path + query);
      assert.equal(res.text, 'Invalid API key');
    }
    assert.equal((await get(url, `${path}?apikey=${API_KEY}`)).status, 200, path);
    assert.equal((await get(url, path, { 'x-api-key': API_KEY })).status, 200, `${path} X-API-Key`);
    assert.equal((await get(url, path, { authorization: `Bearer ${API_KEY}` })).status, 200, `${path} Bearer`);
  }
  assert.ok(!JSON.stringify(logs).includes('wrong'), 'a presented key is never logged');
});

test('production without API_KEY refuses every keyed request', async (t) => {
  const { url } = await startServer(t, { API_KEY: undefined });
  assert.equal((await get(url, '/stats?apikey=')).status, 401);
  assert.equal((await get(url, '/stats?apikey=undefined')).status, 401);
});

test('development mode needs no key', async (t) => {
  const { url } = await startServer(t, { NODE_ENV: 'development', API_KEY: undefined });
  for (const path of ['/connections', '/channels', '/stats', '/update-accounts']) assert.equal((await get(url, path)).status, 200, path);
});

test('/connections, /channels and /stats show a broadcaster with one player in the original shapes', async (t) => {
  const { url } = await startServer(t);
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'Lobby', stream: STREAM });

  const connections = (await get(url, `/connections?apikey=${API_KEY}`)).json();
  assert.deepEqual(connections, [
    [
      'Lobby',
      {
        Studio: { socketId: broadcaster.id, peerID: 'Studio', type: 'broadcaster', account: '_static' },
        Viewer: { socketId: player.id, peerID: 'Viewer', type: 'player', account: '_static' },
      },
    ],
  ]);

  const channels = (await get(url, `/channels?apikey=${API_KEY}`)).json<[string, Record<string, unknown>][]>();
  assert.equal(channels.length, 1);
  const [name, channel] = channels[0] ?? [];
  assert.equal(name, 'Lobby');
  assert.equal(typeof channel?.time, 'number');
  assert.deepEqual({ ...channel, time: 0 }, { ...STREAM, publisher: 'Studio', time: 0, peers: 2, account: '_static' });

  const stats = (await get(url, `/stats?apikey=${API_KEY}`)).json<[string, Record<string, unknown>][]>();
  assert.equal(stats.length, 1);
  assert.equal(stats[0]?.[0], '_static');
  assert.deepEqual(
    { ...stats[0]?.[1], issues: undefined, refused: undefined },
    { connections: 2, bitrate: 1000, audioBitrate: 64, players: 1, broadcasters: 1, issues: undefined, refused: undefined },
  );

  // Everyone leaves: the channel is freed and the stats go back to zero.
  broadcaster.disconnect();
  player.disconnect();
  await waitFor(async () => (await get(url, `/stats?apikey=${API_KEY}`)).json<unknown[]>().length === 0);
  assert.deepEqual((await get(url, `/connections?apikey=${API_KEY}`)).json(), []);
  assert.deepEqual((await get(url, `/channels?apikey=${API_KEY}`)).json(), []);
});

test('/update-accounts answers 200 with the outcome when no database is configured', async (t) => {
  const { url } = await startServer(t);
  const res = await get(url, `/update-accounts?apikey=${API_KEY}`);
  assert.equal(res.status, 200);
  assert.deepEqual(res.json(), { status: 'Updating Accounts', outcome: 'no-database', accounts: 0 });
});

/** Polls a condition the server reaches asynchronously (a disconnect), with a deadline. */
async function waitFor(condition: () => Promise<boolean>, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setImmediate(resolve));
  }
}
