// The signaling handlers on their own: each factory is given the in-memory
// registry and recording fakes instead of a server, and a socket is a plain
// object that keeps what it was sent. No network, no Socket.IO.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { Account } from '../src/accounts/account';
import { createMemoryRegistry } from '../src/channels/memory';
import { RegistryUnavailableError, type ChannelRegistry } from '../src/channels/registry';
import type { PeerConfig } from '../src/ice';
import { UNLIMITED } from '../src/limits';
import type { FailureCause, RefusalReason } from '../src/metrics';
import { eventSchemas } from '../src/protocol';
import type { Delivery } from '../src/signaling/delivery';
import { createDepartures } from '../src/signaling/departures';
import { createFailureLog } from '../src/signaling/failures';
import { createJoining, createRefusalCounter } from '../src/signaling/handlers/join';
import { messageHandler } from '../src/signaling/handlers/message';
import { messagePeerHandler } from '../src/signaling/handlers/message-peer';
import { publishHandler } from '../src/signaling/handlers/publish';
import { subscribeHandler } from '../src/signaling/handlers/subscribe';
import { createReplies, type PeerSocket } from '../src/signaling/replies';
import { createVerbatimRelay } from '../src/signaling/verbatim';
import { manualClock } from './helpers/clock';

const STREAM = { width: 640, height: 360, bitrate: 500, frameRate: 30, audioBitrate: 64 };
const PEER_CONFIG: PeerConfig = { iceServers: [{ urls: 'stun:stun.example.com:3478' }] };

/** A socket as the handlers see it; `sent` holds every event emitted to it. */
function fakeSocket(id: string, account: Account) {
  const sent: { event: string; payload: Record<string, unknown> }[] = [];
  const socket = {
    id,
    connected: true,
    data: {
      account,
      identity: undefined,
      tokens: 100,
      refilledAt: 0,
      rateNoticeAt: Number.NEGATIVE_INFINITY,
      loggedAt: Number.NEGATIVE_INFINITY,
      unlogged: 0,
      pending: 0,
      released: false,
      registration: undefined,
      queue: undefined,
    },
    emit(event: string, payload: Record<string, unknown>) {
      sent.push({ event, payload });
      return true;
    },
  } as unknown as PeerSocket;
  const last = (event: string) => sent.filter((s) => s.event === event).at(-1)?.payload;
  return { socket, sent, last };
}

/** Everything the handlers are built from, with the fakes a test reads. */
function world(options: { registry?: ChannelRegistry; plan?: Partial<typeof UNLIMITED> } = {}) {
  const registry = options.registry ?? createMemoryRegistry({ clock: manualClock() });
  const account: Account = { name: 'site', suspended: false, plan: { ...UNLIMITED, ...options.plan } };
  const lines: { level: number; msg: string; err?: unknown }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
  const refused: RefusalReason[] = [];
  const failed: FailureCause[] = [];
  const relayed: unknown[] = [];
  const telemetry = {
    refused: (r: RefusalReason) => void refused.push(r),
    relayed: (t: unknown) => void relayed.push(t),
    failed: (c: FailureCause) => void failed.push(c),
  };
  const delivered: { to: string[]; event: string; payload: Record<string, unknown> }[] = [];
  const delivery: Delivery = {
    toSocket: (to, event, ...payload) => void delivered.push({ to: [to], event, payload: payload[0] as Record<string, unknown> }),
    toPeer: (to, event, ...payload) => void delivered.push({ to: [to.socketId], event, payload: payload[0] as Record<string, unknown> }),
    toPeers: (to, event, ...payload) =>
      void delivered.push({ to: to.map((peer) => peer.socketId), event, payload: payload[0] as Record<string, unknown> }),
    toSockets: (to, event, ...payload) => void delivered.push({ to, event, payload: payload[0] as Record<string, unknown> }),
  };
  const replies = createReplies({ log, telemetry, maxNameLength: 128, clock: manualClock() });
  const recordFailure = createFailureLog({ log, telemetry });
  const departures = createDepartures({ registry, delivery, replies, recordFailure, releaseConnection: () => undefined });
  const countRefusal = createRefusalCounter({ registry, recordFailure });
  const joining = createJoining({ registry, departures, replies, countRefusal, accountMaxChannels: 0, accountMaxPeers: 0 });
  const schemas = eventSchemas({ maxNameLength: 128 });
  const handlers = {
    publish: publishHandler({ schemas, joining, countRefusal, replies, peerConfig: () => PEER_CONFIG }),
    subscribe: subscribeHandler({ schemas, joining, countRefusal, replies, delivery }),
    messagePeer: messagePeerHandler({
      schemas,
      registry,
      replies,
      delivery,
      telemetry,
      enforceSdp: false,
      verbatim: createVerbatimRelay(),
    }),
    message: messageHandler({ schemas, registry, replies, delivery, telemetry, enforceSdp: false }),
  };
  return { registry, account, handlers, delivered, refused, failed, relayed, lines, socket: (id: string) => fakeSocket(id, account) };
}

