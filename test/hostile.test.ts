// Hostile clients that follow the protocol just enough: clients that stop
// reading, send pongs nobody asked for, connect from other sites, claim
// nothing at publish, burst their candidates, name themselves in emoji,
// guess API keys, or relay what only the server may send.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { createMemoryRegistry } from '../src/channels/memory';
import type { ChannelRegistry } from '../src/channels/registry';
import { get } from './helpers/api';
import { broadcastAndWatch, connect, connectClient, next, nextMessage, STREAM, type Client } from './helpers/client';
import { spawnServer } from './helpers/process';
import { rawWebSocket, until } from './helpers/raw-client';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { testCertificate } from './helpers/tls';

const MiB = 1024 * 1024;

/** The resident memory of a process, from /proc. */
function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

/** Samples `pid`'s RSS until `done` settles; resolves with the highest seen. */
async function peakRss(pid: number, done: Promise<unknown>): Promise<number> {
  let peak = rssOf(pid);
  let settled = false;
  void done.finally(() => (settled = true)).catch(() => {});
  while (!settled) {
    peak = Math.max(peak, rssOf(pid));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Math.max(peak, rssOf(pid));
}

/** Counter values from /metrics: `name{labels}` -> value. */
async function metrics(url: string): Promise<Map<string, number>> {
  const text = (await get(url, `/metrics?apikey=${API_KEY}`)).text;
  return new Map(
    text
      .split('\n')
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => {
        const at = line.lastIndexOf(' ');
        return [line.slice(0, at), Number(line.slice(at + 1))] as const;
      }),
  );
}

