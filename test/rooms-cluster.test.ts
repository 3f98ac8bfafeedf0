// Rooms across instances on Redis: a joiner on one instance sees the
// participants and cameras of another, is subscribed to them and signals
// them; chat and its history cross instances; bounds hold cluster-wide; and a
// killed instance's participants leave their rooms within the cluster
// timeout; and after Redis lost everything each instance writes its seats
// back. Needs Redis on 127.0.0.1:6379.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import keySlot from 'cluster-key-slot';
import pino from 'pino';
import { RoomError } from '../src/rooms/replies';
import { createRedisRoomStore } from '../src/rooms/redis/store';
import { get } from './helpers/api';
import { next, nextMessage, STREAM } from './helpers/client';
import { spawnServer } from './helpers/process';
import { onRedisCluster, privateRedis, testRedis, type TestRedis } from './helpers/redis';
import { joinRoom, nextUpdate, roomAccountsFile, roomError, seen, signIn, SITE_B, type Participant } from './helpers/rooms';
import { API_KEY, startServer } from './helpers/server';
import { eventually } from './helpers/wait';

const TIMEOUT_MS = 4000;
const webrtc = { type: 'webrtc', ...STREAM };
const timely = { timeout: 60_000 };

/** One instance of the cluster in this process, with the two sites; closed before the keys are deleted. */
async function instance(redis: TestRedis, file: string, env: Record<string, string> = {}) {
  const started = await startServer(undefined, {
    ...redis.env,
    CLUSTER_TIMEOUT_MS: String(TIMEOUT_MS),
    ACCOUNTS_FILE: file,
    STATIC_TOKEN: undefined,
    ...env,
  });
  redis.onCleanup(() => started.close());
  assert.equal((await started.server.accounts.reload()).outcome, 'reloaded');
  await eventually('the instance is ready', async () => (await get(started.url, '/ready')).status === 200);
  return started;
}

async function cluster(t: TestContext, env: Record<string, string> = {}) {
  const redis = await testRedis(t);
  if (!redis) return undefined;
  const file = roomAccountsFile();
  const a = await instance(redis, file, env);
  const b = await instance(redis, file, env);
  return { redis, file, a, b };
}

/** A Redis room store of instance `instanceId` on the test's Redis, as an instance makes it. */
const roomStoreOn = (redis: TestRedis) => (instanceId: string) =>
  createRedisRoomStore({
    client: redis.commands,
    buckets: redis.buckets,
    prefix: redis.prefix,
    instanceId,
    log: pino({ level: 'silent' }),
  });

async function publishIn(socket: Participant, room: string, stream: string) {
  const peers = nextMessage(socket, 'peers');
  socket.emit('roomPublish', { room, stream, parameters: webrtc });
  await peers;
}

const isPeer = (from: string) => (m: Record<string, unknown>) => m.type === 'peer' && m.from === from;

/** Alice on one instance and Bob on another, in room `call`, each publishing a camera and each seeing the other. */
async function bothPublishing(t: TestContext, aliceUrl: string, bobUrl: string) {
  const alice = await signIn(t, aliceUrl, 'alice');
  const bob = await signIn(t, bobUrl, 'bob');
  await joinRoom(alice, 'call');
  await publishIn(alice, 'call', 'alice-cam');
  const aliceHearsBob = next(alice, 'message', isPeer('bob'));
  await joinRoom(bob, 'call');
  await aliceHearsBob;
  await publishIn(bob, 'call', 'bob-cam');
  await seen(bob, 'message', isPeer('alice'));
  return { alice, bob };
}

