// Signed webhooks, told as a site sees them: a real HTTP receiver on loopback
// verifies every signature; events arrive once each (ids to deduplicate)
// after a receiver errs or goes away, in order per channel; two instances on
// Redis deliver each event once, and a restart loses nothing; a receiver that
// never answers does not slow a handshake.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../src/config';
import type { ServerEvent } from '../src/server-events';
import type { WebhookEnvelope } from '../src/webhooks';
import { createRedisQueue } from '../src/webhooks/redis-queue';
import { broadcastAndWatch, connect, next, nextMessage, refusal, STREAM } from './helpers/client';
import { freePort } from './helpers/process';
import { connectRedis, privateRedis, testRedis } from './helpers/redis';
import { startServer, TOKEN, type TestServer } from './helpers/server';
import { eventually } from './helpers/wait';
import { startReceiver } from './helpers/webhook-receiver';

const SECRET = 'global-webhook-secret';
const SITE_TOKEN = 'site-a-token-0123456789abcdef';
const timely = { timeout: 30_000 };
// Retries come fast in tests; the order and the once-only still have to hold.
const fastRetries = { WEBHOOK_BACKOFF_MS: '20', WEBHOOK_BACKOFF_MAX_MS: '300', WEBHOOK_LIMIT_CHECK_MS: '50' };

/** Records every event the server emits, in order. */
function recordEvents(server: TestServer): ServerEvent[] {
  const seen: ServerEvent[] = [];
  server.server.events.subscribe((e) => seen.push(e));
  return seen;
}

/** A channel's story: a broadcaster, `viewers` players, everyone leaving, the broadcaster last. */
async function channelStory(t: TestContext, url: string, token: string, channel: string, viewers: number) {
  const { broadcaster, player } = await broadcastAndWatch(t, url, token, { channel, player: `${channel}-viewer-0` });
  const players = [player];
  for (let i = 1; i < viewers; i++) {
    const socket = await connect(t, url, token);
    socket.emit('subscribe', `${channel}-viewer-${i}`, channel);
    await next(broadcaster, 'message', (m) => m.type === 'peer' && m.peerID === `${channel}-viewer-${i}`);
    players.push(socket);
  }
  for (const p of players) {
    const told = next(broadcaster, 'message', (m) => (m.payload as { action?: string } | undefined)?.action === 'close');
    p.close();
    await told;
  }
  broadcaster.close();
}

/** The (type, peer) sequence of each channel's events. */
function perChannel(events: { type: string; data: unknown }[]) {
  const lanes = new Map<string, string[]>();
  for (const { type, data } of events) {
    const d = data as { channel?: string; peerID?: string };
    if (!d.channel) continue;
    lanes.set(d.channel, [...(lanes.get(d.channel) ?? []), `${type}:${d.peerID ?? ''}`]);
  }
  return lanes;
}

const endedCount = (events: ServerEvent[]) => events.filter((e) => e.type === 'channel.ended').length;

