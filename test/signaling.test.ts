// The protocol as the HTML5 Videochat client speaks it: publish, subscribe,
// offer, answer, candidates, close.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { get } from './helpers/api';
import { broadcastAndWatch, connect, next, nextMessage, STREAM, type Client } from './helpers/client';
import { rawWebSocket, until } from './helpers/raw-client';
import { startServer, TOKEN } from './helpers/server';
const sdp = (kind: string) => ({ type: kind, sdp: `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=${kind}\r\n` });
const candidate = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };

/** The broadcaster's side: answers `peers` and `peer` with an offer per player, then a candidate. */
function actAsBroadcaster(socket: Client, name: string) {
  const offerTo = (player: string) => {
    socket.emit('messagePeer', { from: name, target: player, type: 'offer', content: sdp('offer'), peerConfig: {} });
    socket.emit('messagePeer', { from: name, target: player, type: 'candidate', candidate });
  };
  socket.on('message', (m: Record<string, unknown>) => {
    if (m.type === 'peers') for (const p of m.peers as { peerID: string; type: string }[]) if (p.peerID !== name) offerTo(p.peerID);
    if (m.type === 'peer') offerTo(m.peerID as string);
  });
}

/** The player's side: answers an offer, then sends a candidate. */
function actAsPlayer(socket: Client, name: string) {
  socket.on('message', (m: Record<string, unknown>) => {
    if (m.type !== 'offer') return;
    socket.emit('messagePeer', { from: name, target: m.from, type: 'answer', content: sdp('answer') });
    socket.emit('messagePeer', { from: name, target: m.from, type: 'candidate', candidate });
  });
}

/** Resolves once the broadcaster has the player's answer and candidate. */
async function handshake(broadcaster: Client, player: Client, playerName: string) {
  const [answer, playerCandidate] = await Promise.all([
    nextMessage(broadcaster, 'answer'),
    next(broadcaster, 'message', (m) => m.type === 'candidate' && m.from === playerName),
  ]);
  assert.equal(answer.from, playerName);
  assert.deepEqual(answer.content, sdp('answer'));
  assert.deepEqual(playerCandidate.candidate, candidate);
  assert.ok(player.messages.some((m) => m.type === 'offer'));
}

test('broadcaster publishes first, then a player subscribes: offer, answer and candidates cross', async (t) => {
  const { url } = await startServer(t);
  const broadcaster = await connect(t, url, TOKEN);
  actAsBroadcaster(broadcaster, 'Studio');
  broadcaster.emit('publish', 'Studio', 'room1', STREAM);
  const peers = await nextMessage(broadcaster, 'peers');
  assert.equal(peers.from, '_channel_');
  assert.equal(peers.target, 'Studio');
  assert.deepEqual(peers.peers, [{ socketId: broadcaster.id, peerID: 'Studio', type: 'broadcaster', account: '_static' }]);
  // Without COTURN_SERVER: the public STUN server, and nothing else.
  assert.deepEqual(peers.peerConfig, { iceServers: [{ urls: 'stun:stun.l.google.com:19302' }] });

  const player = await connect(t, url, TOKEN);
  actAsPlayer(player, 'Viewer');
  const offered = nextMessage(player, 'offer');
  const remoteCandidate = nextMessage(player, 'candidate');
  const noticed = nextMessage(broadcaster, 'peer');
  const exchange = handshake(broadcaster, player, 'Viewer');
  player.emit('subscribe', 'Viewer', 'room1');
  assert.deepEqual(await noticed, { type: 'peer', from: 'Viewer', target: 'Studio', peerID: 'Viewer' });
  const offer = await offered;
  assert.equal(offer.from, 'Studio');
  assert.equal(offer.target, 'Viewer');
  assert.deepEqual(offer.content, sdp('offer'));
  await exchange;
  assert.deepEqual((await remoteCandidate).candidate, candidate);
});