test('a room across two instances: presence, cameras both ways, messagePeer, chat and history', timely, async (t) => {
  const c = await cluster(t, { ROOM_CHAT_PER_SECOND: '100' });
  if (!c) return;
  const alice = await signIn(t, c.a.url, 'alice');
  const bob = await signIn(t, c.b.url, 'bob');
  await joinRoom(alice, 'call');
  await publishIn(alice, 'call', 'alice-cam');
  for (let i = 1; i <= 11; i++) {
    const echoed = nextUpdate(alice, (u) => (u.messageNew as { text?: string } | undefined)?.text === `early ${i}`);
    alice.emit('roomMessage', { room: 'call', message: { text: `early ${i}` } });
    await echoed;
  }

  const aliceHearsBob = next(alice, 'message', isPeer('bob'));
  const joined = nextUpdate(alice, 'participantJoin');
  const snapshot = await joinRoom(bob, 'call');
  assert.deepEqual(
    Object.values(snapshot.participants as object)
      .map((p: { name: string }) => p.name)
      .sort(),
    ['alice', 'bob'],
  );
  assert.deepEqual(Object.keys(snapshot.streams as object), ['alice-cam']);
  assert.deepEqual(
    (snapshot.messages as { text: string }[]).map((m) => m.text),
    Array.from({ length: 10 }, (_, i) => `early ${i + 2}`),
  );
  assert.equal(((await joined).participantJoin as { name: string }).name, 'bob');
  assert.deepEqual(await aliceHearsBob, { type: 'peer', from: 'bob', target: 'alice', peerID: 'bob' });

  // bob's camera, published on B: alice on A is subscribed to it.
  const bobHearsAlice = next(bob, 'message', isPeer('alice'));
  const announced = nextUpdate(alice, 'streamNew');
  await publishIn(bob, 'call', 'bob-cam');
  assert.equal(((await announced).streamNew as { user: string }).user, 'bob');
  await bobHearsAlice;

  for (const [sender, receiver] of [
    [alice, bob],
    [bob, alice],
  ] as const) {
    const got = next(receiver, 'message', (m) => m.type === 'offer' && m.from === sender.user);
    sender.emit('messagePeer', { type: 'offer', target: receiver.user, content: { type: 'offer', sdp: 'v=0' } });
    await got;
  }

  const chat = nextUpdate(alice, 'messageNew');
  bob.emit('roomMessage', { room: 'call', message: { text: 'from B', user: 'alice' } });
  assert.deepEqual(((await chat).messageNew as { text: string; user: string }).user, 'bob');

  // bob unpublishes on B: alice on A hears the stream go and leaves its channel.
  const removed = nextUpdate(alice, 'streamRemove');
  const closed = next(
    alice,
    'message',
    (m) => m.from === 'bob' && (m.payload as { message?: string } | undefined)?.message === 'bob left @bob-cam',
  );
  bob.emit('roomUnpublish', { room: 'call', stream: 'bob-cam' });
  assert.equal((await removed).streamRemove, 'bob-cam');
  await closed;
  await eventually('bob-cam has no peers left', async () => {
    const connections = (await get(c.a.url, `/connections?apikey=${API_KEY}`)).json<[string, object][]>();
    return !connections.some(([name]) => name === 'bob-cam');
  });

  // bob leaves on B: alice hears it, and the room counts one.
  const left = nextUpdate(alice, 'participantLeft');
  bob.emit('roomLeave', { room: 'call' });
  assert.equal(((await left).participantLeft as { name: string }).name, 'bob');
  assert.deepEqual((await get(c.b.url, `/rooms?apikey=${API_KEY}`)).json(), { 'Site A': { call: { participants: 1, streams: 1 } } });
});

test('bounds and accounts hold across instances', timely, async (t) => {
  const c = await cluster(t, { ROOM_MAX_PER_ACCOUNT: '1', ROOM_MAX_PARTICIPANTS: '2' });
  if (!c) return;
  const alice = await signIn(t, c.a.url, 'alice');
  const bob = await signIn(t, c.b.url, 'bob');
  const carol = await signIn(t, c.b.url, 'carol');
  const aliceOnB = await signIn(t, c.b.url, 'alice');
  await joinRoom(alice, 'one');
  assert.equal((await roomError(bob, 'roomJoin', { room: 'two' })).error, RoomError.rooms(1));
  assert.equal((await roomError(aliceOnB, 'roomJoin', { room: 'one' })).error, RoomError.user('alice'));
  await joinRoom(bob, 'one');
  assert.equal((await roomError(carol, 'roomJoin', { room: 'one' })).error, RoomError.participants(2));
  // Site B's room of the same name is its own.
  const dave = await signIn(t, c.b.url, 'dave', SITE_B);
  const snapshot = await joinRoom(dave, 'one');
  assert.deepEqual(
    Object.values(snapshot.participants as object).map((p: { name: string }) => p.name),
    ['dave'],
  );
  const chat = nextUpdate(bob, 'messageNew');
  dave.emit('roomMessage', { room: 'one', message: { text: 'B only' } });
  alice.emit('roomMessage', { room: 'one', message: { text: 'A only' } });
  assert.equal(((await chat).messageNew as { text: string }).text, 'A only');
  await seen(dave, 'roomUpdate', (u) => (u.messageNew as { text?: string } | undefined)?.text === 'B only');
  assert.ok(!JSON.stringify(bob.updates).includes('B only') && !JSON.stringify(dave.updates).includes('A only'));
});