test('a site gets its own events, each signed with its token; the global URL gets all, signed with WEBHOOK_SECRET', timely, async (t) => {
  const global = await startReceiver(t, { secret: SECRET });
  const site = await startReceiver(t, { secret: SITE_TOKEN });
  const dir = mkdtempSync(join(tmpdir(), 'vw-webhooks-'));
  const file = join(dir, 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [{ id: 1, name: 'Small', properties: { connections: 2, width: 640, height: 360 } }],
      accounts: [{ id: 1, name: 'Site A', token: SITE_TOKEN, planId: 1, properties: { webhookURL: site.url } }],
    }),
  );
  const server = await startServer(t, { ACCOUNTS_FILE: file, WEBHOOK_URL: global.url, WEBHOOK_SECRET: SECRET, ...fastRetries });
  await server.server.accounts.reload();

  const { broadcaster, player } = await broadcastAndWatch(t, server.url, SITE_TOKEN, { channel: 'lobby' });
  // The plan allows 2 connections: the third is refused, and usage reached 80% and 100%.
  assert.equal(await refusal(server.url, { token: SITE_TOKEN }), 'ERROR: Connection limit exceeded');
  const refused = next(broadcaster, 'publishError');
  broadcaster.emit('publish', 'Studio', 'lobby', { ...STREAM, width: 1280 });
  assert.equal((await refused).message, 'Unfit: width.');
  // Another account's channel (the static token) is not Site A's business.
  await channelStory(t, server.url, TOKEN, 'elsewhere', 1);
  player.close();
  await next(broadcaster, 'message', (m) => (m.payload as { action?: string } | undefined)?.action === 'close');
  broadcaster.close();

  await site.until('Site A channel ended', (r) => r.accepted().some((e) => e.type === 'channel.ended'));
  await site.until('both limits', (r) => r.accepted().filter((e) => e.type === 'account.limit').length === 2);
  await global.until('both channels ended', (r) => r.accepted().filter((e) => e.type === 'channel.ended').length === 2);

  for (const r of [...site.requests, ...global.requests]) {
    assert.ok(r.signed, `signature of ${r.envelope.type}`);
    assert.match(String(r.headers['webhook-signature']), /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.equal(r.headers['webhook-id'], r.envelope.id);
    assert.equal(r.headers['content-type'], 'application/json');
  }
  const siteEvents = site.accepted();
  assert.ok(
    siteEvents.every((e) => e.account === 'Site A'),
    'only Site A events reach its URL',
  );
  assert.deepEqual(perChannel(siteEvents).get('lobby'), [
    'peer.joined:Studio',
    'channel.started:',
    'peer.joined:Viewer',
    'peer.left:Viewer',
    'peer.left:Studio',
    'channel.ended:',
  ]);
  const byType = (type: string) => siteEvents.filter((e) => e.type === type).map((e) => e.data);
  assert.deepEqual(byType('channel.started')[0], { channel: 'lobby', publisher: 'Studio', stream: STREAM });
  assert.deepEqual(
    byType('peer.left').map((d) => ({ ...d })),
    [
      { channel: 'lobby', peerID: 'Viewer', role: 'player', reason: 'disconnected' },
      { channel: 'lobby', peerID: 'Studio', role: 'broadcaster', reason: 'disconnected' },
    ],
  );
  assert.deepEqual(byType('refused'), [
    { action: 'connect', issues: ['connections'] },
    { action: 'publish', issues: ['width'], peerID: 'Studio' },
  ]);
  assert.deepEqual(byType('account.limit'), [
    { limit: 'connections', threshold: 80, used: 2, max: 2 },
    { limit: 'connections', threshold: 100, used: 2, max: 2 },
  ]);
  for (const e of siteEvents) {
    assert.match(e.id, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(e.time)), e.time);
  }
  const globalEvents = global.accepted();
  assert.deepEqual(new Set(globalEvents.map((e) => e.account)), new Set(['Site A', '_static']));
  assert.ok(
    siteEvents.every((e) => globalEvents.some((g) => g.id === e.id)),
    'the global URL gets Site A events too',
  );
});