test('players subscribe first, then the broadcaster publishes and offers to each of them', async (t) => {
  const { url } = await startServer(t);
  const players = await Promise.all([connect(t, url, TOKEN), connect(t, url, TOKEN)]);
  players.forEach((p, i) => actAsPlayer(p, `Viewer${i}`));
  players.forEach((p, i) => p.emit('subscribe', `Viewer${i}`, 'room2'));
  const broadcaster = await connect(t, url, TOKEN);
  // A subscribe is registered once the broadcaster's peers list shows it.
  const offers = players.map((p) => nextMessage(p, 'offer'));
  let peers: Record<string, unknown> | undefined;
  for (let attempt = 0; attempt < 50; attempt++) {
    const reply = nextMessage(broadcaster, 'peers');
    broadcaster.emit('publish', 'Studio', 'room2', STREAM);
    peers = await reply;
    if ((peers?.peers as unknown[]).length === 3) break;
  }
  actAsBroadcaster(broadcaster, 'Studio');
  const names = (peers?.peers as { peerID: string; type: string }[]).map((p) => `${p.peerID}:${p.type}`).sort();
  assert.deepEqual(names, ['Studio:broadcaster', 'Viewer0:player', 'Viewer1:player']);
  // Offers go out from the peers list the broadcaster just got.
  for (const p of (peers?.peers as { peerID: string }[]).filter((p) => p.peerID !== 'Studio'))
    broadcaster.emit('messagePeer', { from: 'Studio', target: p.peerID, type: 'offer', content: sdp('offer') });
  for (const offer of await Promise.all(offers)) assert.equal(offer.from, 'Studio');
  const answers = await Promise.all([
    next(broadcaster, 'message', (m) => m.type === 'answer' && m.from === 'Viewer0'),
    next(broadcaster, 'message', (m) => m.type === 'answer' && m.from === 'Viewer1'),
  ]);
  assert.equal(answers.length, 2);
});

test('subscribe without a channel joins the default channel "VideoWhisper"', async (t) => {
  const { url } = await startServer(t);
  const broadcaster = await connect(t, url, TOKEN);
  broadcaster.emit('publish', 'Studio', 'VideoWhisper', STREAM);
  await nextMessage(broadcaster, 'peers');
  const player = await connect(t, url, TOKEN);
  const noticed = nextMessage(broadcaster, 'peer');
  player.emit('subscribe', 'Viewer');
  assert.equal((await noticed).peerID, 'Viewer');
});

test('publishing again from the same socket updates the stream', async (t) => {
  const { url } = await startServer(t);
  const broadcaster = await connect(t, url, TOKEN);
  broadcaster.emit('publish', 'Studio', 'room3', STREAM);
  await nextMessage(broadcaster, 'peers');
  broadcaster.emit('publish', 'Studio', 'room3', { ...STREAM, width: 1280, height: 720, bitrate: 1500 });
  const again = await nextMessage(broadcaster, 'peers');
  assert.equal((again.peers as unknown[]).length, 1, 'still one peer');
  const channels = (await get(url, '/channels?apikey=test-api-key')).json<[string, Record<string, unknown>][]>();
  assert.equal(channels.length, 1);
  assert.equal(channels[0]?.[0], 'room3');
  assert.equal(channels[0]?.[1].width, 1280);
  assert.equal(channels[0]?.[1].bitrate, 1500);
  assert.equal(channels[0]?.[1].peers, 1);
});

test('a disconnect sends the close message to its own channel only', async (t) => {
  const { url } = await startServer(t);
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'closing' });
  const { broadcaster: outsiderPeer, player: outsider } = await broadcastAndWatch(t, url, TOKEN, {
    channel: 'elsewhere',
    broadcaster: 'Other',
    player: 'Outsider',
  });

  const closed = nextMessage(player, 'close');
  broadcaster.disconnect();
  assert.deepEqual(await closed, {
    from: 'Studio',
    target: 'all',
    payload: { action: 'close', message: 'Studio left @closing' },
  });
  // A message sent after the close reaches the outsider after anything the
  // close could have sent it, on the same connection.
  const marker = next(outsider, 'message', (m) => m.type === 'marker');
  outsiderPeer.emit('messagePeer', { target: 'Outsider', type: 'marker' });
  await marker;
  assert.ok(!outsider.messages.some((m) => (m.payload as { action?: string })?.action === 'close'));
});

test('messagePeer carries the sender registered name, not the one it claims', async (t) => {
  const { url } = await startServer(t);
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'spoof' });
  const received = nextMessage(broadcaster, 'answer');
  player.emit('messagePeer', { from: 'Studio', target: 'Studio', type: 'answer', content: sdp('answer') });
  assert.equal((await received).from, 'Viewer');
  const broadcast = next(broadcaster, 'message', (m) => m.type === 'chat');
  player.emit('message', { from: 'Admin', type: 'chat', text: 'hello' });
  assert.deepEqual(await broadcast, { from: 'Viewer', type: 'chat', text: 'hello' });
});