/** An HTTPS request to the server with the test CA; resolves with status and body. */
function request(
  url: string,
  path: string,
  { method = 'GET', body, headers = {} }: { method?: string; body?: string; headers?: Record<string, string> } = {},
) {
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = https.request(new URL(path, url), { method, ca: testCertificate().ca, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Accounts and plans from a JSON file, as ACCOUNTS_FILE reads them. */
function accountsFile(content: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'vw-hostile-')), 'accounts.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

const LIMITED_PLAN = { connections: 10, totalBitrate: 5000, bitrate: 500, audioBitrate: 32, width: 640, height: 360, framerate: 15 };

// --- 1. Clients that do not read ---------------------------------------------

// A broadcaster relays big messages to a player whose client has stopped
// reading: the server queues at most MAX_OUTGOING_BYTES for it (plus what the
// kernel's socket buffers take), then cuts it off and its channel hears it leave.
const FLOOD_MESSAGES = 1500;
const FLOOD_MESSAGE_BYTES = 32 * 1024; // 1,500 x 32 KB: 47 MiB sent toward the player
// Without the bound the whole flood sits in the server's memory, twice (strings queued,
// then frames buffered); with it, the server holds about 1 MiB for the player.
const RSS_GROWTH_BOUND = 40 * MiB;

async function flood(broadcaster: Client, target: string) {
  const padding = 'x'.repeat(FLOOD_MESSAGE_BYTES);
  for (let i = 0; i < FLOOD_MESSAGES; i++) broadcaster.emit('messagePeer', { target, type: 'candidate', n: i, padding });
}

/** A server whose accounts (ACCOUNTS_FILE) have loaded: until then their tokens get `ERROR: Server unavailable`. */
async function withAccounts<T extends { server: { accounts: { reload(): Promise<{ outcome: string }> } } }>(
  starting: Promise<T>,
): Promise<T> {
  const started = await starting;
  assert.equal((await started.server.accounts.reload()).outcome, 'reloaded');
  return started;
}

test(
  'a WebSocket client that stops reading is disconnected once 1 MiB waits for it; the server stays within its memory bound',
  { timeout: 90_000 },
  async (t) => {
    const server = await spawnServer(t, { RATE_EVENTS_PER_SECOND: '100000' });
    const pid = server.child.pid as number;
    const broadcaster = await connect(t, server.url, TOKEN);
    broadcaster.emit('publish', 'Studio', 'slow-ws', STREAM);
    await nextMessage(broadcaster, 'peers');
    const sink = await rawWebSocket(server.url, TOKEN);
    t.after(() => sink.ws.terminate());
    const noticed = nextMessage(broadcaster, 'peer');
    sink.emit('subscribe', 'Sink', 'slow-ws');
    await noticed;
    // From here the client reads nothing, and answers no ping.
    (sink.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const baseline = rssOf(pid);

    const left = next(
      broadcaster,
      'message',
      (m) => (m.payload as { message?: string } | undefined)?.message === 'Sink left @slow-ws',
      60_000,
    );
    await flood(broadcaster, 'Sink');
    const peak = await peakRss(pid, left);
    await left;
    t.diagnostic(
      `server RSS ${Math.round(baseline / MiB)} MiB before, peak ${Math.round(peak / MiB)} MiB while ${Math.round((FLOOD_MESSAGES * FLOOD_MESSAGE_BYTES) / MiB)} MiB were sent toward the client`,
    );
    assert.ok(
      peak - baseline < RSS_GROWTH_BOUND,
      `RSS grew by ${Math.round((peak - baseline) / MiB)} MiB (bound ${RSS_GROWTH_BOUND / MiB} MiB)`,
    );
    assert.equal((await metrics(server.url)).get('videowhisper_disconnects_total{reason="slowReader"}'), 1);
    // The broadcaster is untouched and still relays.
    assert.equal(broadcaster.connected, true);
  },
);

test(
  'a long-polling client that never fetches is disconnected once 1 MiB waits for it; the server stays within its memory bound',
  { timeout: 90_000 },
  async (t) => {
    const server = await spawnServer(t, { RATE_EVENTS_PER_SECOND: '100000' });
    const pid = server.child.pid as number;
    const broadcaster = await connect(t, server.url, TOKEN);
    broadcaster.emit('publish', 'Studio', 'slow-poll', STREAM);
    await nextMessage(broadcaster, 'peers');

    // Engine.IO long-polling by hand: open, connect, read the acknowledgement once, subscribe.
    const polling = '/socket.io/?EIO=4&transport=polling';
    const open = await request(server.url, polling);
    const sid = (JSON.parse(open.text.slice(1)) as { sid: string }).sid;
    const session = `${polling}&sid=${sid}`;
    assert.equal((await request(server.url, session, { method: 'POST', body: `40${JSON.stringify({ token: TOKEN })}` })).text, 'ok');
    assert.match((await request(server.url, session)).text, /^40\{/);
    const noticed = nextMessage(broadcaster, 'peer');
    await request(server.url, session, { method: 'POST', body: `42${JSON.stringify(['subscribe', 'Sink', 'slow-poll'])}` });
    await noticed;
    const baseline = rssOf(pid);

    // No GET from here on: everything for the client queues in the server.
    const left = next(
      broadcaster,
      'message',
      (m) => (m.payload as { message?: string } | undefined)?.message === 'Sink left @slow-poll',
      60_000,
    );
    await flood(broadcaster, 'Sink');
    const peak = await peakRss(pid, left);
    await left;
    t.diagnostic(`server RSS ${Math.round(baseline / MiB)} MiB before, peak ${Math.round(peak / MiB)} MiB`);
    assert.ok(
      peak - baseline < RSS_GROWTH_BOUND,
      `RSS grew by ${Math.round((peak - baseline) / MiB)} MiB (bound ${RSS_GROWTH_BOUND / MiB} MiB)`,
    );
    assert.equal((await metrics(server.url)).get('videowhisper_disconnects_total{reason="slowReader"}'), 1);
    // The session is gone.
    assert.equal((await request(server.url, session)).status, 400);
  },
);

test('errors echo a peerID cut to MAX_NAME_LENGTH, never the 60 KB a client sent', async (t) => {
  const { url } = await startServer(t);
  const socket = await connect(t, url, TOKEN);
  const refused = next<{ to: string; message: string }>(socket, 'publishError');
  // 15,000 emoji: 60 KB, just within MAX_MESSAGE_BYTES.
  socket.emit('publish', '\u{1F600}'.repeat(15_000), 'echo', STREAM);
  const error = await refused;
  assert.equal([...error.to].length, 128);
  assert.equal(error.to, '\u{1F600}'.repeat(128), 'cut between characters, not inside one');
});

test('pongs nobody asked for do not keep a client alive: it is disconnected', async (t) => {
  const { url } = await startServer(t);
  const client = await rawWebSocket(url, TOKEN);
  t.after(() => client.ws.terminate());
  client.ws.send('3');
  await client.closed;
  assert.equal((await metrics(url)).get('videowhisper_disconnects_total{reason="unpromptedPong"}'), 1);
});

test('a client that answers each ping stays connected through several heartbeats, on each transport', async (t) => {
  const { url } = await startServer(t, { PING_INTERVAL_MS: '150', PING_TIMEOUT_MS: '300' });
  // WebSocket only (the shipped client), long-polling only, and polling upgraded to WebSocket.
  for (const transports of [['websocket'], ['polling'], ['polling', 'websocket']]) {
    const socket = await connect(t, url, TOKEN, { transports });
    for (let i = 0; i < 4; i++) await next(socket.io.engine as unknown as Client, 'ping');
    assert.equal(socket.connected, true, transports.join('+'));
  }
  assert.equal((await metrics(url)).get('videowhisper_disconnects_total{reason="unpromptedPong"}'), 0);
});

// --- 2. Origins ---------------------------------------------------------------

const GOOD = 'https://good.example';
const EVIL = 'https://evil.example';

test('with CORS_ORIGIN set, a polling handshake from another site is refused with 403 and counted', async (t) => {
  const { url } = await startServer(t, { CORS_ORIGIN: `${GOOD}, https://also-good.example` });
  const path = '/socket.io/?EIO=4&transport=polling';
  const evil = await get(url, path, { origin: EVIL });
  assert.equal(evil.status, 403);
  assert.equal(evil.json<{ message: string }>().message, 'ERROR: Origin not allowed');
  for (const origin of [GOOD, 'https://also-good.example', 'HTTPS://GOOD.EXAMPLE']) {
    const allowed = await get(url, path, { origin });
    assert.equal(allowed.status, 200, origin);
    assert.match(allowed.text, /^0\{"sid"/);
  }
  // Native apps and servers send no Origin: allowed.
  assert.equal((await get(url, path)).status, 200);
  assert.equal((await metrics(url)).get('videowhisper_refusals_total{reason="origin"}'), 1);
});

test('with CORS_ORIGIN set, a WebSocket upgrade from another site is refused; the right site and no Origin connect', async (t) => {
  const { url } = await startServer(t, { CORS_ORIGIN: GOOD });
  const upgrade = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, {
    ca: testCertificate().ca,
    headers: { origin: EVIL },
  });
  const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    upgrade.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    upgrade.once('open', () => reject(new Error('the upgrade from another site was accepted')));
  });
  // Engine.IO answers every refused upgrade with 400, and says why.
  assert.equal(refused.status, 400);
  assert.match(refused.body, /ERROR: Origin not allowed/);

  // Through socket.io-client, over each transport.
  for (const transports of [['websocket'], ['polling']]) {
    const evil = connectClient(url, { token: TOKEN }, { transports, extraHeaders: { origin: EVIL } });
    t.after(() => evil.close());
    await next(evil, 'connect_error');
    assert.equal(evil.connected, false);
    const good = await connect(t, url, TOKEN, { transports, extraHeaders: { origin: GOOD } });
    good.emit('publish', `Studio-${transports[0]}`, 'origins', STREAM);
    await nextMessage(good, 'peers');
  }
  const bare = await connect(t, url, TOKEN);
  assert.equal(bare.connected, true);
  assert.equal((await metrics(url)).get('videowhisper_refusals_total{reason="origin"}'), 3);
});

test("an account's allowedOrigins tie its token to its own site; a refused socket holds no connection", async (t) => {
  const file = accountsFile({
    plans: [{ id: 1, name: 'One', properties: { connections: 1 } }],
    accounts: [
      { name: 'Site A', token: 'site-a-token', planId: 1, properties: { allowedOrigins: ['https://a.example'] } },
      { name: 'Site B', token: 'site-b-token', planId: 1, properties: { allowedOrigins: 'https://b.example, https://www.b.example' } },
    ],
  });
  const { url } = await withAccounts(startServer(t, { ACCOUNTS_FILE: file }));
  const asPage = (token: string, origin: string) => {
    const socket = connectClient(url, { token }, { extraHeaders: { origin } });
    t.after(() => socket.close());
    return Promise.race([
      next(socket, 'connect').then(() => 'connected'),
      next<Error>(socket, 'connect_error').then((err) => err.message),
    ]).then((outcome) => ({ socket, outcome }));
  };
  assert.equal((await asPage('site-a-token', 'https://b.example')).outcome, 'ERROR: Origin not allowed');
  assert.equal((await asPage('site-b-token', 'https://a.example')).outcome, 'ERROR: Origin not allowed');
  // The refusals held none of the plan's one connection.
  const a = await asPage('site-a-token', 'https://a.example');
  assert.equal(a.outcome, 'connected');
  a.socket.close();
  const b = await asPage('site-b-token', 'https://www.b.example');
  assert.equal(b.outcome, 'connected');
  b.socket.close();
  // No Origin: not a browser page, allowed.
  await connect(t, url, 'site-a-token');
  const [stats] = (await get(url, `/stats?apikey=${API_KEY}`)).json<[string, { issues: Record<string, number> }][]>();
  assert.equal(stats?.[1].issues.origin, 1);
});

test("a connection's later connects are still checked against its upgrade's Origin and forwarded address", async (t) => {
  // The server keeps only what it reads of a connection's upgrade request, not the request:
  // every connect on the WebSocket, not only the first, must still see the page's Origin and
  // the client's address.
  const file = accountsFile({
    plans: [{ id: 1, name: 'One', properties: {} }],
    accounts: [
      { name: 'Site A', token: 'site-a-token', planId: 1, properties: { allowedOrigins: ['https://a.example'] } },
      { name: 'Site B', token: 'site-b-token', planId: 1, properties: { allowedOrigins: ['https://b.example'] } },
    ],
  });
  const { url } = await withAccounts(startServer(t, { ACCOUNTS_FILE: file, TRUST_PROXY: 'loopback', RATE_FAILED_AUTH_PER_MINUTE: '2' }));
  const page = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, {
    ca: testCertificate().ca,
    headers: { origin: 'https://a.example', 'x-forwarded-for': '203.0.113.9' },
  });
  t.after(() => page.terminate());
  const frames: string[] = [];
  page.on('message', (data) => frames.push(String(data)));
  await until(() => frames.some((f) => f.startsWith('0{')), 'the Engine.IO open packet');
  const connectWith = async (token: string) => {
    const before = frames.length;
    page.send(`40${JSON.stringify({ token })}`);
    await until(() => frames.slice(before).some((f) => f.startsWith('4')), 'the answer to a connect');
    const answer = frames.slice(before).find((f) => f.startsWith('4')) ?? '';
    return answer.startsWith('40') ? 'connected' : (JSON.parse(answer.slice(2)) as { message: string }).message;
  };
  // Site B's token from Site A's page: the Origin of the upgrade counts on each connect.
  assert.equal(await connectWith('site-b-token'), 'ERROR: Origin not allowed');
  // Failed attempts are counted against the forwarded address, and then block it.
  assert.equal(await connectWith('bad'), 'ERROR: Authentication error');
  assert.equal(await connectWith('bad'), 'ERROR: Authentication error');
  assert.equal(await connectWith('site-a-token'), 'ERROR: Too many failed attempts');
  // Another visitor behind the same proxy is not blocked.
  const other = await rawWebSocket(url, 'site-a-token', { origin: 'https://a.example', 'x-forwarded-for': '203.0.113.10' });
  t.after(() => other.ws.terminate());
});

// --- 3. Claimed limits --------------------------------------------------------

test('on a plan that limits bitrate and resolution, a publish must state its stream; on an unlimited plan it need not', async (t) => {
  const file = accountsFile({
    plans: [{ id: 1, name: 'Limited', properties: LIMITED_PLAN }],
    accounts: [{ name: 'Limited Site', token: 'limited-token', planId: 1, properties: {} }],
  });
  const { url } = await withAccounts(startServer(t, { ACCOUNTS_FILE: file }));
  const limited = await connect(t, url, 'limited-token');
  const cases: [unknown[], string][] = [
    [['Studio', 'claims'], 'width, height, bitrate, frameRate, audioBitrate'],
    [['Studio', 'claims', {}], 'width, height, bitrate, frameRate, audioBitrate'],
    [['Studio', 'claims', { width: 640, height: 360, frameRate: 15, audioBitrate: 32 }], 'bitrate'],
    [['Studio', 'claims', { ...STREAM, bitrate: 0 }], 'bitrate'],
    [['Studio', 'claims', { width: 640, height: 360, bitrate: 500, framerate: 15 }], 'audioBitrate'],
  ];
  for (const [args, missing] of cases) {
    const refused = next<{ message: string }>(limited, 'publishError');
    limited.emit('publish', ...args);
    assert.equal((await refused).message, `Invalid publish: argument 2: ${missing} required by the plan`, JSON.stringify(args));
  }
  limited.emit('publish', 'Studio', 'claims', { width: 640, height: 360, bitrate: 500, framerate: 15, audioBitrate: 0 });
  await nextMessage(limited, 'peers');
  // The static token's plan is unlimited: nothing to state.
  const unlimited = await connect(t, url, TOKEN);
  unlimited.emit('publish', 'Studio', 'no-claims');
  await nextMessage(unlimited, 'peers');
});

// --- 4. Bursts ----------------------------------------------------------------

test('a burst of 90 candidates within the rate limit is delivered whole, in order', async (t) => {
  const { url } = await startServer(t);
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'burst' });
  const refused: unknown[] = [];
  broadcaster.on('messageError', (e: unknown) => refused.push(e));
  const last = next(player, 'message', (m) => m.n === 89);
  for (let n = 0; n < 90; n++)
    broadcaster.emit('messagePeer', { target: 'Viewer', type: 'candidate', n, candidate: { candidate: `candidate:${n}` } });
  await last;
  assert.deepEqual(
    player.messages.filter((m) => m.type === 'candidate').map((m) => m.n),
    Array.from({ length: 90 }, (_, n) => n),
  );
  assert.deepEqual(refused, []);
});