test('peer.left says why: a channel switch, a missed heartbeat, a server shutdown', timely, async (t) => {
  const receiver = await startReceiver(t, { secret: SECRET });
  const server = await startServer(t, {
    WEBHOOK_URL: receiver.url,
    WEBHOOK_SECRET: SECRET,
    PING_INTERVAL_MS: '200',
    PING_TIMEOUT_MS: '300',
    ...fastRetries,
  });
  const emitted = recordEvents(server);
  const { broadcaster, player } = await broadcastAndWatch(t, server.url, TOKEN, { channel: 'first', player: 'Silent' });
  // The broadcaster moves to another channel: it left the first.
  broadcaster.emit('publish', 'Studio', 'second', STREAM);
  await nextMessage(broadcaster, 'peers');
  // The player's process hangs: it no longer answers the server's pings.
  const engine = player.io.engine as unknown as { _sendPacket: (type: string, ...rest: unknown[]) => void };
  const sendPacket = engine._sendPacket.bind(engine);
  engine._sendPacket = (type, ...rest) => (type === 'pong' ? undefined : sendPacket(type, ...rest));
  await eventually('the silent player dropped', () => emitted.some((e) => e.type === 'peer.left' && e.data.peerID === 'Silent'), 15_000);
  await server.close();

  const reasons = emitted.flatMap((e) => (e.type === 'peer.left' ? [[e.data.channel, e.data.peerID, e.data.reason]] : []));
  assert.deepEqual(reasons, [
    ['first', 'Studio', 'left'],
    ['first', 'Silent', 'timed out'],
    ['second', 'Studio', 'disconnected'],
  ]);
  assert.deepEqual(
    emitted.filter((e) => e.type === 'channel.ended').map((e) => e.data.channel),
    ['first', 'second'],
  );
});

test('a receiver answering 500 then 200 gets each event exactly once after the retry', timely, async (t) => {
  const receiver = await startReceiver(t, { secret: SECRET, answer: (_e, attempt) => (attempt === 1 ? 500 : 200) });
  const server = await startServer(t, { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, ...fastRetries });
  const emitted = recordEvents(server);
  await Promise.all(['a', 'b', 'c'].map((channel) => channelStory(t, server.url, TOKEN, channel, 2)));
  await eventually('every channel ended', () => endedCount(emitted) === 3, 15_000);
  await receiver.until('every event accepted', (r) => r.accepted().length === emitted.length);

  const attempts = new Map<string, number[]>();
  for (const r of receiver.requests) attempts.set(r.envelope.id, [...(attempts.get(r.envelope.id) ?? []), r.status]);
  assert.equal(attempts.size, emitted.length);
  for (const [id, statuses] of attempts) assert.deepEqual(statuses, [500, 200], `event ${id}`);
  assert.deepEqual(perChannel(receiver.accepted()), perChannel(emitted));
  assert.ok(receiver.requests.every((r) => r.signed));
  // The server counts a delivery once it has read the answer.
  await eventually('the queue empty', () => server.server.webhooks.stats().queued === 0, 15_000);
  assert.deepEqual(server.server.webhooks.stats(), { queued: 0, delivered: emitted.length, expired: 0, dropped: 0 });
});

test('a receiver that was down gets every event afterwards, in order per channel', timely, async (t) => {
  const port = await freePort();
  const server = await startServer(t, {
    WEBHOOK_URL: `http://127.0.0.1:${port}/hooks`,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_BACKOFF_MS: '20',
    WEBHOOK_BACKOFF_MAX_MS: '200',
  });
  const emitted = recordEvents(server);
  await Promise.all(['one', 'two', 'three'].map((channel) => channelStory(t, server.url, TOKEN, channel, 3)));
  await eventually('every channel ended', () => endedCount(emitted) === 3, 15_000);
  // Down long enough for every lane to have backed off several times.
  const failures = () => server.logs.filter((l) => l.msg === 'webhook not delivered, will retry').length;
  await eventually('retries while the receiver is down', () => failures() >= 15, 15_000);

  const receiver = await startReceiver(t, { secret: SECRET, port });
  await receiver.until('every event', (r) => r.accepted().length === emitted.length);
  assert.equal(receiver.requests.length, emitted.length, 'nothing delivered twice');
  assert.ok(receiver.requests.every((r) => r.signed));
  assert.deepEqual(perChannel(receiver.accepted()), perChannel(emitted));
  assert.equal(perChannel(emitted).get('one')?.length, 10);
});