test('a messagePeer naming its sender in from goes on as the text it came in; any other from is still replaced', async (t) => {
  const { url } = await startServer(t);
  const studio = await rawWebSocket(url, TOKEN);
  const viewer = await rawWebSocket(url, TOKEN);
  t.after(() => [studio, viewer].forEach((client) => client.ws.terminate()));
  studio.emit('publish', 'Studio', 'verbatim', STREAM);
  viewer.emit('subscribe', 'Viewer', 'verbatim');
  await until(() => studio.frames.some((f) => f.includes('"type":"peer"')), 'the subscribe notice');
  const relayed = (type: string) => {
    const frame = viewer.frames.find((f) => f.includes(`"type":"${type}"`));
    return frame === undefined ? undefined : (JSON.parse(frame.slice(2)) as [string, Record<string, unknown>]);
  };
  // Text no JSON encoder writes (a space, an escaped letter), so that a copy encoded again would show.
  const offer = '{"from":"Studio", "target":"Viewer","type":"offer","content":{"type":"offer","sdp":"v=0\\r\\ns=\\u0041\\r\\n"}}';
  studio.ws.send(`42["messagePeer",${offer}]`);
  await until(() => relayed('offer') !== undefined, 'the relayed offer');
  assert.equal(
    viewer.frames.find((f) => f.includes('"type":"offer"')),
    `42["message",${offer}]`,
  );
  assert.equal((relayed('offer')?.[1].content as { sdp: string }).sdp, 'v=0\r\ns=A\r\n');
  // Claiming another name, or the right one after it in the same object (JSON's last key wins, for the server as for the peer).
  studio.ws.send('42["messagePeer",{"from":"Viewer","target":"Viewer","type":"candidate"}]');
  studio.ws.send('42["messagePeer",{"from":"Viewer","target":"Viewer","type":"answer","from":"Studio"}]');
  studio.ws.send('42["messagePeer",{"target":"Viewer","type":"nameless"}]');
  await until(() => ['candidate', 'answer', 'nameless'].every((type) => relayed(type)), 'the three messages');
  assert.deepEqual(relayed('candidate'), ['message', { from: 'Studio', target: 'Viewer', type: 'candidate' }]);
  assert.deepEqual(relayed('answer'), ['message', { from: 'Studio', target: 'Viewer', type: 'answer' }]);
  assert.deepEqual(relayed('nameless'), ['message', { target: 'Viewer', type: 'nameless', from: 'Studio' }]);
});

test('a peerID held by another live socket gets uniquenessError; after it leaves the name is free', async (t) => {
  const { url } = await startServer(t);
  const { broadcaster: host, player: first } = await broadcastAndWatch(t, url, TOKEN, {
    channel: 'unique',
    broadcaster: 'Host',
    player: 'Same',
  });
  const second = await connect(t, url, TOKEN);
  const refused = next(second, 'uniquenessError');
  second.emit('subscribe', 'Same', 'unique');
  assert.deepEqual(await refused, { from: '_server_', to: 'Same', message: 'Same is already connected to @unique.' });
  const refusedPublish = next(second, 'uniquenessError');
  second.emit('publish', 'Host', 'unique', STREAM);
  assert.equal((await refusedPublish).to, 'Host');

  const left = nextMessage(host, 'close');
  first.disconnect();
  await left;
  // The old socket is gone: the same name is accepted as a new peer.
  const third = await connect(t, url, TOKEN);
  const welcomed = nextMessage(host, 'peer');
  third.emit('subscribe', 'Same', 'unique');
  assert.equal((await welcomed).peerID, 'Same');
});

test('two servers in one process keep separate state', async (t) => {
  const [a, b] = await Promise.all([startServer(t), startServer(t)]);
  const onA = await connect(t, a.url, TOKEN);
  const onB = await connect(t, b.url, TOKEN);
  onA.emit('publish', 'Studio', 'same', STREAM);
  onB.emit('publish', 'Studio', 'same', STREAM);
  assert.equal(((await nextMessage(onA, 'peers')).peers as unknown[]).length, 1);
  assert.equal(((await nextMessage(onB, 'peers')).peers as unknown[]).length, 1);
});