test('Redis room store: 100 messages kept, the joiner gets what it asks, an empty room forgotten', timely, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const rooms = roomStoreOn(redis)('i1');
  const join = {
    account: 'A',
    room: 'r',
    socketId: 's1',
    participant: { name: 'alice', joinedAt: 1 },
    maxRooms: 0,
    maxParticipants: 0,
    history: 10,
  };
  assert.ok((await rooms.join(join)).ok);
  for (let i = 1; i <= 105; i++) assert.ok(await rooms.addMessage('A', 'r', 's1', { text: `${i}`, user: 'alice', timestamp: i }, 100));
  assert.equal(await rooms.addMessage('A', 'r', 'stranger', { user: 'x', timestamp: 0 }, 100), false);
  const all = await rooms.join({ ...join, socketId: 's2', participant: { name: 'bob', joinedAt: 2 }, history: 1000 });
  assert.ok(all.ok);
  assert.equal(all.view.messages.length, 100);
  assert.equal(all.view.messages[0]?.text, '6');
  await rooms.leave('A', 'r', 's1');
  await rooms.leave('A', 'r', 's2');
  assert.deepEqual(await rooms.list(), []);
  assert.deepEqual(await redis.keys(), []);
});

test('Redis room store restore: seats and streams back once, taken ones given up, stale ones removed', timely, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const store = roomStoreOn(redis);
  const [one, two, oneElsewhere] = [store('i1'), store('i2'), store('i1')];
  const join = (socketId: string, name: string) => ({
    account: 'A',
    room: 'r',
    socketId,
    participant: { name, joinedAt: 1 },
    maxRooms: 0,
    maxParticipants: 0,
    history: 0,
  });
  const stream = (socketId: string, user: string, streamId: string) => ({
    type: 'webrtc' as const,
    streamId,
    socketId,
    user,
    channel: streamId,
    publishedAt: 1,
  });
  assert.ok((await one.join(join('s1', 'alice'))).ok);
  assert.ok((await one.join(join('s2', 'bob'))).ok);
  assert.equal(await one.addStream('A', 'r', stream('s1', 'alice', 'alice-cam'), 4), 'ok');
  assert.equal(await one.addStream('A', 'r', stream('s2', 'bob', 'bob-cam'), 4), 'ok');
  const whole = [{ account: 'A', room: 'r', participants: 2, streams: 2 }];
  // Nothing lost: a restore changes nothing and counts nobody twice.
  one.resync();
  assert.deepEqual(await one.restoreIfDue(), { departures: [], streamsGone: [], seatsLost: [], streamsLost: [], rejoined: [] });
  assert.equal(await one.restoreIfDue(), undefined);
  assert.deepEqual(await one.list(), whole);

  for (const key of await redis.keys()) await redis.commands.send(['DEL', key], key);
  assert.deepEqual(await one.list(), []);
  // Meanwhile alice sat down from another socket, and carol published a stream named bob-cam.
  assert.ok((await two.join(join('s3', 'alice'))).ok);
  assert.ok((await two.join(join('s4', 'carol'))).ok);
  assert.equal(await two.addStream('A', 'r', stream('s4', 'carol', 'bob-cam'), 4), 'ok');
  // And Redis holds a seat of i1 that no socket of this i1 holds.
  assert.ok((await oneElsewhere.join(join('s5', 'dave'))).ok);

  one.resync();
  const restored = await one.restoreIfDue();
  assert.deepEqual(restored?.seatsLost, [{ account: 'A', room: 'r', socketId: 's1' }]);
  assert.deepEqual(restored?.streamsLost, [{ account: 'A', room: 'r', socketId: 's2', streamId: 'bob-cam' }]);
  assert.deepEqual(
    restored?.departures.map((d) => d.participant.name),
    ['dave'],
  );
  assert.deepEqual(restored?.streamsGone, []);
  // Nobody heard bob leave: Redis lost his seat, no sweep took it.
  assert.deepEqual(restored?.rejoined, []);
  assert.deepEqual(await one.list(), [{ account: 'A', room: 'r', participants: 3, streams: 1 }]);
  // What was given up is forgotten: the next restore puts back bob's seat alone.
  one.resync();
  assert.deepEqual(await one.restoreIfDue(), { departures: [], streamsGone: [], seatsLost: [], streamsLost: [], rejoined: [] });
  for (const [s, socketId] of [
    [one, 's1'],
    [one, 's2'],
    [two, 's3'],
    [two, 's4'],
  ] as const)
    await s.leave('A', 'r', socketId);
  assert.deepEqual(await one.list(), []);
  assert.deepEqual(await redis.keys(), []);
});

