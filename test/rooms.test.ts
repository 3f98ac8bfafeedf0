// Rooms on one instance: signed-in users join a room, see who is there,
// publish their cameras and are subscribed to everyone else's, chat with a
// history for those who come late; every way out is heard, every bound holds,
// and two accounts' rooms of one name never meet.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { RoomError } from '../src/rooms/replies';
import { createMemoryRoomStore } from '../src/rooms/memory';
import type { RoomStore } from '../src/rooms/store';
import { get } from './helpers/api';
import { connect, next, nextMessage, STREAM, type Client } from './helpers/client';
import { joinRoom, nextUpdate, roomAccountsFile, roomError, seen, signIn, SITE_A, SITE_B, type Participant } from './helpers/rooms';
import { API_KEY, startServer } from './helpers/server';
import { startReceiver } from './helpers/webhook-receiver';

const timely = { timeout: 30_000 };
const webrtc = { type: 'webrtc', ...STREAM };
const isClose = (from: string, channel: string) => (m: Record<string, unknown>) =>
  m.from === from && (m.payload as { message?: string } | undefined)?.message === `${from} left @${channel}`;

async function roomServer(t: TestContext, env: Record<string, string> = {}) {
  const started = await startServer(t, { ACCOUNTS_FILE: roomAccountsFile(), STATIC_TOKEN: undefined, ...env });
  assert.equal((await started.server.accounts.reload()).outcome, 'reloaded');
  return started;
}

/** Several users of Site A, signed in. */
function people<const N extends readonly string[]>(t: TestContext, url: string, users: N) {
  return Promise.all(users.map((u) => signIn(t, url, u))) as Promise<{ [K in keyof N]: Participant }>;
}

/** Publishes a camera in the room: the publisher gets its `peers`, the room `streamNew`. */
async function publishIn(socket: Participant, room: string, stream: string) {
  const peers = nextMessage(socket, 'peers');
  const announced = nextUpdate(socket, (u) => (u.streamNew as { streamId?: string } | undefined)?.streamId === stream);
  socket.emit('roomPublish', { room, stream, parameters: webrtc });
  return { peers: await peers, streamNew: (await announced).streamNew as Record<string, unknown> };
}

test('roomJoin: the joiner gets the room, everyone hears participantJoin', timely, async (t) => {
  const { url } = await roomServer(t);
  const alice = await signIn(t, url, 'alice');
  const first = await joinRoom(alice, 'lobby');
  assert.equal(first.type, 'roomJoin');
  assert.deepEqual(Object.keys(first).sort(), ['messages', 'meta', 'participants', 'room', 'streams', 'type']);
  assert.deepEqual(first.streams, {});
  assert.deepEqual(first.messages, []);
  assert.deepEqual(first.meta, {});
  assert.deepEqual(
    Object.values(first.participants as object).map((p: { name: string }) => p.name),
    ['alice'],
  );
  assert.deepEqual(Object.keys(first.participants as object), [alice.id]);

  const bob = await signIn(t, url, 'bob');
  const heard = nextUpdate(alice, 'participantJoin');
  const second = await joinRoom(bob, 'lobby');
  assert.deepEqual(
    Object.values(second.participants as object)
      .map((p: { name: string }) => p.name)
      .sort(),
    ['alice', 'bob'],
  );
  const join = await heard;
  assert.equal(join.room, 'lobby');
  assert.equal(typeof join.timestamp, 'number');
  assert.equal((join.participantJoin as { name: string }).name, 'bob');
  assert.equal(typeof (join.participantJoin as { joinedAt: number }).joinedAt, 'number');
});

test('a socket without a signed-in user is told rooms need one; a bad event gets an error, the server goes on', timely, async (t) => {
  const { url } = await roomServer(t);
  const anonymous = await connect(t, url, SITE_A.token);
  const reply = next<Record<string, unknown>>(anonymous, 'roomUpdate');
  anonymous.emit('roomJoin', { room: 'lobby' });
  assert.deepEqual(await reply, { room: 'lobby', error: RoomError.signIn });

  const alice = await signIn(t, url, 'alice');
  for (const bad of [undefined, 'lobby', { room: 42 }, { room: '' }, null])
    assert.match(String((await roomError(alice, 'roomJoin', bad)).error), /^Invalid roomJoin: /);
  assert.match(String((await roomError(alice, 'roomMessage', { room: 'lobby', message: 'text' })).error), /^Invalid roomMessage: /);
  await joinRoom(alice, 'lobby');
  assert.equal((await roomError(alice, 'roomJoin', { room: 'lobby' })).error, RoomError.already);
  assert.equal((await roomError(alice, 'roomLeave', { room: 'elsewhere' })).error, RoomError.notParticipant);
});

