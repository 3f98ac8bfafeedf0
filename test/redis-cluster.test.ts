// What only a Redis Cluster does to the instances: a master dies and its
// replica takes over, a slot moves to another master while peers signal or
// a room's participants come, go and chat, and an instance closes while it
// subscribes anew after such a change.
// Runs on a cluster of three masters with a replica each, started for this
// file on loopback ports.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import keySlot from 'cluster-key-slot';
import pino from 'pino';
import type { Account } from '../src/accounts/account';
import { connectRedis } from '../src/channels/redis/connection';
import { CLUSTER_BUCKETS, encodeName, keyLayout } from '../src/channels/redis/keys';
import { UNLIMITED } from '../src/limits';
import { RoomError } from '../src/rooms/replies';
import { get } from './helpers/api';
import { connect, connectClient, next, nextMessage, STREAM, type Client } from './helpers/client';
import { testRedis, useRedisCluster, type TestRedis } from './helpers/redis';
import type { ClusterNode } from './helpers/redis-cluster';
import { nextUpdate, roomAccountsFile, signIn, SITE_A, SITE_B, type Participant, type Update } from './helpers/rooms';
import { API_KEY, startServer, TOKEN, oneAccount } from './helpers/server';
import { eventually } from './helpers/wait';

useRedisCluster();

const TIMEOUT_MS = 4000;
const LIMIT = 5;
const sdp = (kind: string) => ({ type: kind, sdp: `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=${kind}\r\n` });

const limited: Account = { name: 'Limited Site', suspended: false, plan: { ...UNLIMITED, connections: LIMIT } };
const accounts = oneAccount(limited, 'limited-token');

async function instance(redis: TestRedis, deps: Parameters<typeof startServer>[2] = {}) {
  const server = await startServer(undefined, { ...redis.env, CLUSTER_TIMEOUT_MS: String(TIMEOUT_MS) }, deps);
  redis.onCleanup(() => server.close());
  await eventually('the instance is ready', async () => (await get(server.url, '/ready')).status === 200);
  return server;
}

const api = async <T>(url: string, path: string) => (await get(url, `${path}?apikey=${API_KEY}`)).json<T>();
type Stats = [string, { connections: number }][];

/** The slot that holds an account's usage and channels. */
const slotOf = (redis: TestRedis, account: string) => keySlot(keyLayout(redis.prefix, CLUSTER_BUCKETS).bucketOf(encodeName(account)));

/** 'connected' (and the socket), or the connect_error message. */
function attempt(url: string, token: string): Promise<{ outcome: string; socket: Client }> {
  const socket = connectClient(url, { token });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ outcome: 'no answer', socket }), 20_000);
    socket.once('connect', () => (clearTimeout(timer), resolve({ outcome: 'connected', socket })));
    socket.once('connect_error', (err) => (clearTimeout(timer), resolve({ outcome: err.message, socket })));
  });
}