test('Redis room store: seats a sweep took from an instance taken for dead come back as a rejoin, once', timely, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const store = roomStoreOn(redis);
  const [one, two] = [store('i1'), store('i2')];
  const alice = { name: 'alice', joinedAt: 1 };
  const base = { account: 'A', room: 'r', maxRooms: 0, maxParticipants: 0, history: 0 };
  assert.ok((await one.join({ ...base, socketId: 's1', participant: alice })).ok);
  assert.ok((await two.join({ ...base, socketId: 's2', participant: { name: 'bob', joinedAt: 2 } })).ok);
  const cam = { type: 'webrtc' as const, streamId: 'alice-cam', socketId: 's1', user: 'alice', channel: 'alice-cam', publishedAt: 1 };
  assert.equal(await one.addStream('A', 'r', cam, 4), 'ok');

  // No live instance is registered here, so i2 takes i1 for dead.
  const taken = { account: 'A', room: 'r', socketId: 's1', participant: alice, streams: [cam] };
  assert.deepEqual(await two.sweep(), [taken]);
  assert.deepEqual(await one.list(), [{ account: 'A', room: 'r', participants: 1, streams: 0 }]);

  one.resync();
  const restored = await one.restoreIfDue();
  assert.deepEqual(restored, { departures: [], streamsGone: [], seatsLost: [], streamsLost: [], rejoined: [taken] });
  assert.deepEqual(await one.list(), [{ account: 'A', room: 'r', participants: 2, streams: 1 }]);
  // Said once: a later restore finds nothing new.
  one.resync();
  assert.deepEqual(await one.restoreIfDue(), { departures: [], streamsGone: [], seatsLost: [], streamsLost: [], rejoined: [] });
  await one.leave('A', 'r', 's1');
  await two.leave('A', 'r', 's2');
  assert.deepEqual(await redis.keys(), []);
});

test('an instance killed with SIGKILL: its participants leave their rooms within the cluster timeout', timely, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const file = roomAccountsFile();
  const survivor = await instance(redis, file);
  const doomed = await spawnServer(
    { after: redis.onCleanup },
    { ...redis.env, CLUSTER_TIMEOUT_MS: String(TIMEOUT_MS), ACCOUNTS_FILE: file, STATIC_TOKEN: undefined },
  );
  await eventually('the doomed instance is ready', async () => (await get(doomed.url, '/ready')).status === 200);
  const { alice } = await bothPublishing(t, survivor.url, doomed.url);

  const left = nextUpdate(alice, 'participantLeft', 3 * TIMEOUT_MS);
  const removed = nextUpdate(alice, 'streamRemove', 3 * TIMEOUT_MS);
  const closes = ['alice-cam', 'bob-cam'].map((channel) =>
    next(
      alice,
      'message',
      (m) => m.from === 'bob' && (m.payload as { message?: string } | undefined)?.message === `bob left @${channel}`,
      3 * TIMEOUT_MS,
    ),
  );
  const killed = Date.now();
  doomed.child.kill('SIGKILL');
  assert.equal(((await left).participantLeft as { name: string }).name, 'bob');
  const elapsed = Date.now() - killed;
  t.diagnostic(`participantLeft ${elapsed} ms after the kill`);
  assert.ok(elapsed < TIMEOUT_MS + 1000, `participantLeft took ${elapsed} ms`);
  assert.equal((await removed).streamRemove, 'bob-cam');
  await Promise.all(closes);
  assert.deepEqual((await get(survivor.url, `/rooms?apikey=${API_KEY}`)).json(), { 'Site A': { call: { participants: 1, streams: 1 } } });
  // The user may come back, on the survivor.
  const again = await signIn(t, survivor.url, 'bob');
  const snapshot = await joinRoom(again, 'call');
  assert.deepEqual(
    Object.values(snapshot.participants as object)
      .map((p: { name: string }) => p.name)
      .sort(),
    ['alice', 'bob'],
  );
});