test("three in a room: each is subscribed to the others' cameras and signals them over messagePeer", timely, async (t) => {
  const { url } = await roomServer(t);
  const [alice, bob, carol] = await people(t, url, ['alice', 'bob', 'carol']);
  await joinRoom(alice, 'call');
  const { peers, streamNew } = await publishIn(alice, 'call', 'alice-cam');
  assert.deepEqual(
    (peers.peers as { peerID: string }[]).map((p) => p.peerID),
    ['alice'],
  );
  assert.equal(streamNew.user, 'alice');
  assert.equal(streamNew.channel, 'alice-cam');
  assert.equal(streamNew.type, 'webrtc');
  assert.equal(streamNew.socketId, alice.id);

  // A joiner is subscribed to the cameras already there: their publishers get `peer`.
  const aliceHearsBob = next(alice, 'message', (m) => m.type === 'peer' && m.from === 'bob');
  const snapshot = await joinRoom(bob, 'call');
  assert.deepEqual(Object.keys(snapshot.streams as object), ['alice-cam']);
  assert.deepEqual(await aliceHearsBob, { type: 'peer', from: 'bob', target: 'alice', peerID: 'bob' });

  // A camera published later reaches those already in: its publisher gets `peer` from each.
  const bobHearsAlice = next(bob, 'message', (m) => m.type === 'peer' && m.from === 'alice');
  await publishIn(bob, 'call', 'bob-cam');
  await bobHearsAlice;

  const carolJoins = [alice, bob].map((s) => next(s, 'message', (m) => m.type === 'peer' && m.from === 'carol'));
  await joinRoom(carol, 'call');
  await Promise.all(carolJoins);
  const carolCam = [alice, bob].map((s) => next(carol, 'message', (m) => m.type === 'peer' && m.from === s.user));
  await publishIn(carol, 'call', 'carol-cam');
  await Promise.all(carolCam);

  // messagePeer finds its target in whichever channel the two share, both ways; `from` is stamped.
  for (const [sender, receiver] of [
    [alice, bob],
    [bob, alice],
    [carol, alice],
    [alice, carol],
    [bob, carol],
    [carol, bob],
  ] as const) {
    const got = next(receiver, 'message', (m) => m.type === 'offer' && m.from === sender.user);
    sender.emit('messagePeer', { type: 'offer', from: 'mallory', target: receiver.user, content: { type: 'offer', sdp: 'v=0' } });
    assert.deepEqual(await got, { type: 'offer', from: sender.user, target: receiver.user, content: { type: 'offer', sdp: 'v=0' } });
  }

  // Each stream counts once per peer registered in its channel: three channels of three.
  const channels = (await (await get(url, `/channels?apikey=${API_KEY}`)).json<[string, { peers: number; account: string }][]>()).sort();
  assert.deepEqual(
    channels.map(([name, c]) => [name, c.peers, c.account]),
    [
      ['alice-cam', 3, 'Site A'],
      ['bob-cam', 3, 'Site A'],
      ['carol-cam', 3, 'Site A'],
    ],
  );
  const stats = (await get(url, `/stats?apikey=${API_KEY}`)).json<
    [string, { connections: number; bitrate: number; players: number; broadcasters: number }][]
  >();
  assert.deepEqual(
    stats.map(([name, s]) => [name, s.connections, s.broadcasters, s.players, s.bitrate]),
    [['Site A', 3, 3, 6, 3 * 3 * 500]],
  );
});

test('roomUnpublish: the publisher gets unpublish, the room streamRemove, the players a close', timely, async (t) => {
  const { url } = await roomServer(t);
  const [alice, bob] = await people(t, url, ['alice', 'bob']);
  await joinRoom(alice, 'call');
  await publishIn(alice, 'call', 'alice-cam');
  await joinRoom(bob, 'call');
  await nextMessage(alice, 'peer');

  const unpublished = new Promise<unknown[]>((resolve) => alice.once('unpublish', (...args: unknown[]) => resolve(args)));
  const removed = nextUpdate(bob, 'streamRemove');
  const closed = next(bob, 'message', isClose('alice', 'alice-cam'));
  alice.emit('roomUnpublish', { room: 'call', stream: 'alice-cam' });
  assert.deepEqual(await unpublished, ['alice', 'alice-cam']);
  assert.equal((await removed).streamRemove, 'alice-cam');
  await closed;
  assert.equal((await roomError(bob, 'roomUnpublish', { room: 'call', stream: 'alice-cam' })).error, RoomError.notYourStream('alice-cam'));
  assert.equal((await roomError(alice, 'roomUnpublish', { room: 'other', stream: 'alice-cam' })).error, RoomError.notParticipant);
  // The channel is gone: nobody stays registered in it.
  const connections = (await get(url, `/connections?apikey=${API_KEY}`)).json<[string, object][]>();
  assert.deepEqual(connections, []);
});

