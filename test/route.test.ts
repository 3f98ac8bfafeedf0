// Channel affinity: `GET /route?channel=` answers the address of the instance
// that holds the channel (its broadcaster's, else most of its peers'), so a
// site sends a channel's peers to one instance. Needs Redis on 127.0.0.1:6379
// for the cluster tests.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Account } from '../src/accounts/account';
import type { AccountStore } from '../src/accounts/store';
import type { ChannelRoute } from '../src/channels/registry';
import { UNLIMITED } from '../src/limits';
import { get } from './helpers/api';
import { connect, nextMessage, STREAM, type Client } from './helpers/client';
import { onRedisCluster, testRedis, type TestRedis } from './helpers/redis';
import { API_KEY, startServer, TOKEN, oneAccount, type TestServer } from './helpers/server';
import { eventually } from './helpers/wait';

const ONE = 'wss://one.example.com:3000';
const TWO = 'wss://two.example.com:3000';

const siteA: Account = { name: 'Site A', suspended: false, plan: UNLIMITED };
const siteB: Account = { name: 'Site B', suspended: false, plan: UNLIMITED };

/** Two accounts, each found by its token. */
function twoAccounts(): AccountStore {
  const a = oneAccount(siteA, 'token-a');
  const b = oneAccount(siteB, 'token-b');
  return { ...a, findByToken: (token) => a.findByToken(token) ?? b.findByToken(token), count: () => 2 };
}

/** One instance on the test's Redis, ready (as a load balancer would wait for it). */
async function instance(redis: TestRedis, publicUrl: string | undefined, accounts?: AccountStore) {
  const server = await startServer(undefined, { ...redis.env, ...(publicUrl && { PUBLIC_URL: publicUrl }) }, accounts && { accounts });
  redis.onCleanup(() => server.close());
  await eventually('the instance is ready', async () => (await get(server.url, '/ready')).status === 200);
  return server;
}

const route = async (server: TestServer, query: string) => {
  const response = await get(server.url, `/route?${query}`);
  assert.equal(response.status, 200, response.text);
  return response.json<ChannelRoute>();
};

async function publish(socket: Client, peerID: string, channel: string) {
  const peers = nextMessage(socket, 'peers');
  socket.emit('publish', peerID, channel, STREAM);
  await peers;
}

/** Players subscribe: nothing answers a player in a channel without broadcaster, so the REST view tells when they are in. */
async function subscribeAll(server: TestServer, players: [Client, string][], channel: string) {
  for (const [socket, peerID] of players) socket.emit('subscribe', peerID, channel);
  type Connections = [string, Record<string, { type: string }>][];
  await eventually(`${players.length} players in ${channel}`, async () => {
    const connections = (await get(server.url, `/connections?apikey=${API_KEY}`)).json<Connections>();
    const peers = Object.values(connections.find(([name]) => name === channel)?.[1] ?? {});
    return peers.filter((peer) => peer.type === 'player').length === players.length;
  });
}

test("a channel routes to its broadcaster's instance, asked on any instance, with a token or the API key", async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const [one, two] = await Promise.all([instance(redis, ONE), instance(redis, TWO)]);
  const broadcaster = await connect(t, one.url, TOKEN);
  await publish(broadcaster, 'Studio', 'Lobby');

  const held = await route(two, `channel=Lobby&token=${TOKEN}`);
  assert.equal(held.url, ONE);
  assert.equal(held.holder, true);
  assert.equal(typeof held.instance, 'string');
  assert.deepEqual(await route(one, `channel=Lobby&token=${TOKEN}`), held);
  assert.deepEqual(await route(two, `channel=Lobby&account=_static&apikey=${API_KEY}`), held);
  // The instance publishes its address with its heartbeat, in the heartbeat key.
  const alive = `${redis.prefix}{instances}alive:${held.instance}`;
  assert.equal(await redis.commands.send(['GET', alive], alive), ONE);

  // Players on the other instance do not move the channel: its broadcaster holds it.
  const players = await Promise.all([connect(t, two.url, TOKEN), connect(t, two.url, TOKEN)]);
  await subscribeAll(
    two,
    [
      [players[0], 'Viewer 1'],
      [players[1], 'Viewer 2'],
    ],
    'Lobby',
  );
  assert.deepEqual(await route(two, `channel=Lobby&token=${TOKEN}`), held);

  // A channel no instance holds: this instance's own address.
  const unknown = await route(two, `channel=Nowhere&token=${TOKEN}`);
  assert.equal(unknown.url, TWO);
  assert.equal(unknown.holder, false);
  assert.notEqual(unknown.instance, held.instance);
});

test('a channel without broadcaster routes to the instance that holds most of its peers', async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const [one, two] = await Promise.all([instance(redis, ONE), instance(redis, TWO)]);
  const onOne = await connect(t, one.url, TOKEN);
  const onTwo = await Promise.all([connect(t, two.url, TOKEN), connect(t, two.url, TOKEN)]);
  await subscribeAll(
    one,
    [
      [onOne, 'Early'],
      [onTwo[0], 'Viewer 1'],
      [onTwo[1], 'Viewer 2'],
    ],
    'Waiting room',
  );
  for (const server of [one, two]) {
    const answer = await route(server, `channel=${encodeURIComponent('Waiting room')}&token=${TOKEN}`);
    assert.equal(answer.url, TWO);
    assert.equal(answer.holder, true);
  }
});