test(
  'an instance taken for dead (stopped past the cluster timeout) comes back: its participant and camera rejoin the room',
  timely,
  async (t) => {
    const redis = await testRedis(t);
    if (!redis) return;
    const file = roomAccountsFile();
    const survivor = await instance(redis, file);
    const frozen = await spawnServer(
      { after: redis.onCleanup },
      { ...redis.env, CLUSTER_TIMEOUT_MS: String(TIMEOUT_MS), ACCOUNTS_FILE: file, STATIC_TOKEN: undefined },
    );
    await eventually('the frozen instance is ready', async () => (await get(frozen.url, '/ready')).status === 200);
    const { alice, bob } = await bothPublishing(t, survivor.url, frozen.url);

    const left = nextUpdate(alice, 'participantLeft', 3 * TIMEOUT_MS);
    const removed = nextUpdate(alice, 'streamRemove', 3 * TIMEOUT_MS);
    // Stopped as by a long pause: its sockets stay connected, its heartbeat lapses.
    frozen.child.kill('SIGSTOP');
    try {
      assert.equal(((await left).participantLeft as { name: string }).name, 'bob');
      assert.equal((await removed).streamRemove, 'bob-cam');
    } finally {
      frozen.child.kill('SIGCONT');
    }
    const rejoined = nextUpdate(alice, (u) => (u.participantJoin as { name?: string } | undefined)?.name === 'bob', 3 * TIMEOUT_MS);
    const streamBack = nextUpdate(alice, (u) => (u.streamNew as { streamId?: string } | undefined)?.streamId === 'bob-cam', 3 * TIMEOUT_MS);
    // Alice subscribes to bob's camera again: bob hears of her.
    const bobHearsAlice = next(bob, 'message', isPeer('alice'), 3 * TIMEOUT_MS);
    await Promise.all([rejoined, streamBack, bobHearsAlice]);
    const whole = { 'Site A': { call: { participants: 2, streams: 2 } } };
    await eventually(
      'the room whole again',
      async () => JSON.stringify((await get(survivor.url, `/rooms?apikey=${API_KEY}`)).json()) === JSON.stringify(whole),
    );
  },
);

test('Redis away: room events are answered "Rooms are unavailable", and work again once it is back', timely, async (t) => {
  const server = await privateRedis(t);
  if (!server) return;
  const redis = await testRedis(t, server.url);
  if (!redis) return;
  // A server process of its own: what it does with Redis away is what is tested, not its exit.
  const one = await spawnServer(
    { after: redis.onCleanup },
    { ...redis.env, CLUSTER_TIMEOUT_MS: String(TIMEOUT_MS), ACCOUNTS_FILE: roomAccountsFile(), STATIC_TOKEN: undefined },
  );
  await eventually('the instance is ready', async () => (await get(one.url, '/ready')).status === 200);
  const alice = await signIn(t, one.url, 'alice');
  await joinRoom(alice, 'call');
  await server.stop();
  assert.deepEqual(await roomError(alice, 'roomMessage', { room: 'call', message: { text: 'lost' } }), {
    room: 'call',
    error: RoomError.unavailable,
  });
  assert.deepEqual(await roomError(alice, 'roomJoin', { room: 'other' }), { room: 'other', error: RoomError.unavailable });
  await server.start();
  await eventually('the instance is ready again', async () => (await get(one.url, '/ready')).status === 200);
  // Redis came back empty: the room is joined anew.
  alice.emit('roomLeave', { room: 'call' });
  await eventually('a room can be joined', async () => {
    const reply = nextUpdate(alice, (u) => u.room === 'again');
    alice.emit('roomJoin', { room: 'again' });
    return !('error' in (await reply));
  });
});

/**
 * A Redis that lost everything: one Redis restarted without persistence, or
 * every master of the Redis Cluster flushed, the one with the live instances
 * last, so the instances find out once all the rest is gone.
 */