for (const way of ['roomLeave', 'disconnect', 'ping timeout'] as const)
  test(`${way}: the room hears participantLeft and streamRemove, the channels a close`, timely, async (t) => {
    const { url } = await roomServer(t, way === 'ping timeout' ? { PING_INTERVAL_MS: '200', PING_TIMEOUT_MS: '200' } : {});
    const [alice, bob] = await people(t, url, ['alice', 'bob']);
    await joinRoom(alice, 'call');
    await publishIn(alice, 'call', 'alice-cam');
    await joinRoom(bob, 'call');
    await publishIn(bob, 'call', 'bob-cam');
    await seen(bob, 'message', (m) => m.type === 'peer' && m.from === 'alice');

    const left = nextUpdate(alice, 'participantLeft', 10_000);
    const removed = nextUpdate(alice, 'streamRemove', 10_000);
    // bob was a player of alice-cam, and alice a player of bob-cam: both channels hear bob go.
    const closes = [next(alice, 'message', isClose('bob', 'alice-cam'), 10_000), next(alice, 'message', isClose('bob', 'bob-cam'), 10_000)];
    if (way === 'roomLeave') bob.emit('roomLeave', { room: 'call' });
    else if (way === 'disconnect') bob.disconnect();
    // A client that stops answering pings: its engine stops without a close frame.
    else {
      // bob's process hangs: it no longer answers the server's pings.
      const engine = bob.io.engine as unknown as { _sendPacket: (type: string, ...rest: unknown[]) => void };
      const send = engine._sendPacket.bind(engine);
      engine._sendPacket = (type, ...rest) => (type === 'pong' ? undefined : send(type, ...rest));
    }
    const leaving = await left;
    assert.equal((leaving.participantLeft as { name: string }).name, 'bob');
    assert.equal(leaving.room, 'call');
    assert.equal((await removed).streamRemove, 'bob-cam');
    await Promise.all(closes);
    const rooms = (await get(url, `/rooms?apikey=${API_KEY}`)).json();
    assert.deepEqual(rooms, { 'Site A': { call: { participants: 1, streams: 1 } } });
  });

test('chat: stamped with the sender and the time, a spoofed user overwritten, refused from outside the room', timely, async (t) => {
  const { url } = await roomServer(t);
  const [alice, bob, eve] = await people(t, url, ['alice', 'bob', 'eve']);
  await joinRoom(alice, 'chat');
  await joinRoom(bob, 'chat');
  const before = Date.now();
  const got = nextUpdate(bob, 'messageNew');
  alice.emit('roomMessage', { room: 'chat', message: { text: 'hello', user: 'bob', timestamp: 1 } });
  const update = await got;
  const message = update.messageNew as { text: string; user: string; timestamp: number };
  assert.equal(message.text, 'hello');
  assert.equal(message.user, 'alice');
  assert.ok(message.timestamp >= before && message.timestamp <= Date.now());
  assert.equal(update.room, 'chat');

  // eve is not in the room: refused, and nobody in the room hears it.
  bob.updates.length = 0;
  assert.equal((await roomError(eve, 'roomMessage', { room: 'chat', message: { text: 'spam' } })).error, RoomError.notParticipant);
  const marker = nextUpdate(bob, 'messageNew');
  alice.emit('roomMessage', { room: 'chat', message: { text: 'after' } });
  assert.equal(((await marker).messageNew as { text: string }).text, 'after');
  assert.deepEqual(
    bob.updates.filter((u) => 'messageNew' in u).map((u) => (u.messageNew as { text: string }).text),
    ['after'],
  );
});

