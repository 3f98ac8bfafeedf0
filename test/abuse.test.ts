// Abuse limits and faults: every client is hostile, every dependency fallible.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { get } from './helpers/api';
import { broadcastAndWatch, connect, connectClient, next, nextMessage, refusal, STREAM, type Client } from './helpers/client';
import { manualClock } from './helpers/clock';
import { spawnServer } from './helpers/process';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { eventually, progressing, within } from './helpers/wait';
import { HandshakeError } from '../src/protocol';

type Stats = [string, { issues: Record<string, number>; refused: Record<string, number>; connections: number }][];
const statsOf = async (url: string) => (await get(url, `/stats?apikey=${API_KEY}`)).json<Stats>();

/** Disconnects reach the server asynchronously: waits until the registry holds nothing, for as long as it keeps draining. */
async function drained(server: Awaited<ReturnType<typeof startServer>>['server']) {
  let left = Infinity;
  const remaining = async () => {
    const { connections, stats } = await server.registry.snapshot();
    left = connections.length + stats.reduce((sum, [, u]) => sum + u.connections + u.players + u.broadcasters + u.bitrate, 0);
    return left;
  };
  // Counted down: progress is every change in what is left.
  await progressing('the registry drains', 0, async () => -(await remaining()), 15_000).catch((err: Error) => {
    throw new Error(`${err.message}; left: ${left}`);
  });
}

/** Events the server dropped for the rate so far: each one is counted, also those it did not answer. */
async function rateRefusals(url: string) {
  const metrics = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
  return Number(/^videowhisper_refusals_total\{reason="rate"\} (\d+)$/m.exec(metrics)?.[1]);
}

test('events over the per-socket rate are refused with a clear error and counted', async (t) => {
  const clock = manualClock();
  const { url } = await startServer(t, { RATE_EVENTS_PER_SECOND: '10' }, { clock });
  const socket = await connect(t, url, TOKEN);
  const limited = next<{ message: string }>(socket, 'publishError', (e) => e.message === 'ERROR: Too many events, slow down');
  for (let i = 0; i < 30; i++) socket.emit('publish', 'Studio', 'rate', STREAM);
  assert.equal((await limited).message, 'ERROR: Too many events, slow down');
  // Ten went through; the clock moves only once the other twenty have reached the server.
  await eventually('20 publishes refused for the rate', async () => (await rateRefusals(url)) === 20);
  const relayLimited = next<{ message: string }>(socket, 'messageError');
  // A second later the bucket holds ten again: thirty relay events empty it,
  // and are refused too (the client is told at most once a second).
  clock.advance(1000);
  for (let i = 0; i < 30; i++) socket.emit('messagePeer', { target: 'nobody', type: 'candidate' });
  assert.equal((await relayLimited).message, 'ERROR: Too many events, slow down');
  await eventually('20 relay events refused for the rate', async () => (await rateRefusals(url)) === 40);
  const [[account, usage] = ['', undefined]] = await statsOf(url);
  assert.equal(account, '_static');
  assert.ok((usage?.issues.rate ?? 0) >= 2);
  assert.ok((usage?.refused.publish ?? 0) >= 1 && (usage?.refused.message ?? 0) >= 1);
  // The socket is still usable once it slows down.
  clock.advance(1100);
  socket.emit('publish', 'Studio', 'rate', STREAM);
  await nextMessage(socket, 'peers');
});

test('a wall clock stepped back (NTP) does not stop the rate limit from refilling', async (t) => {
  const clock = manualClock();
  const { url } = await startServer(t, { RATE_EVENTS_PER_SECOND: '20' }, { clock });
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'clock-step' });
  const refused: unknown[] = [];
  broadcaster.on('messageError', (e: unknown) => refused.push(e));
  clock.stepWall(-3_600_000);
  const candidates = (from: number, count: number) => {
    for (let n = from; n < from + count; n++) broadcaster.emit('messagePeer', { target: 'Viewer', type: 'candidate', n });
  };
  // Most of the bucket now (its publish took one), the rest once it has had time to refill.
  candidates(0, 15);
  await next(player, 'message', (m) => m.n === 14);
  clock.advance(800);
  const last = next(player, 'message', (m) => m.n === 24);
  candidates(15, 10);
  await last;
  assert.deepEqual(refused, []);
  assert.equal(player.messages.filter((m) => m.type === 'candidate').length, 25);
});