test('publish registers the broadcaster and answers with the channel peers and its peerConfig', async () => {
  const w = world();
  const studio = w.socket('s1');
  await w.handlers.publish(studio.socket, ['Studio', 'Lobby', STREAM]);
  assert.deepEqual(studio.last('message'), {
    type: 'peers',
    from: '_channel_',
    target: 'Studio',
    peers: [{ socketId: 's1', peerID: 'Studio', type: 'broadcaster', account: 'site' }],
    peerConfig: PEER_CONFIG,
  });
  assert.deepEqual(studio.socket.data.registration, { channel: 'Lobby', peerID: 'Studio', role: 'broadcaster' });
  assert.equal((await w.registry.findPeer('site', 'Lobby', 'Studio'))?.socketId, 's1');
});

test('publish over the plan is refused with the issues, and counted in the account stats', async () => {
  const w = world({ plan: { width: 320 } });
  const studio = w.socket('s1');
  await w.handlers.publish(studio.socket, ['Studio', 'Lobby', STREAM]);
  assert.deepEqual(studio.last('publishError'), { from: '_server_', to: 'Studio', message: 'Unfit: width.' });
  assert.deepEqual(w.refused, ['width']);
  const [[, usage] = ['', undefined]] = (await w.registry.snapshot()).stats;
  assert.equal(usage?.issues.width, 1);
  assert.equal(await w.registry.findPeer('site', 'Lobby', 'Studio'), undefined);
});

test('invalid publish arguments are answered with what is wrong', async () => {
  const w = world();
  const studio = w.socket('s1');
  await w.handlers.publish(studio.socket, ['', 'Lobby']);
  assert.match(String(studio.last('publishError')?.message), /^Invalid publish: argument 0: /);
  assert.deepEqual(w.refused, ['validation']);
});

test('subscribe tells the broadcaster of its new player once; a taken peerID gets uniquenessError', async () => {
  const w = world();
  const studio = w.socket('s1');
  const viewer = w.socket('s2');
  await w.handlers.publish(studio.socket, ['Studio', 'Lobby', STREAM]);
  await w.handlers.subscribe(viewer.socket, ['Viewer', 'Lobby']);
  await w.handlers.subscribe(viewer.socket, ['Viewer', 'Lobby']);
  assert.deepEqual(w.delivered, [
    { to: ['s1'], event: 'message', payload: { type: 'peer', from: 'Viewer', target: 'Studio', peerID: 'Viewer' } },
  ]);
  const impostor = w.socket('s3');
  await w.handlers.subscribe(impostor.socket, ['Viewer', 'Lobby']);
  assert.deepEqual(impostor.last('uniquenessError'), { from: '_server_', to: 'Viewer', message: 'Viewer is already connected to @Lobby.' });
});