test('late join: the joiner gets the last 10 messages, not the 11th-oldest', timely, async (t) => {
  const { url } = await roomServer(t, { ROOM_CHAT_PER_SECOND: '100' });
  const alice = await signIn(t, url, 'alice');
  await joinRoom(alice, 'history');
  for (let i = 1; i <= 11; i++) {
    const echoed = nextUpdate(alice, (u) => (u.messageNew as { text?: string } | undefined)?.text === `line ${i}`);
    alice.emit('roomMessage', { room: 'history', message: { text: `line ${i}` } });
    await echoed;
  }
  const bob = await signIn(t, url, 'bob');
  const snapshot = await joinRoom(bob, 'history');
  const texts = (snapshot.messages as { text: string; user: string }[]).map((m) => m.text);
  assert.deepEqual(
    texts,
    Array.from({ length: 10 }, (_, i) => `line ${i + 2}`),
  );
  assert.ok(!texts.includes('line 1'));
  assert.ok((snapshot.messages as { user: string }[]).every((m) => m.user === 'alice'));
});

for (const [name, store] of [['memory', createMemoryRoomStore]] as const)
  test(`room store (${name}): 100 messages kept, an empty room forgotten`, async () => {
    const rooms: RoomStore = store();
    const participant = { name: 'alice', joinedAt: 1 };
    const join = { account: 'A', room: 'r', socketId: 's1', participant, maxRooms: 0, maxParticipants: 0, history: 10 };
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
    assert.ok((await rooms.join(join)).ok);
    const fresh = await rooms.join({ ...join, socketId: 's3', participant: { name: 'carol', joinedAt: 3 } });
    assert.ok(fresh.ok && fresh.view.messages.length === 0);
  });

test('two accounts with one room name see nothing of each other', timely, async (t) => {
  const { url } = await roomServer(t);
  const alice = await signIn(t, url, 'alice', SITE_A);
  const bob = await signIn(t, url, 'bob', SITE_B);
  await joinRoom(alice, 'lobby');
  await publishIn(alice, 'lobby', 'cam');
  const snapshot = await joinRoom(bob, 'lobby');
  assert.deepEqual(
    Object.values(snapshot.participants as object).map((p: { name: string }) => p.name),
    ['bob'],
  );
  assert.deepEqual(snapshot.streams, {});
  // Site B may publish a stream of the same name: another account, another channel.
  await publishIn(bob, 'lobby', 'cam');
  const mine = nextUpdate(bob, 'messageNew');
  alice.emit('roomMessage', { room: 'lobby', message: { text: 'A only' } });
  bob.emit('roomMessage', { room: 'lobby', message: { text: 'B only' } });
  assert.equal(((await mine).messageNew as { text: string }).text, 'B only');
  await seen(alice, 'roomUpdate', (u) => (u.messageNew as { text?: string } | undefined)?.text === 'A only');
  for (const [socket, other] of [
    [alice, 'bob'],
    [bob, 'alice'],
  ] as const)
    assert.ok(!JSON.stringify(socket.updates).includes(`"${other}"`), `${socket.user} saw ${other}`);
  assert.ok(!alice.messages.some((m) => m.from === 'bob') && !bob.messages.some((m) => m.from === 'alice'));
  const rooms = (await get(url, `/rooms?apikey=${API_KEY}`)).json();
  assert.deepEqual(rooms, { 'Site A': { lobby: { participants: 1, streams: 1 } }, 'Site B': { lobby: { participants: 1, streams: 1 } } });
  const status = (await get(url, `/status?token=${SITE_B.token}`)).json<{ rooms: unknown }>();
  assert.deepEqual(status.rooms, { lobby: { participants: 1, streams: 1 } });
});

test('bounds: rooms per account, participants per room, one seat per user, message size, chat rate', timely, async (t) => {
  const { url } = await roomServer(t, { ROOM_MAX_PER_ACCOUNT: '1', ROOM_MAX_PARTICIPANTS: '2', ROOM_CHAT_PER_SECOND: '2' });
  const [alice, bob, carol] = await people(t, url, ['alice', 'bob', 'carol']);
  await joinRoom(alice, 'one');
  assert.equal((await roomError(bob, 'roomJoin', { room: 'two' })).error, RoomError.rooms(1));
  // Another account has rooms of its own.
  await joinRoom(await signIn(t, url, 'dave', SITE_B), 'two');
  await joinRoom(bob, 'one');
  assert.equal((await roomError(carol, 'roomJoin', { room: 'one' })).error, RoomError.participants(2));
  const aliceAgain = await signIn(t, url, 'alice');
  bob.emit('roomLeave', { room: 'one' });
  await nextUpdate(alice, 'participantLeft');
  assert.equal((await roomError(aliceAgain, 'roomJoin', { room: 'one' })).error, RoomError.user('alice'));

  const big = { room: 'one', message: { text: 'x'.repeat(4096) } };
  assert.equal((await roomError(alice, 'roomMessage', big)).error, RoomError.messageSize(4096));
  const fits = { room: 'one', message: { text: 'x'.repeat(3900) } };
  const echoed = nextUpdate(alice, 'messageNew');
  alice.emit('roomMessage', fits);
  await echoed;
  // The bucket holds 2 and the oversized one took one: the next is over the rate.
  assert.equal((await roomError(alice, 'roomMessage', { room: 'one', message: { text: 'fast' } })).error, RoomError.chatRate);
});