test('failed handshakes per address are limited; the right token from elsewhere still works', async (t) => {
  const { url } = await startServer(t, { RATE_FAILED_AUTH_PER_MINUTE: '5' });
  for (let i = 0; i < 5; i++) assert.equal(await refusal(url, { token: `guess-${i}` }), 'ERROR: Authentication error');
  assert.equal(await refusal(url, { token: 'guess-6' }), 'ERROR: Too many failed attempts');
  assert.equal(await refusal(url, { token: TOKEN }), 'ERROR: Too many failed attempts', 'the address is blocked for a minute');
  // Successful handshakes are never limited per address: many visitors share one.
  const other = await startServer(t, { RATE_FAILED_AUTH_PER_MINUTE: '5' });
  const sockets = await Promise.all(Array.from({ length: 20 }, () => connect(t, other.url, TOKEN)));
  assert.equal(sockets.filter((s) => s.connected).length, 20);
});

test('behind a trusted proxy, failed handshakes are counted per forwarded client address', async (t) => {
  const { url } = await startServer(t, { RATE_FAILED_AUTH_PER_MINUTE: '2', TRUST_PROXY: 'loopback' });
  const via = (client: string, token: string) =>
    within(
      new Promise<string>((resolve) => {
        const socket = connectClient(url, { token }, { extraHeaders: { 'x-forwarded-for': client } });
        t.after(() => socket.close());
        socket.once('connect', () => (socket.close(), resolve('connected')));
        socket.once('connect_error', (err: Error) => (socket.close(), resolve(err.message)));
      }),
      `the handshake from ${client}`,
    );
  assert.equal(await via('203.0.113.1', 'bad'), 'ERROR: Authentication error');
  assert.equal(await via('203.0.113.1', 'bad'), 'ERROR: Authentication error');
  assert.equal(await via('203.0.113.1', TOKEN), 'ERROR: Too many failed attempts');
  // Another visitor behind the same proxy is not blocked.
  assert.equal(await via('203.0.113.2', TOKEN), 'connected');
  // Without trust, the header is ignored: every client is the proxy's address.
  const direct = await startServer(t, { RATE_FAILED_AUTH_PER_MINUTE: '1', TRUST_PROXY: 'none' });
  assert.equal(await refusal(direct.url, { token: 'bad' }), 'ERROR: Authentication error');
  const spoofed = connectClient(direct.url, { token: TOKEN }, { extraHeaders: { 'x-forwarded-for': '198.51.100.7' } });
  t.after(() => spoofed.close());
  assert.equal((await next<Error>(spoofed, 'connect_error')).message, 'ERROR: Too many failed attempts');
});

test('an account may hold a bounded number of channels and peers', async (t) => {
  const { url } = await startServer(t, { ACCOUNT_MAX_CHANNELS: '2', ACCOUNT_MAX_PEERS: '3' });
  const [a, b, c, d] = await Promise.all([connect(t, url, TOKEN), connect(t, url, TOKEN), connect(t, url, TOKEN), connect(t, url, TOKEN)]);
  a.emit('publish', 'A', 'one', STREAM);
  await nextMessage(a, 'peers');
  b.emit('publish', 'B', 'two', STREAM);
  await nextMessage(b, 'peers');
  const refusedChannel = next<{ message: string }>(c, 'publishError');
  c.emit('publish', 'C', 'three', STREAM);
  assert.equal((await refusedChannel).message, 'Unfit: channels.');
  const joined = nextMessage(a, 'peer');
  c.emit('subscribe', 'C', 'one');
  await joined;
  const refusedPeer = next<{ message: string }>(d, 'subscribeError');
  d.emit('subscribe', 'D', 'two');
  assert.equal((await refusedPeer).message, 'Unfit: peers.');
  const [[, usage] = ['', undefined]] = await statsOf(url);
  assert.equal(usage?.issues.channels, 1);
  assert.equal(usage?.issues.peers, 1);
});