test('an event dropped because the registry fell behind gets an error event the client sees', async (t) => {
  // A registry that stalls findPeer until the test lets it go.
  const memory = createMemoryRegistry();
  let release = () => {};
  const stalled = new Promise<void>((resolve) => (release = resolve));
  let stalling = false;
  const registry: ChannelRegistry = {
    ...memory,
    findPeer: async (...args) => {
      if (stalling) await stalled;
      return memory.findPeer(...args);
    },
  };
  const { url } = await startServer(t, { RATE_EVENTS_PER_SECOND: '10' }, { registry });
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'stalled' });
  stalling = true;
  // The server's clock moves 100 ms at each reading: the rate limit never
  // refuses, so only the queue (2 x 10 events) stands in the way.
  const clock = performance.now.bind(performance);
  let reads = 0;
  t.mock.method(performance, 'now', () => clock() + 100 * ++reads);
  const dropped = next<{ message: string }>(broadcaster, 'messageError');
  for (let n = 0; n < 21; n++) broadcaster.emit('messagePeer', { target: 'Viewer', type: 'candidate', n });
  assert.equal((await dropped).message, 'ERROR: Too many events waiting, event dropped');
  t.mock.restoreAll();
  release();
  const last = next(player, 'message', (m) => m.n === 19);
  await last;
  assert.deepEqual(
    player.messages.filter((m) => m.type === 'candidate').map((m) => m.n),
    Array.from({ length: 20 }, (_, n) => n),
  );
});