test('roomPublish: plan limits and rights as publish, one stream name per channel, webrtc only', timely, async (t) => {
  const { url } = await roomServer(t);
  const [alice, bob] = await people(t, url, ['alice', 'bob']);
  assert.equal((await roomError(alice, 'roomPublish', { room: 'call', stream: 'x', parameters: webrtc })).error, RoomError.notParticipant);
  await joinRoom(alice, 'call');
  await joinRoom(bob, 'call');
  const publishError = next(alice, 'publishError');
  const tooFast = await roomError(alice, 'roomPublish', { room: 'call', stream: 'fast', parameters: { ...webrtc, bitrate: 501 } });
  assert.equal(tooFast.error, 'Unfit: bitrate.');
  assert.deepEqual(await publishError, { from: '_server_', to: 'alice', message: 'Unfit: bitrate.' });
  assert.equal(
    (await roomError(alice, 'roomPublish', { room: 'call', stream: 'r', parameters: { type: 'rtmp' } })).error,
    RoomError.streamType('rtmp'),
  );
  assert.equal(
    (await roomError(alice, 'roomPublish', { room: 'call', stream: 'p', parameters: { ...webrtc, bitrate: -1 } })).error,
    RoomError.parameters,
  );
  await publishIn(alice, 'call', 'cam');
  assert.equal(
    (await roomError(alice, 'roomPublish', { room: 'call', stream: 'cam', parameters: webrtc })).error,
    RoomError.streamExists('cam'),
  );
  assert.equal(
    (await roomError(bob, 'roomPublish', { room: 'call', stream: 'cam', parameters: webrtc })).error,
    RoomError.streamExists('cam'),
  );
  for (const stream of ['cam2', 'cam3', 'cam4']) await publishIn(alice, 'call', stream);
  assert.equal(
    (await roomError(alice, 'roomPublish', { room: 'call', stream: 'cam5', parameters: webrtc })).error,
    RoomError.streamsPerParticipant,
  );
});

test('metrics: rooms, participants and chat messages relayed', timely, async (t) => {
  const { url } = await roomServer(t);
  const [alice, bob] = await people(t, url, ['alice', 'bob']);
  await joinRoom(alice, 'm1');
  await joinRoom(bob, 'm1');
  await joinRoom(bob, 'm2');
  const heard = nextUpdate(bob, 'messageNew');
  alice.emit('roomMessage', { room: 'm1', message: { text: 'hi' } });
  await heard;
  const metrics = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
  assert.match(metrics, /^videowhisper_rooms 2$/m);
  assert.match(metrics, /^videowhisper_room_participants 3$/m);
  assert.match(metrics, /^videowhisper_room_messages_total 1$/m);
});

test('a room seat and a plain subscribe of one socket live side by side', timely, async (t) => {
  const { url } = await roomServer(t);
  const [alice, bob] = await people(t, url, ['alice', 'bob']);
  await joinRoom(alice, 'call');
  await publishIn(alice, 'call', 'alice-cam');
  // bob watches another channel the usual way, then joins the room.
  const studio = await signIn(t, url, 'studio');
  const studioPeers = nextMessage(studio, 'peers');
  studio.emit('publish', 'studio', 'show', STREAM);
  await studioPeers;
  const studioHears = nextMessage(studio, 'peer');
  bob.emit('subscribe', 'bob', 'show');
  await studioHears;
  const aliceHears = next(alice, 'message', (m) => m.type === 'peer' && m.from === 'bob');
  await joinRoom(bob, 'call');
  await aliceHears;
  // messagePeer reaches both: the plain channel's peer and the room's.
  for (const receiver of [studio, alice] as Client[]) {
    const got = next(receiver, 'message', (m) => m.type === 'answer' && m.from === 'bob');
    bob.emit('messagePeer', { type: 'answer', target: (receiver as Participant).user });
    await got;
  }
  // Leaving the room keeps the plain subscription.
  const closed = next(alice, 'message', isClose('bob', 'alice-cam'));
  bob.emit('roomLeave', { room: 'call' });
  await closed;
  const got = next(studio, 'message', (m) => m.type === 'candidate' && m.from === 'bob');
  bob.emit('messagePeer', { type: 'candidate', target: 'studio' });
  await got;
});