test('a client that stops answering pings is dropped and its channel told', async (t) => {
  const { url, server } = await startServer(t, { PING_INTERVAL_MS: '200', PING_TIMEOUT_MS: '300' });
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'silent', player: 'Silent' });
  // The player's process hangs: it no longer answers the server's pings.
  const engine = player.io.engine as unknown as { _sendPacket: (type: string, ...rest: unknown[]) => void };
  const send = engine._sendPacket.bind(engine);
  engine._sendPacket = (type, ...rest) => (type === 'pong' ? undefined : send(type, ...rest));
  const closed = await nextMessage(broadcaster, 'close', 5000);
  assert.equal((closed.payload as { message: string }).message, 'Silent left @silent');
  broadcaster.disconnect();
  await drained(server);
});

test('a burst of 2,000 connects and disconnects: each gets an answer, and the registry drains to zero', async (t) => {
  const { url, server } = await startServer(t);
  const COUNT = 2000;
  const sockets: Client[] = [];
  t.after(() => sockets.forEach((s) => s.close()));
  // What each one got: connected, or the server's connect_error message.
  const answers: string[] = [];
  const failures: string[] = [];
  let resets = 0;
  for (let i = 0; i < COUNT; i++) {
    // As the shipped client does, a connection the machine drops (a full
    // accept queue resets it) is tried again; no client-side connect timeout:
    // on a busy machine the answer comes late, not never.
    const socket = connectClient(
      url,
      { token: TOKEN },
      { timeout: false, reconnection: true, reconnectionAttempts: 20, reconnectionDelay: 100, reconnectionDelayMax: 2000 },
    );
    sockets.push(socket);
    socket.once('connect', () => {
      answers.push('connected');
      // Half of them register before leaving, so channels churn too.
      if (i % 2 === 0) socket.emit(i % 4 === 0 ? 'publish' : 'subscribe', `peer-${i}`, `burst-${i % 50}`, STREAM);
    });
    socket.on('connect_error', (err: Error) => {
      // A server's refusal carries a protocol message; a transport error is retried.
      if ((Object.values(HandshakeError) as string[]).includes(err.message)) answers.push(err.message);
      else resets++;
    });
    socket.io.once('reconnect_failed', () => failures.push(`no answer after ${socket.io.reconnectionAttempts()} retries`));
  }
  await progressing('the burst gets its answers', COUNT, () => answers.length + failures.length);
  t.diagnostic(`connections reset and tried again: ${resets}`);
  assert.deepEqual(failures, [], 'every connect attempt gets an answer from the server');
  // Nothing in the burst is over a limit: every one of them is let in.
  assert.equal(
    answers.filter((a) => a === 'connected').length,
    COUNT,
    `answers: ${JSON.stringify(answers.filter((a) => a !== 'connected').slice(0, 3))}`,
  );
  for (const socket of sockets) socket.disconnect();
  await drained(server);
  const health = await get(url, '/health');
  assert.equal(health.status, 200);
  // The server still serves a pair.
  await broadcastAndWatch(t, url, TOKEN, { channel: 'after' });
});

test('SIGTERM in the middle of handshakes exits cleanly and tells the peers', async (t) => {
  const server = await spawnServer(t);
  const { player } = await broadcastAndWatch(t, server.url, TOKEN, { channel: 'sigterm' });
  // Handshakes in flight while the signal lands.
  const inFlight = Array.from({ length: 50 }, () => connectClient(server.url, { token: TOKEN }));
  t.after(() => inFlight.forEach((s) => s.close()));
  const closed = nextMessage(player, 'close');
  server.child.kill('SIGTERM');
  assert.equal(await within(server.exited, 'the server to exit', 30_000), 0);
  assert.equal(((await closed).payload as { message: string }).message, 'Studio left @sigterm');
  assert.doesNotMatch(server.stderr(), /Error|unhandled/i);
});