// --- 6. Names in code points --------------------------------------------------

test('a peer named with 65 emoji (130 UTF-16 units, 65 characters) registers and can be messaged; 129 emoji cannot', async (t) => {
  const { url } = await startServer(t);
  const viewer = '\u{1F3A5}'.repeat(65);
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'emoji', player: viewer });
  const offer = next(player, 'message', (m) => m.type === 'offer');
  broadcaster.emit('messagePeer', { target: viewer, type: 'offer', content: { type: 'offer', sdp: 'v=0' } });
  assert.equal((await offer).from, 'Studio');

  const tooLong = '\u{1F3A5}'.repeat(129);
  const refused = next<{ message: string }>(player, 'subscribeError');
  player.emit('subscribe', tooLong, 'emoji');
  assert.match((await refused).message, /^Invalid subscribe/);
});

// --- 7. Smaller ---------------------------------------------------------------

test('the REST API refuses an address that keeps guessing keys, whatever key it sends next; other addresses go on', async (t) => {
  const { url } = await startServer(t, { RATE_FAILED_AUTH_PER_MINUTE: '5', TRUST_PROXY: 'loopback' });
  for (let i = 0; i < 5; i++) assert.equal((await get(url, `/stats?apikey=guess-${i}`)).status, 401);
  const blocked = await get(url, '/stats?apikey=guess-6');
  assert.equal(blocked.status, 429);
  assert.equal(blocked.text, 'Too many failed attempts');
  assert.equal((await get(url, `/stats?apikey=${API_KEY}`)).status, 429, 'the right key gains nothing once blocked');
  // Another client behind the trusted proxy is not blocked.
  assert.equal((await get(url, `/stats?apikey=${API_KEY}`, { 'x-forwarded-for': '203.0.113.7' })).status, 200);
  // Keys that pass are never counted.
  for (let i = 0; i < 10; i++) assert.equal((await get(url, `/stats?apikey=${API_KEY}`, { 'x-forwarded-for': '203.0.113.8' })).status, 200);
});