test('the master of an account is killed: its replica takes over, the instances keep serving, the connection limit is exact again', async (t) => {
  const redis = await testRedis(t);
  if (!redis?.cluster) return;
  const cluster = redis.cluster;
  const [one, two] = [await instance(redis, { accounts }), await instance(redis, { accounts })];
  const sockets: Client[] = [];
  t.after(() => sockets.forEach((s) => s.close()));
  const broadcaster = await connect(t, one.url, 'limited-token');
  const player = await connect(t, two.url, 'limited-token');
  const published = next(broadcaster, 'message', (m) => m.type === 'peers');
  broadcaster.emit('publish', 'Studio', 'failover', STREAM);
  await published;

  const master = cluster.masterOf(slotOf(redis, limited.name));
  t.after(async () => {
    // Back as a replica of the new master, for the tests after this one.
    await cluster.revive(master);
    await cluster.settled();
  });
  // Sockets connect while the master dies: some are counted just before, some refused.
  const during = Array.from({ length: 6 }, (_, i) => attempt((i % 2 ? two : one).url, 'limited-token'));
  await cluster.kill(master);
  const outcomes = await Promise.all(during);
  sockets.push(...outcomes.map((o) => o.socket));
  await cluster.settled();
  t.diagnostic(`during the failover: ${outcomes.map((o) => o.outcome).join(', ')}`);

  // Signaling goes on: the player (on the other instance) subscribes and gets an offer.
  await eventually(
    '/ready on both instances',
    async () => (await get(one.url, '/ready')).status === 200 && (await get(two.url, '/ready')).status === 200,
  );
  const noticed = next(broadcaster, 'message', (m) => m.type === 'peer' && m.peerID === 'Viewer', 15_000);
  const subscribed = async () => {
    const refused = next(player, 'subscribeError', () => true, 2000).then(
      () => false,
      () => true,
    );
    player.emit('subscribe', 'Viewer', 'failover');
    return refused;
  };
  await eventually('the player subscribed after the failover', subscribed, 15_000);
  await noticed;
  const offer = nextMessage(player, 'offer');
  broadcaster.emit('messagePeer', { from: 'Studio', target: 'Viewer', type: 'offer', content: sdp('offer') });
  assert.equal((await offer).from, 'Studio');

  // After the failover window, Redis counts exactly the sockets that are connected.
  const connected = () => 2 + sockets.filter((s) => s.connected).length;
  await eventually(
    'the usage in Redis matches the connected sockets',
    async () => (await api<Stats>(one.url, '/stats')).find(([name]) => name === limited.name)?.[1].connections === connected(),
    3 * TIMEOUT_MS,
  );
  const before = connected();
  assert.ok(before <= LIMIT, `${before} sockets connected, over the limit of ${LIMIT}`);
  const more = await Promise.all(Array.from({ length: 10 }, (_, i) => attempt((i % 2 ? two : one).url, 'limited-token')));
  sockets.push(...more.map((o) => o.socket));
  assert.equal(more.filter((o) => o.outcome === 'connected').length, LIMIT - before);
  assert.equal(more.filter((o) => o.outcome === 'ERROR: Connection limit exceeded').length, 10 - (LIMIT - before));
});

test("a channel's slot moves to another master while peers join and signal: no peer is lost", async (t) => {
  const redis = await testRedis(t);
  if (!redis?.cluster) return;
  const cluster = redis.cluster;
  const [one, two] = [await instance(redis), await instance(redis)];
  const broadcaster = await connect(t, one.url, TOKEN);
  const published = next(broadcaster, 'message', (m) => m.type === 'peers');
  broadcaster.emit('publish', 'Studio', 'moving', STREAM);
  await published;
  const players: Client[] = [];
  /** A player on the other instance; joins refused while the slot is split are tried again, as a client would. */
  async function addPlayer() {
    let player: Client | undefined;
    await eventually(
      'a player connected',
      () =>
        connect(t, two.url, TOKEN).then(
          (p) => Boolean((player = p)),
          () => false,
        ),
      20_000,
    );
    if (!player) throw new Error('not connected');
    const name = `Viewer${players.length}`;
    players.push(player);
    const joining = player;
    const noticed = next(broadcaster, 'message', (m) => m.type === 'peer' && m.peerID === name, 20_000);
    await eventually(
      `${name} subscribed`,
      async () => {
        const refused = next(joining, 'subscribeError', () => true, 2000).then(
          () => false,
          () => true,
        );
        joining.emit('subscribe', name, 'moving');
        return refused;
      },
      20_000,
    );
    await noticed;
  }
  await addPlayer();
  await addPlayer();

  const slot = slotOf(redis, '_static');
  const target = cluster.masters().find((m) => m !== cluster.masterOf(slot)) as ClusterNode;
  let batches = 0;
  const joining: Promise<void>[] = [];
  await cluster.moveSlot(slot, target, async () => {
    batches++;
    // Traffic while the slot's keys are on both masters: offers to the players, and newcomers,
    // whose joins wait (Redis answers TRYAGAIN) until the move is done.
    const offers = players.map((p) => nextMessage(p, 'offer', 10_000));
    players.forEach((_, i) =>
      broadcaster.emit('messagePeer', { from: 'Studio', target: `Viewer${i}`, type: 'offer', content: sdp('offer') }),
    );
    await Promise.all(offers);
    if (batches <= 2) joining.push(addPlayer());
  });
  await Promise.all(joining);
  assert.equal(cluster.masterOf(slot), target);
  t.diagnostic(`slot ${slot} moved in ${batches} batches, ${players.length} players`);

  // Every peer is still there, on every instance, and still reachable.
  for (const url of [one.url, two.url]) {
    const view = await api<[string, Record<string, unknown>][]>(url, '/connections');
    const names = Object.keys(view.find(([name]) => name === 'moving')?.[1] ?? {}).sort();
    assert.deepEqual(names, ['Studio', ...players.map((_, i) => `Viewer${i}`)].sort());
  }
  const offers = players.map((p) => nextMessage(p, 'offer'));
  players.forEach((_, i) =>
    broadcaster.emit('messagePeer', { from: 'Studio', target: `Viewer${i}`, type: 'offer', content: sdp('offer') }),
  );
  for (const offer of await Promise.all(offers)) assert.equal(offer.from, 'Studio');
  const closed = players.map((p) => next(p, 'message', (m) => (m.payload as { action?: string } | undefined)?.action === 'close'));
  broadcaster.disconnect();
  await Promise.all(closed);
});