async function redisThatLosesEverything(t: TestContext) {
  if (onRedisCluster()) {
    const redis = await testRedis(t);
    const cluster = redis?.cluster;
    if (!redis || !cluster) return undefined;
    const lose = async () => {
      const liveness = cluster.masterOf(keySlot('instances'));
      for (const master of cluster.masters()) if (master !== liveness) cluster.cli(master, 'FLUSHALL');
      cluster.cli(liveness, 'FLUSHALL');
    };
    return { redis, lose };
  }
  const server = await privateRedis(t);
  if (!server) return undefined;
  const redis = await testRedis(t, server.url);
  if (!redis) return undefined;
  const lose = async () => {
    await server.stop();
    await server.start();
  };
  return { redis, lose };
}

const presence = (u: Record<string, unknown>) => 'participantJoin' in u || 'participantLeft' in u;
const names = (snapshot: Record<string, unknown>) =>
  Object.values(snapshot.participants as object)
    .map((p: { name: string }) => p.name)
    .sort();

test('Redis lost everything: each instance writes its seats and streams back, the room bound is exact again', timely, async (t) => {
  const lost = await redisThatLosesEverything(t);
  if (!lost) return;
  const { redis, lose } = lost;
  const file = roomAccountsFile();
  const env = { ROOM_MAX_PARTICIPANTS: '3' };
  const a = await instance(redis, file, env);
  const b = await instance(redis, file, env);
  const { alice, bob } = await bothPublishing(t, a.url, b.url);
  const roomsView = async () => (await get(b.url, `/rooms?apikey=${API_KEY}`)).json();
  const whole = { 'Site A': { call: { participants: 2, streams: 2 } } };
  assert.deepEqual(await roomsView(), whole);
  const before = { alice: alice.updates.length, bob: bob.updates.length };

  await lose();
  await eventually('the REST view shows the room again', async () => JSON.stringify(await roomsView()) === JSON.stringify(whole), 20_000);
  for (const s of [a, b]) await eventually('the instance is ready', async () => (await get(s.url, '/ready')).status === 200, 20_000);

  // A new joiner sees everyone and every stream, and is subscribed to both cameras.
  const carol = await signIn(t, b.url, 'carol');
  const aliceHearsCarol = next(alice, 'message', isPeer('carol'));
  const bobHearsCarol = next(bob, 'message', isPeer('carol'));
  const snapshot = await joinRoom(carol, 'call');
  assert.deepEqual(names(snapshot), ['alice', 'bob', 'carol']);
  assert.deepEqual(Object.keys(snapshot.streams as object).sort(), ['alice-cam', 'bob-cam']);
  // The chat history went with Redis.
  assert.deepEqual(snapshot.messages, []);
  await Promise.all([aliceHearsCarol, bobHearsCarol]);
  // The room holds three again, as its bound says.
  const dave = await signIn(t, a.url, 'dave');
  assert.equal((await roomError(dave, 'roomJoin', { room: 'call' })).error, RoomError.participants(3));
  // One seat per user holds again.
  const aliceAgain = await signIn(t, b.url, 'alice');
  assert.equal((await roomError(aliceAgain, 'roomJoin', { room: 'call' })).error, RoomError.user('alice'));
  assert.deepEqual(await roomsView(), { 'Site A': { call: { participants: 3, streams: 2 } } });

  // The restore sent no presence: the one change alice and bob saw is carol's arrival.
  const presenceSince = (p: Participant, from: number) => p.updates.slice(from).filter(presence);
  await seen(bob, 'roomUpdate', (u) => (u.participantJoin as { name?: string } | undefined)?.name === 'carol');
  for (const [p, from] of [
    [alice, before.alice],
    [bob, before.bob],
  ] as const)
    assert.deepEqual(
      presenceSince(p, from).map((u) => u.participantJoin ?? u.participantLeft),
      [{ name: 'carol', joinedAt: (snapshot.participants as Record<string, { joinedAt: number }>)[carol.id ?? '']?.joinedAt }],
    );

  // Leaving still works on the restored seats; an empty room is gone.
  for (const p of [alice, bob, carol]) {
    const left = p === carol ? undefined : nextUpdate(carol, 'participantLeft');
    p.emit('roomLeave', { room: 'call' });
    await left;
  }
  await eventually('no room left', async () => JSON.stringify(await roomsView()) === '{}');
  // Closed while Redis is up: a private Redis is stopped before the instances are closed otherwise.
  await Promise.all([a.close(), b.close()]);
});