test("another account's channel is an unknown one to a token; the API key names the account", async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const [one, two] = await Promise.all([instance(redis, ONE, twoAccounts()), instance(redis, TWO, twoAccounts())]);
  const broadcaster = await connect(t, one.url, 'token-b');
  await publish(broadcaster, 'Studio', 'Only B');

  const unknown = await route(two, 'channel=Nowhere&token=token-a');
  assert.deepEqual(await route(two, `channel=${encodeURIComponent('Only B')}&token=token-a`), unknown);
  assert.deepEqual(unknown, { url: TWO, instance: unknown.instance, holder: false });
  // The same name asked by its own account, or with the API key for it.
  assert.equal((await route(two, `channel=${encodeURIComponent('Only B')}&token=token-b`)).url, ONE);
  const forB = await route(two, `channel=${encodeURIComponent('Only B')}&account=${encodeURIComponent('Site B')}&apikey=${API_KEY}`);
  assert.equal(forB.url, ONE);
  assert.equal(forB.holder, true);
  const forA = await route(two, `channel=${encodeURIComponent('Only B')}&account=${encodeURIComponent('Site A')}&apikey=${API_KEY}`);
  assert.deepEqual(forA, unknown);
});

test('a holder that published no address (PUBLIC_URL unset, or an older version): this instance answers, holder false', async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const [silent, two] = await Promise.all([instance(redis, undefined), instance(redis, TWO)]);
  const broadcaster = await connect(t, silent.url, TOKEN);
  await publish(broadcaster, 'Studio', 'Quiet');
  const fromTwo = await route(two, `channel=Quiet&token=${TOKEN}`);
  assert.deepEqual(fromTwo, { url: TWO, instance: fromTwo.instance, holder: false });
  // Asked on the holder itself: it holds the channel, and has no address to give.
  const fromSilent = await route(silent, `channel=Quiet&token=${TOKEN}`);
  assert.equal(fromSilent.url, null);
  assert.equal(fromSilent.holder, true);
  assert.notEqual(fromSilent.instance, fromTwo.instance);
  const alive = `${redis.prefix}{instances}alive:${fromSilent.instance}`;
  assert.equal(await redis.commands.send(['GET', alive], alive), '1');
});

test('a wrong token or key gets 401; a missing, repeated or too long parameter gets 400', async (t) => {
  if (onRedisCluster()) return t.skip('the same on one Redis');
  const { url } = await startServer(t, { PUBLIC_URL: ONE });
  const status = async (query: string) => {
    const response = await get(url, `/route?${query}`);
    return [response.status, response.text];
  };
  assert.deepEqual(await status('channel=Lobby&token=wrong'), [401, 'Invalid account token']);
  assert.deepEqual(await status('channel=Lobby'), [401, 'Invalid API key and no account token']);
  assert.deepEqual(await status('channel=Lobby&account=_static&apikey=wrong'), [401, 'Invalid API key and no account token']);
  assert.deepEqual(await status(`token=${TOKEN}`), [400, 'channel is required']);
  assert.deepEqual(await status(`channel=&token=${TOKEN}`), [400, 'channel is required']);
  assert.deepEqual(await status(`channel=a&channel=b&token=${TOKEN}`), [400, 'channel must be given once, as text']);
  assert.deepEqual(await status(`channel[x]=a&token=${TOKEN}`), [400, 'channel is required']);
  assert.deepEqual(await status(`channel=${'x'.repeat(129)}&token=${TOKEN}`), [400, 'channel must be at most 128 characters']);
  // 128 emoji are 128 characters.
  assert.equal((await status(`channel=${encodeURIComponent('🎥'.repeat(128))}&token=${TOKEN}`))[0], 200);
  // With the API key, production needs the account named.
  assert.deepEqual(await status(`channel=Lobby&apikey=${API_KEY}`), [400, 'account is required']);
  assert.deepEqual(await status(`channel=Lobby&account=a&account=b&apikey=${API_KEY}`), [400, 'account must be given once, as text']);
  assert.deepEqual(await status(`channel=Lobby&account=${'a'.repeat(256)}&apikey=${API_KEY}`), [
    400,
    'account must be at most 255 characters',
  ]);
  // The server is still there.
  assert.equal((await get(url, '/health')).status, 200);
});

test('one process in memory answers its own address; development mode needs no key and takes the static account', async (t) => {
  if (onRedisCluster()) return t.skip('no Redis involved');
  const dev = await startServer(t, { NODE_ENV: 'development', PUBLIC_URL: ONE });
  const broadcaster = await connect(t, dev.url, TOKEN);
  await publish(broadcaster, 'Studio', 'Lobby');
  assert.deepEqual(await route(dev, 'channel=Lobby'), { url: ONE, instance: null, holder: true });
  assert.deepEqual(await route(dev, 'channel=Lobby&account=_static'), { url: ONE, instance: null, holder: true });
  assert.deepEqual(await route(dev, 'channel=Lobby&account=other'), { url: ONE, instance: null, holder: false });
  assert.deepEqual(await route(dev, `channel=Nowhere&token=${TOKEN}`), { url: ONE, instance: null, holder: false });

  const plain = await startServer(t);
  assert.deepEqual(await route(plain, `channel=Lobby&token=${TOKEN}`), { url: null, instance: null, holder: false });
});