test('malformed room events are answered with an error; the room and the server go on', timely, async (t) => {
  const { url } = await roomServer(t, { ROOM_CHAT_PER_SECOND: '1000' });
  const [alice, bob] = await people(t, url, ['alice', 'bob']);
  await joinRoom(alice, 'call');
  await joinRoom(bob, 'call');
  const junk: unknown[] = [
    undefined,
    null,
    42,
    'call',
    [],
    { room: ['call'] },
    { room: { toString: 'call' } },
    { room: 'x'.repeat(10_000) },
  ];
  const inRoom: [string, unknown][] = [
    ['roomPublish', { room: 'call', stream: 7, parameters: webrtc }],
    ['roomPublish', { room: 'call', stream: 's', parameters: 'webrtc' }],
    ['roomPublish', { room: 'call', stream: 's', parameters: { type: 'webrtc', width: 'wide' } }],
    ['roomPublish', { room: 'call', stream: 's', parameters: { type: 'webrtc', note: 'x'.repeat(3000) } }],
    ['roomUnpublish', { room: 'call', stream: ['s'] }],
    ['roomMessage', { room: 'call', message: null }],
    ['roomMessage', { room: 'call', message: ['a'] }],
    ['roomMessage', { room: 'call', message: 'text' }],
  ];
  const events = ['roomJoin', 'roomLeave', 'roomPublish', 'roomUnpublish', 'roomMessage'];
  for (const [event, payload] of [...events.flatMap((e) => junk.map((p) => [e, p] as const)), ...inRoom]) {
    const reply = await roomError(alice, event, payload);
    assert.equal(typeof reply.error, 'string', `${event} ${JSON.stringify(payload)?.slice(0, 60)}`);
  }
  // Any string is just a name.
  await joinRoom(alice, '__proto__');
  // Still in the room, still heard.
  const heard = nextUpdate(bob, 'messageNew');
  alice.emit('roomMessage', { room: 'call', message: { text: 'still here' } });
  assert.equal(((await heard).messageNew as { user: string }).user, 'alice');
});

test('room changes reach the webhook once each, signed, in the order the room heard them', timely, async (t) => {
  const SECRET = 'room-webhook-secret';
  const receiver = await startReceiver(t, { secret: SECRET });
  const { url } = await roomServer(t, { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_BACKOFF_MS: '20' });
  const [alice, bob] = await people(t, url, ['alice', 'bob'] as const);
  await joinRoom(alice, 'lobby');
  await joinRoom(bob, 'lobby');
  await publishIn(alice, 'lobby', 'alice-cam');
  const chat = nextUpdate(bob, 'messageNew');
  alice.emit('roomMessage', { room: 'lobby', message: { text: 'hello', user: 'mallory' } });
  await chat;
  const left = nextUpdate(bob, 'participantLeft');
  alice.emit('roomLeave', { room: 'lobby' });
  await left;

  const story = ['room.joined', 'room.joined', 'room.stream.started', 'room.message', 'room.stream.ended', 'room.left'];
  await receiver.until('the room story', (r) => r.accepted().filter((e) => e.type.startsWith('room.')).length === story.length);
  const events = receiver.accepted().filter((e) => e.type.startsWith('room.'));
  assert.ok(
    receiver.requests.every((r) => r.signed),
    'every delivery is signed',
  );
  assert.deepEqual(
    events.map((e) => e.type),
    story,
  );
  assert.ok(events.every((e) => e.account === SITE_A.name && (e.data as { room: string }).room === 'lobby'));
  const [joined, , started, message, ended, gone] = events.map((e) => e.data as Record<string, Record<string, unknown> | string>);
  assert.equal((joined?.participant as { name: string }).name, 'alice');
  assert.equal((started?.stream as { streamId: string }).streamId, 'alice-cam');
  assert.deepEqual([(message?.message as { text: string }).text, (message?.message as { user: string }).user], ['hello', 'alice']);
  assert.equal(ended?.stream, 'alice-cam');
  assert.equal((gone?.participant as { name: string }).name, 'alice');
});