/** An instance with the two sites of the room tests. */
async function roomInstance(redis: TestRedis, file: string) {
  const env = { ACCOUNTS_FILE: file, STATIC_TOKEN: undefined, ROOM_CHAT_PER_SECOND: '100' };
  const server = await startServer(undefined, { ...redis.env, CLUSTER_TIMEOUT_MS: String(TIMEOUT_MS), ...env });
  redis.onCleanup(() => server.close());
  assert.equal((await server.server.accounts.reload()).outcome, 'reloaded');
  await eventually('the instance is ready', async () => (await get(server.url, '/ready')).status === 200);
  return server;
}

const names = (participants: unknown) => Object.values(participants as Record<string, { name: string }>).map((p) => p.name);
const textOf = (u: Update) => (u.messageNew as { text?: string } | undefined)?.text;

/**
 * Sends a room event until it is not refused as unavailable (Redis gave up
 * waiting for a slot move), as a client would; resolves with the answer that
 * `done` accepts, fails on another refusal.
 */
async function persist(socket: Participant, room: string, send: () => void, done: (u: Update) => boolean): Promise<Update> {
  for (let attempt = 1; attempt <= 10; attempt++) {
    const answer = nextUpdate(socket, (u) => u.room === room && (done(u) || 'error' in u), 15_000);
    send();
    const update = await answer;
    if (!('error' in update)) return update;
    if (update.error !== RoomError.unavailable) throw new Error(`${socket.user}: ${String(update.error)}`);
  }
  throw new Error(`${socket.user}: still unavailable`);
}
const join = (socket: Participant, room: string) =>
  persist(
    socket,
    room,
    () => socket.emit('roomJoin', { room }),
    (u) => u.type === 'roomJoin',
  );
const chat = (socket: Participant, room: string, text: string) =>
  persist(
    socket,
    room,
    () => socket.emit('roomMessage', { room, message: { text } }),
    (u) => textOf(u) === text,
  );

/** Who is in the room as a participant has heard it: its snapshot, then each join and leave. */
function presence(socket: Participant, room: string): string[] {
  const here = new Set<string>();
  for (const u of socket.updates.filter((u) => u.room === room)) {
    if (u.type === 'roomJoin') names(u.participants).forEach((name) => here.add(name));
    if (u.participantJoin) here.add((u.participantJoin as { name: string }).name);
    if (u.participantLeft) here.delete((u.participantLeft as { name: string }).name);
  }
  return [...here].sort();
}