test('peers cannot relay the server-only `peers` and `peer` messages (a forged peerConfig)', async (t) => {
  const { url } = await startServer(t);
  const { broadcaster, player } = await broadcastAndWatch(t, url, TOKEN, { channel: 'forged' });
  const forged = { iceServers: [{ urls: 'turn:evil.example:3478', username: 'x', credential: 'y' }] };
  for (const [event, type] of [
    ['messagePeer', 'peers'],
    ['messagePeer', 'peer'],
    ['message', 'peers'],
  ] as const) {
    const refused = next<{ message: string; to: string }>(player, 'messageError');
    player.emit(event, { target: 'Studio', type, peerConfig: forged, peers: [] });
    const error = await refused;
    assert.equal(error.message, `Invalid message: type ${type} is sent by the server only`);
    assert.equal(error.to, 'Viewer');
  }
  // Nothing reached the broadcaster; an honest message still does.
  const honest = next(broadcaster, 'message', (m) => m.type === 'answer');
  player.emit('messagePeer', { target: 'Studio', type: 'answer' });
  await honest;
  assert.deepEqual(
    broadcaster.messages.filter((m) => m.type === 'peers' && m.from !== '_channel_'),
    [],
  );
});

test('a flood of dropped events writes a few log lines a second, and counts the rest', async (t) => {
  const { url, logs } = await startServer(t, { RATE_EVENTS_PER_SECOND: '1000' });
  const socket = await connect(t, url, TOKEN);
  for (let i = 0; i < 500; i++) socket.emit('messagePeer', { target: 'nobody', type: 'candidate' });
  // Events are handled in order: the answer to this publish comes after all 500.
  socket.emit('publish', 'Studio', 'after-flood', STREAM);
  await nextMessage(socket, 'peers');
  const lines = logs.filter((l) => l.msg === 'messagePeer dropped: sender is in no channel');
  t.diagnostic(`${lines.length} log lines for 500 dropped events`);
  assert.ok(lines.length >= 1 && lines.length <= 5, `${lines.length} lines`);
  // A second later (on the server's clock) the socket's next line says how many were left out.
  const clock = performance.now.bind(performance);
  t.mock.method(performance, 'now', () => clock() + 1100);
  socket.emit('messagePeer', { target: 'nobody', type: 'candidate' });
  socket.emit('publish', 'Studio', 'after-flood', STREAM);
  await nextMessage(socket, 'peers');
  const counted = logs.find((l) => l.msg === 'messagePeer dropped: no such peer in the channel');
  assert.equal(counted?.unlogged, 500 - lines.length);
});