test('a receiver that never answers does not slow a handshake', timely, async (t) => {
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const receiver = await startReceiver(t, { secret: SECRET, hold: () => released });
  t.after(release);
  const server = await startServer(t, { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_TIMEOUT_MS: '60000' });
  const first = await connect(t, server.url, TOKEN);
  first.emit('publish', 'First', 'held', STREAM);
  await receiver.until('a request held', (r) => r.arrived > 0);

  const started = performance.now();
  for (let i = 0; i < 10; i++) {
    const socket = await connect(t, server.url, TOKEN);
    const published = next(socket, 'message', (m) => m.type === 'peers');
    socket.emit('publish', `Studio ${i}`, `slow-${i}`, STREAM);
    await published;
  }
  const took = performance.now() - started;
  assert.equal(receiver.requests.length, 0, 'the receiver has answered nothing yet');
  assert.ok(took < 5000, `10 handshakes and publishes took ${Math.round(took)} ms`);
  release();
  await receiver.until('the held events delivered', (r) => r.accepted().length >= 22);
});

test('a receiver that never answers does not hold a shutdown', timely, async (t) => {
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const receiver = await startReceiver(t, { secret: SECRET, hold: () => released });
  t.after(release);
  // A request may wait 60 s for its answer; the test's deadline is 30 s.
  const server = await startServer(t, { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_TIMEOUT_MS: '60000' });
  const socket = await connect(t, server.url, TOKEN);
  socket.emit('publish', 'Studio', 'closing', STREAM);
  await receiver.until('a request held', (r) => r.arrived > 0);
  await server.close();
  assert.ok(server.logs.some((l) => l.msg === 'server closed'));
});

test('two instances on Redis deliver each event once', timely, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const receiver = await startReceiver(t, { secret: SECRET });
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: redis.prefix,
    CLUSTER_TIMEOUT_MS: '3000',
    WEBHOOK_URL: receiver.url,
    WEBHOOK_SECRET: SECRET,
  };
  const one = await startServer(undefined, env);
  redis.onCleanup(() => one.close());
  const two = await startServer(undefined, env);
  redis.onCleanup(() => two.close());
  const emitted = [...[one, two].map(recordEvents)];
  await eventually('one instance delivers', () => one.server.webhooks.isDelivering() || two.server.webhooks.isDelivering(), 15_000);

  await Promise.all([
    channelStory(t, one.url, TOKEN, 'on-one', 2),
    channelStory(t, two.url, TOKEN, 'on-two', 2),
    (async () => {
      const { broadcaster, player } = await broadcastAndWatch(t, one.url, TOKEN, { channel: 'across', playerUrl: two.url });
      player.close();
      await next(broadcaster, 'message', (m) => (m.payload as { action?: string } | undefined)?.action === 'close');
      broadcaster.close();
    })(),
  ]);
  const all = () => emitted.flat();
  await eventually('every channel ended', () => endedCount(all()) === 3, 15_000);
  await receiver.until('every event', (r) => r.accepted().length === all().length);
  assert.equal(receiver.requests.length, all().length, 'no event delivered twice');
  assert.equal(new Set(receiver.requests.map((r) => r.envelope.id)).size, all().length);
  assert.equal([one, two].filter((s) => s.server.webhooks.isDelivering()).length, 1);
  assert.ok(emitted[0]?.length && emitted[1]?.length, 'both instances had events');
});

test('on Redis, events queued by an instance that stops are delivered by the next one', timely, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const port = await freePort();
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: redis.prefix,
    CLUSTER_TIMEOUT_MS: '3000',
    WEBHOOK_URL: `http://127.0.0.1:${port}/hooks`,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_BACKOFF_MS: '20',
    WEBHOOK_BACKOFF_MAX_MS: '200',
  };
  const first = await startServer(undefined, env);
  redis.onCleanup(() => first.close());
  const emitted = recordEvents(first);
  await channelStory(t, first.url, TOKEN, 'kept', 2);
  await eventually('the channel ended', () => endedCount(emitted) === 1, 15_000);
  await eventually('a delivery failed', () => first.logs.some((l) => l.msg === 'webhook not delivered, will retry'), 15_000);
  await first.close();

  const receiver = await startReceiver(t, { secret: SECRET, port });
  const second = await startServer(undefined, env);
  redis.onCleanup(() => second.close());
  await receiver.until('every event of the stopped instance', (r) => r.accepted().length === emitted.length);
  assert.deepEqual(perChannel(receiver.accepted()), perChannel(emitted));
  assert.deepEqual(
    receiver.accepted().map((e: WebhookEnvelope) => e.type),
    emitted.map((e) => e.type),
  );
});