test('messagePeer reaches the target in the sender channel with `from` stamped; an unknown target is dropped', async () => {
  const w = world();
  const studio = w.socket('s1');
  const viewer = w.socket('s2');
  await w.handlers.publish(studio.socket, ['Studio', 'Lobby', STREAM]);
  await w.handlers.subscribe(viewer.socket, ['Viewer', 'Lobby']);
  w.delivered.length = 0;
  await w.handlers.messagePeer(viewer.socket, [{ target: 'Studio', type: 'offer', from: 'Someone else', content: { sdp: 'v=0' } }]);
  assert.deepEqual(w.delivered, [
    { to: ['s1'], event: 'message', payload: { target: 'Studio', type: 'offer', from: 'Viewer', content: { sdp: 'v=0' } } },
  ]);
  assert.deepEqual(w.relayed, ['offer']);
  await w.handlers.messagePeer(viewer.socket, [{ target: 'Nobody', type: 'candidate' }]);
  assert.equal(w.delivered.length, 1, 'nothing sent for a peer not in the channel');
  // The server's own messages are not relayed.
  await w.handlers.messagePeer(viewer.socket, [{ target: 'Studio', type: 'peers' }]);
  assert.equal(viewer.last('messageError')?.message, 'Invalid message: type peers is sent by the server only');
});

test('message goes to every other peer of the channel, from the registered sender', async () => {
  const w = world();
  const [a, b, c] = [w.socket('s1'), w.socket('s2'), w.socket('s3')];
  await w.handlers.publish(a.socket, ['Studio', 'Lobby', STREAM]);
  await w.handlers.subscribe(b.socket, ['One', 'Lobby']);
  await w.handlers.subscribe(c.socket, ['Two', 'Lobby']);
  w.delivered.length = 0;
  await w.handlers.message(b.socket, [{ text: 'hello', from: 'Studio' }]);
  assert.equal(w.delivered.length, 1);
  assert.deepEqual(new Set(w.delivered[0]?.to), new Set(['s1', 's3']));
  assert.deepEqual(w.delivered[0]?.payload, { text: 'hello', from: 'One' });
});

/** The memory registry, with `method` failing with `error` (a registry outage, or a bug). */
function failing(method: keyof ChannelRegistry, error: Error): ChannelRegistry {
  const registry = createMemoryRegistry({ clock: manualClock() });
  return { ...registry, [method]: () => Promise.reject(error) };
}

test('a registry that cannot look up the target makes messagePeer fail, for the caller to answer', async () => {
  const w = world({ registry: failing('findPeer', new RegistryUnavailableError('Redis did not answer')) });
  const viewer = w.socket('s2');
  viewer.socket.data.registration = { channel: 'Lobby', peerID: 'Viewer', role: 'player' };
  await assert.rejects(async () => w.handlers.messagePeer(viewer.socket, [{ target: 'Studio', type: 'offer' }]), RegistryUnavailableError);
  assert.deepEqual(w.delivered, []);
});

test('a refusal the registry cannot count is still answered; the outage and a bug are recorded apart', async () => {
  for (const [error, cause, level, msg] of [
    [new RegistryUnavailableError('Redis did not answer'), 'registryUnavailable', 40, 'counting a refusal: registry unavailable'],
    [new TypeError('a bug'), 'bug', 50, 'counting a refusal failed'],
  ] as const) {
    const w = world({ registry: failing('countRefusal', error), plan: { width: 320 } });
    const studio = w.socket('s1');
    await w.handlers.publish(studio.socket, ['Studio', 'Lobby', STREAM]);
    assert.equal(studio.last('publishError')?.message, 'Unfit: width.');
    assert.deepEqual(w.failed, [cause]);
    const line = w.lines.find((l) => l.msg === msg);
    assert.equal(line?.level, level, `${cause}: logged as "${msg}" at level ${level}`);
  }
});