test("a room's slot moves to another master while participants join, leave and chat from two instances: nobody and no message is lost", async (t) => {
  const redis = await testRedis(t);
  if (!redis?.cluster) return;
  const cluster = redis.cluster;
  const file = roomAccountsFile();
  const [one, two] = [await roomInstance(redis, file), await roomInstance(redis, file)];
  const on = (i: number) => (i % 2 ? two : one).url;
  const slot = slotOf(redis, SITE_A.name);
  // Another account's room, in another slot, paces the traffic: its chat crosses Redis while the slot is split.
  assert.notEqual(slotOf(redis, SITE_B.name), slot);

  const alice = await signIn(t, one.url, 'alice');
  const bob = await signIn(t, two.url, 'bob');
  const carol = await signIn(t, two.url, 'carol');
  // Connected before the move: a connection is counted in the same slot, and that is not what this test is about.
  const newcomers = await Promise.all(Array.from({ length: 4 }, (_, i) => signIn(t, on(i), `newcomer${i}`)));
  const pacers = [await signIn(t, one.url, 'pacer1', SITE_B), await signIn(t, two.url, 'pacer2', SITE_B)];
  for (const p of pacers) await join(p, 'elsewhere');
  for (const p of [alice, bob, carol]) await join(p, 'moving');
  const sent: string[] = [];
  const say = (socket: Participant, text: string) => (sent.push(text), chat(socket, 'moving', text));
  await say(alice, 'before 1');
  await say(bob, 'before 2');

  const target = cluster.masters().find((m) => m !== cluster.masterOf(slot)) as ClusterNode;
  let batches = 0;
  const traffic: Promise<unknown>[] = [];
  const joined: Promise<Update>[] = [];
  await cluster.moveSlot(slot, target, async () => {
    batches++;
    // While the slot's keys are on both masters: a newcomer joins, carol leaves, alice or bob chats.
    // None of it is awaited here: Redis answers TRYAGAIN until the move is done.
    const newcomer = newcomers[batches - 1];
    if (newcomer) joined.push(join(newcomer, 'moving'));
    if (batches === 2) carol.emit('roomLeave', { room: 'moving' });
    if (batches <= 4) traffic.push(say(batches % 2 ? alice : bob, `during ${batches}`));
    await Promise.all(pacers.map((p, i) => chat(p, 'elsewhere', `pace ${batches} ${i}`)));
  });
  const snapshots = await Promise.all(joined);
  await Promise.all(traffic);
  assert.equal(cluster.masterOf(slot), target);
  t.diagnostic(`slot ${slot} moved in ${batches} batches`);
  await say(alice, 'after 1');
  await say(bob, 'after 2');

  const expected = ['alice', 'bob', ...newcomers.slice(0, joined.length).map((n) => n.user)].sort();
  // Each newcomer found the room as it was: at least alice and bob were in it.
  for (const snapshot of snapshots) for (const name of ['alice', 'bob']) assert.ok(names(snapshot.participants).includes(name));
  // Presence ends right on both instances, as each serves it from Redis, and no message is lost.
  for (const [i, url] of [one.url, two.url].entries()) {
    const observer = await signIn(t, url, `observer${i}`);
    const snapshot = await join(observer, 'moving');
    assert.deepEqual(
      names(snapshot.participants)
        .filter((n) => !n.startsWith('observer'))
        .sort(),
      expected,
    );
    assert.ok(sent.length <= 10, 'the history a joiner gets holds them all');
    assert.deepEqual((snapshot.messages as { text: string }[]).map((m) => m.text).sort(), [...sent].sort());
  }
  const rooms = await api<Record<string, Record<string, { participants: number }>>>(two.url, '/rooms');
  assert.equal(rooms[SITE_A.name]?.moving?.participants, expected.length + 2);

  // After the move each instance subscribes to the adapter's channels anew
  // (cluster.ts, checkTopology), with a new subscriber that takes over only
  // once it has subscribed: what is published meanwhile still arrives.
  await t.test('as alice and bob heard it', async () => {
    for (const socket of [alice, bob]) {
      await eventually(
        `${socket.user} heard who is in the room`,
        () =>
          presence(socket, 'moving')
            .filter((n) => !n.startsWith('observer'))
            .join() === expected.join(),
        3000,
      );
      // Delivered over the adapter, so awaited like presence; a failure says what did come.
      const heard = () => socket.updates.filter((u) => u.room === 'moving' && textOf(u) !== undefined).map(textOf);
      await eventually('every message heard', () => sent.every((text) => heard().includes(text)), 10_000).catch(() =>
        assert.fail(`${socket.user} heard ${JSON.stringify(heard())} of ${JSON.stringify(sent)}`),
      );
    }
  });
});

test('an instance closed while it subscribes anew after a failover leaves no subscriber connected', async (t) => {
  const redis = await testRedis(t);
  if (!redis?.cluster) return;
  const cluster = redis.cluster;
  const name = `${redis.prefix}subscriber`;
  const subscribers = () =>
    cluster
      .masters()
      .flatMap((node) => cluster.cli(node, 'CLIENT', 'LIST').split('\n'))
      .filter((line) => line.includes(` name=${name} `)).length;
  const connection = connectRedis({ clusterNodes: cluster.seeds.split(',') }, redis.prefix, pino({ level: 'silent' }));
  t.after(() => connection.close());
  await connection.connect();
  assert.ok(subscribers() > 0, 'the subscriber is connected, named');
  // What an epoch change starts (cluster.ts, checkTopology), with the instance closing meanwhile.
  const renewed = connection.resubscribe();
  await connection.close();
  await renewed;
  await eventually('no subscriber left connected', () => subscribers() === 0, 5000);
});