test('a full queue drops new events, counts and logs them, and signaling goes on', timely, async (t) => {
  const port = await freePort();
  const server = await startServer(t, {
    WEBHOOK_URL: `http://127.0.0.1:${port}/hooks`,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_QUEUE_SIZE: '3',
    WEBHOOK_BACKOFF_MS: '1000',
  });
  const emitted = recordEvents(server);
  await channelStory(t, server.url, TOKEN, 'busy', 3);
  await eventually('the channel ended', () => endedCount(emitted) === 1, 15_000);
  const stats = server.server.webhooks.stats();
  assert.equal(stats.queued, 3);
  assert.equal(stats.dropped, emitted.length - 3);
  assert.ok(server.logs.some((l) => l.msg === 'webhook queue full: event dropped' && l.dropped === 1));
});

test('WEBHOOK_URL without WEBHOOK_SECRET stops the server at start', () => {
  assert.throws(() => loadConfig({ STATIC_TOKEN: 'x', WEBHOOK_URL: 'https://example.com/hook' }), /WEBHOOK_URL needs WEBHOOK_SECRET/);
  assert.throws(
    () => loadConfig({ STATIC_TOKEN: 'x', WEBHOOK_URL: 'ftp://example.com/', WEBHOOK_SECRET: 's' }),
    /WEBHOOK_URL must be an http/,
  );
});

test('an event still refused when its retry window is over is given up, counted and logged', timely, async (t) => {
  const receiver = await startReceiver(t, { secret: SECRET, answer: () => 503 });
  // WEBHOOK_RETRY_HOURS=0: the window is over at the first failure.
  const server = await startServer(t, { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_HOURS: '0' });
  const emitted = recordEvents(server);
  await channelStory(t, server.url, TOKEN, 'refused', 1);
  await eventually('every channel ended', () => endedCount(emitted) === 1, 15_000);
  await eventually('every event given up', () => server.server.webhooks.stats().expired === emitted.length, 15_000);
  assert.equal(receiver.requests.length, emitted.length, 'each tried once');
  assert.equal(server.logs.filter((l) => l.msg === 'webhook given up: retry window over').length, emitted.length);
  assert.deepEqual(server.server.webhooks.stats(), { queued: 0, delivered: 0, expired: emitted.length, dropped: 0 });
});

test('an instance that closes while it takes the delivery lease releases it: none is left behind', timely, async (t) => {
  const redis = await privateRedis(t);
  if (!redis) return;
  const watcher = await connectRedis(redis.url);
  // The private Redis stops first, closing it.
  t.after(() => {
    if (watcher.isOpen) watcher.destroy();
  });
  // Writes wait in Redis: the queue's first lease request is in flight when it closes.
  await watcher.sendCommand(['CLIENT', 'PAUSE', '20000', 'WRITE']);
  const queue = createRedisQueue({
    target: { url: redis.url },
    prefix: 'lease-test:',
    instanceId: 'closing',
    leaseMs: 3000,
    send: async () => true,
    concurrency: 1,
    backoffMs: 20,
    backoffMaxMs: 300,
    retryMs: 1000,
    maxQueued: 10,
    log: pino({ level: 'silent' }),
  });
  await eventually('the lease request waits in Redis', async () => /blocked_clients:1\b/.test(await watcher.info('clients')));
  const closed = queue.close();
  await watcher.sendCommand(['CLIENT', 'UNPAUSE']);
  await closed;
  assert.deepEqual(await watcher.keys('lease-test:*'), []);
});
