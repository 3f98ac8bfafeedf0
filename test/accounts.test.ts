// Accounts and plans from a real MariaDB: every plan limit with its exact
// `Unfit: ...` message, the connection limit under a burst, suspended
// accounts, reloads (rows added, changed, deleted, malformed, the database
// gone), accounts isolated from each other, per-account stats, and the
// db:setup command.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Manager, type Socket } from 'socket.io-client';
import type { AccountUsage } from '../src/channels/registry';
import type { Peer } from '../src/protocol';
import { get } from './helpers/api';
import { broadcastAndWatch, connect, connectClient, next, nextMessage, type Client } from './helpers/client';
import { privateMariadb, testDatabase, testServer, type TestDatabase } from './helpers/mysql';
import { API_KEY, startServer, TOKEN, type TestServer } from './helpers/server';
import { progressing, within } from './helpers/wait';
import { testCertificate } from './helpers/tls';

/** The sample plan's limits: width 640, height 360, bitrate 500, framerate 15, audioBitrate 32. */
const atLimits = { width: 640, height: 360, bitrate: 500, frameRate: 15, audioBitrate: 32 };
const samplePlan = { connections: 2, totalBitrate: 1064, bitrate: 500, framerate: 15, audioBitrate: 32, width: 640, height: 360 };
// Every step waits for an event with a timer; npm test gives each test a finite timeout.

// --- the story's plumbing -------------------------------------------------

/** A server on `db`, its accounts loaded. */
async function serverOn(t: TestContext, db: TestDatabase, env: Record<string, string> = {}): Promise<TestServer> {
  const started = await startServer(t, { ...db.env, NODE_ENV: 'production', ...env });
  const loaded = await started.server.accounts.reload();
  assert.equal(loaded.outcome, 'reloaded', `accounts load: ${JSON.stringify(loaded)}`);
  return started;
}

/** A server on a fresh database holding the sample rows. */
async function sampleServer(t: TestContext): Promise<TestServer | undefined> {
  const db = await testDatabase(t);
  if (!db) return undefined;
  await db.loadSample();
  return serverOn(t, db);
}

/**
 * A server where 'Open Site' (openToken) has the sample plan without its
 * connection limit, and three of its sockets, all connected while the account
 * uses nothing.
 */
async function openSite(t: TestContext): Promise<{ url: string; sockets: [Client, Client, Client] } | undefined> {
  const db = await testDatabase(t);
  if (!db) return undefined;
  const plan = await db.addPlan('Sample without a connection limit', { ...samplePlan, connections: 0 });
  await db.addAccount('Open Site', 'openToken', {}, plan);
  const { url } = await serverOn(t, db);
  const sockets = await Promise.all([connect(t, url, 'openToken'), connect(t, url, 'openToken'), connect(t, url, 'openToken')]);
  return { url, sockets };
}

const api = async <T>(url: string, path: string) => {
  const response = await get(url, `${path}?apikey=${API_KEY}`);
  assert.equal(response.status, 200, `${path}: ${response.text}`);
  return response.json<T>();
};
const updateAccounts = (url: string) => api<Record<string, unknown>>(url, '/update-accounts');
const statsOf = async (url: string, account: string) => new Map(await api<[string, AccountUsage][]>(url, '/stats')).get(account);
/** The refusal counters of the actions a plan limit can refuse. */
const refusals = (stats: AccountUsage | undefined) =>
  stats && { connect: stats.refused.connect, publish: stats.refused.publish, subscribe: stats.refused.subscribe };

/** The first value `settle` gives for an event on one of the sockets, within 10 s; listeners are removed after. */
function firstOf(listeners: [Socket, string, (payload: Record<string, unknown>) => string | undefined][]): Promise<string> {
  const offs: (() => void)[] = [];
  const first = new Promise<string>((resolve) => {
    for (const [socket, event, settle] of listeners) {
      const listener = (payload: Record<string, unknown>) => {
        const value = settle(payload);
        if (value !== undefined) resolve(value);
      };
      socket.on(event, listener);
      offs.push(() => socket.off(event, listener));
    }
  });
  const events = listeners.map(([, event]) => event).join(' or ');
  return within(first, `a settling ${events}`).finally(() => offs.forEach((off) => off()));
}

/** Publishes; 'published' once the peers list comes back, else the publishError message. */
function publish(socket: Client, peerID: string, channel: string, stream: Record<string, number>): Promise<string> {
  const reply = firstOf([
    [socket, 'message', (m) => (m.type === 'peers' && m.target === peerID ? 'published' : undefined)],
    [socket, 'publishError', (e) => String(e.message)],
  ]);
  socket.emit('publish', peerID, channel, stream);
  return reply;
}

/** Subscribes; 'subscribed' once the channel's broadcaster hears of it, else the subscribeError message. */
function subscribe(player: Client, peerID: string, channel: string, broadcaster: Client): Promise<string> {
  const reply = firstOf([
    [broadcaster, 'message', (m) => (m.type === 'peer' && m.peerID === peerID ? 'subscribed' : undefined)],
    [player, 'subscribeError', (e) => String(e.message)],
  ]);
  player.emit('subscribe', peerID, channel);
  return reply;
}

/** Publishes "Studio" in "lobby"; the peers list that comes back, as peerID@account. */
async function peersOf(socket: Client): Promise<string[]> {
  const reply = nextMessage(socket, 'peers');
  socket.emit('publish', 'Studio', 'lobby', atLimits);
  return ((await reply).peers as Peer[]).map((p) => `${p.peerID}@${p.account}`);
}

/** 'connected', or the connect_error message; the socket is closed after the test. */
async function tryConnect(t: TestContext, url: string, token: string): Promise<string> {
  const socket = connectClient(url, { token });
  t.after(() => socket.close());
  return firstOf([
    [socket, 'connect', () => 'connected'],
    [socket, 'connect_error', (err) => String(err.message)],
  ]);
}

/** Opens `count` WebSocket connections without connecting to the namespace yet: `connect()` then sends the token. */
async function openConnections(t: TestContext, url: string, token: string, count: number): Promise<Socket[]> {
  const managers = Array.from(
    { length: count },
    () => new Manager(url, { transports: ['websocket'], reconnection: false, autoConnect: false, ca: testCertificate().ca.toString() }),
  );
  t.after(() => managers.forEach((m) => m.engine?.close()));
  let settled = 0;
  const opened = Promise.all(
    managers.map((m) => new Promise<void>((resolve, reject) => m.open((err) => (settled++, err ? reject(err) : resolve())))),
  );
  // However slowly, as long as they keep opening; the first error fails at once.
  await Promise.race([opened, progressing('the connections open', count, () => settled)]);
  await opened;
  return managers.map((m) => m.socket('/', { auth: { token } }));
}

/** Polls until `probe` gives a value (a state change the server reports no event for). */
async function until<T>(what: string, probe: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Publishes a stream just under a limit, exactly at it, and one unit over it
 * on one socket of the sample account; the last is refused with `message`.
 */
async function checkLimit(t: TestContext, change: (by: number) => Record<string, number>, message: string) {
  const started = await sampleServer(t);
  if (!started) return;
  const broadcaster = await connect(t, started.url, 'testToken');
  assert.equal(await publish(broadcaster, 'Studio', 'show', change(-1)), 'published', 'just under the limit');
  assert.equal(await publish(broadcaster, 'Studio', 'show', change(0)), 'published', 'exactly at the limit');
  assert.equal(await publish(broadcaster, 'Studio', 'show', change(1)), message, 'one unit over the limit');
}

// --- per-stream limits ----------------------------------------------------

test('width: 640 fits the sample plan, 641 is refused with "Unfit: width."', (t) =>
  checkLimit(t, (by) => ({ ...atLimits, width: 640 + by }), 'Unfit: width.'));

test('height: 360 fits the sample plan, 361 is refused with "Unfit: height."', (t) =>
  checkLimit(t, (by) => ({ ...atLimits, height: 360 + by }), 'Unfit: height.'));

test('bitrate: 500 fits the sample plan, 501 is refused with "Unfit: bitrate."', (t) =>
  checkLimit(t, (by) => ({ ...atLimits, bitrate: 500 + by }), 'Unfit: bitrate.'));

test('frameRate: the sample plan spells framerate; 15 fits, 16 is refused with "Unfit: frameRate."', (t) =>
  checkLimit(t, (by) => ({ ...atLimits, frameRate: 15 + by }), 'Unfit: frameRate.'));

test('frameRate: a client that sends framerate in lower case is held to the same limit', (t) =>
  checkLimit(t, (by) => ({ width: 640, height: 360, bitrate: 500, audioBitrate: 32, framerate: 15 + by }), 'Unfit: frameRate.'));

test('audioBitrate: 32 fits the sample plan, 33 is refused with "Unfit: audioBitrate."', (t) =>
  checkLimit(t, (by) => ({ ...atLimits, audioBitrate: 32 + by }), 'Unfit: audioBitrate.'));

test('portrait: a 360x640 stream fits a 640x360 plan; 361 wide or 641 high is refused naming portrait', async (t) => {
  const started = await sampleServer(t);
  if (!started) return;
  const broadcaster = await connect(t, started.url, 'testToken');
  const portrait = { ...atLimits, width: 360, height: 640 };
  assert.equal(await publish(broadcaster, 'Studio', 'show', { ...portrait, width: 359, height: 639 }), 'published');
  assert.equal(await publish(broadcaster, 'Studio', 'show', portrait), 'published');
  assert.equal(await publish(broadcaster, 'Studio', 'show', { ...portrait, width: 361 }), 'Unfit: width, portrait.');
  assert.equal(await publish(broadcaster, 'Studio', 'show', { ...portrait, height: 641 }), 'Unfit: height, portrait.');
  assert.equal(await publish(broadcaster, 'Studio', 'show', { ...portrait, width: 361, height: 641 }), 'Unfit: width, height, portrait.');
  // Landscape over the width is not a portrait issue.
  assert.equal(await publish(broadcaster, 'Studio', 'show', { ...atLimits, width: 641 }), 'Unfit: width.');
});

test('a stream over every limit names each issue in order, and /stats counts them per limit', async (t) => {
  const started = await sampleServer(t);
  if (!started) return;
  const broadcaster = await connect(t, started.url, 'testToken');
  const over = { width: 641, height: 361, bitrate: 501, frameRate: 16, audioBitrate: 33 };
  assert.equal(await publish(broadcaster, 'Studio', 'show', over), 'Unfit: width, height, bitrate, frameRate, audioBitrate.');
  assert.equal(await publish(broadcaster, 'Studio', 'show', { ...atLimits, width: 641 }), 'Unfit: width.');
  const stats = await statsOf(started.url, 'Test Account');
  assert.deepEqual(stats?.issues, { width: 2, height: 1, bitrate: 1, frameRate: 1, audioBitrate: 1 });
  assert.deepEqual(refusals(stats), { connect: 0, publish: 2, subscribe: 0 });
  assert.equal(stats?.connections, 1);
  assert.equal(stats?.broadcasters, 0, 'a refused publish registers nothing');
});

// --- totalBitrate -----------------------------------------------------------

test('totalBitrate with the sample plan: 1064 fits one 500+32 stream and one player; a second player is refused', async (t) => {
  const started = await sampleServer(t);
  if (!started) return;
  const { url } = started;
  // The stream and its player fit: neither publish nor subscribe is refused.
  await broadcastAndWatch(t, url, 'testToken', { channel: 'show', stream: atLimits });
  const stats = await statsOf(url, 'Test Account');
  assert.equal(stats?.bitrate, 1000);
  assert.equal(stats?.audioBitrate, 64);
  assert.equal(stats?.connections, 2);
  assert.equal(stats?.broadcasters, 1);
  assert.equal(stats?.players, 1);
  // The sample plan's connections: 2 turns the second player away at the handshake.
  assert.equal(await tryConnect(t, url, 'testToken'), 'ERROR: Connection limit exceeded');
});

test('totalBitrate with connections unlimited: a second player\'s subscribe is refused with "Unfit: totalBitrate."', async (t) => {
  const site = await openSite(t);
  if (!site) return;
  const {
    url,
    sockets: [broadcaster, first, second],
  } = site;
  assert.equal(await publish(broadcaster, 'Studio', 'show', atLimits), 'published');
  assert.equal(await subscribe(first, 'Viewer1', 'show', broadcaster), 'subscribed');
  assert.equal(await subscribe(second, 'Viewer2', 'show', broadcaster), 'Unfit: totalBitrate.');
  const stats = await statsOf(url, 'Open Site');
  assert.equal(stats?.bitrate, 1000, 'the refused player adds nothing');
  assert.equal(stats?.audioBitrate, 64);
  assert.equal(stats?.players, 1);
  assert.deepEqual(refusals(stats), { connect: 0, publish: 0, subscribe: 1 });
  assert.equal(stats?.issues.totalBitrate, 1);
  // At the limit, one more socket is refused at the handshake.
  assert.equal(await tryConnect(t, url, 'openToken'), 'ERROR: Bitrate limit exceeded');
  // The first player leaving frees its share.
  const left = nextMessage(broadcaster, 'close');
  first.disconnect();
  await left;
  assert.equal(await subscribe(second, 'Viewer2', 'show', broadcaster), 'subscribed');
});

test("totalBitrate on publish: a stream that would push the channel's players over the limit is refused", async (t) => {
  const site = await openSite(t);
  if (!site) return;
  const {
    url,
    sockets: [broadcaster, first, second],
  } = site;
  // Players wait in the channel before the stream starts: they cost nothing yet.
  first.emit('subscribe', 'Viewer1', 'show');
  second.emit('subscribe', 'Viewer2', 'show');
  await until('both players registered', async () => (await statsOf(url, 'Open Site'))?.players === 2);
  // Three peers at 500+32 is 1596 > 1064; at 300+32 it is 996.
  assert.equal(await publish(broadcaster, 'Studio', 'show', atLimits), 'Unfit: totalBitrate.');
  assert.equal(await publish(broadcaster, 'Studio', 'show', { ...atLimits, bitrate: 300 }), 'published');
  const stats = await statsOf(url, 'Open Site');
  assert.equal(stats?.bitrate, 900);
  assert.equal(stats?.audioBitrate, 96);
  assert.deepEqual(refusals(stats), { connect: 0, publish: 1, subscribe: 0 });
});

// --- connections -------------------------------------------------------------

test('connections: a burst of 50 simultaneous connects against connections: 5 accepts exactly 5', async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  const plan = await db.addPlan('Five connections', { connections: 5 });
  await db.addAccount('Busy Site', 'busyToken', {}, plan);
  const { url } = await serverOn(t, db);

  // Fifty TLS WebSocket connections are opened first, so that all fifty
  // socket.io connects (the packets carrying the token) go out in one tick.
  const opening = performance.now();
  const sockets = await openConnections(t, url, 'busyToken', 50);
  const started = performance.now();
  for (const s of sockets) s.connect();
  const outcomes = await Promise.all(
    sockets.map((s) =>
      firstOf([
        [s, 'connect', () => 'connected'],
        [s, 'connect_error', (err) => String(err.message)],
      ]),
    ),
  );
  const elapsed = Math.round(performance.now() - started);
  const connected = sockets.filter((_, i) => outcomes[i] === 'connected');
  const refused = outcomes.filter((o) => o === 'ERROR: Connection limit exceeded');
  t.diagnostic(
    `burst of 50: ${connected.length} connected, ${refused.length} refused in ${elapsed} ms ` +
      `(after ${Math.round(started - opening)} ms opening the connections)`,
  );
  assert.equal(connected.length, 5);
  assert.equal(refused.length, 45, `every other socket is refused: ${JSON.stringify([...new Set(outcomes)])}`);

  const stats = await statsOf(url, 'Busy Site');
  assert.equal(stats?.connections, 5);
  assert.deepEqual(refusals(stats), { connect: 45, publish: 0, subscribe: 0 });
  assert.equal(stats?.issues.connections, 45);

  // Closing the five releases them: a new socket connects.
  for (const s of connected) s.close();
  await until('the five released', async () => (await statsOf(url, 'Busy Site'))?.connections === 0);
  assert.equal(await tryConnect(t, url, 'busyToken'), 'connected');
});

// --- suspended ---------------------------------------------------------------

test('a suspended account is refused with "ERROR: Suspended account"; others on its plan still connect', async (t) => {
  const started = await sampleServer(t);
  if (!started) return;
  assert.equal(await tryConnect(t, started.url, 'suspendedToken'), 'ERROR: Suspended account');
  assert.equal(await tryConnect(t, started.url, 'testToken'), 'connected');
  assert.equal(await tryConnect(t, started.url, TOKEN), 'connected', 'the static token works beside the accounts');
  const stats = await statsOf(started.url, 'Suspended Account');
  assert.deepEqual(refusals(stats), { connect: 1, publish: 0, subscribe: 0 });
  assert.equal(stats?.issues.suspended, 1);
  assert.equal(stats?.connections, 0);
});

// --- reloads -------------------------------------------------------------------

test('/update-accounts picks up an inserted account, a changed plan and a deleted account without restart', async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  await db.loadSample();
  const { url } = await serverOn(t, db);
  assert.equal(await tryConnect(t, url, 'newToken'), 'ERROR: Authentication error');

  const added = await db.addAccount('New Site', 'newToken', {}, 1);
  assert.deepEqual(await updateAccounts(url), { status: 'Updating Accounts', outcome: 'reloaded', accounts: 3, skipped: 0 });
  const newcomer = await connect(t, url, 'newToken');
  assert.equal(await publish(newcomer, 'Studio', 'show', atLimits), 'published');
  newcomer.close();

  await db.query('UPDATE plans SET properties = ? WHERE id = 1', [JSON.stringify({ ...samplePlan, width: 320, height: 180 })]);
  assert.equal((await updateAccounts(url)).outcome, 'reloaded');
  const narrowed = await connect(t, url, 'testToken');
  assert.equal(await publish(narrowed, 'Studio', 'show', atLimits), 'Unfit: width, height.');
  assert.equal(await publish(narrowed, 'Studio', 'show', { ...atLimits, width: 320, height: 180 }), 'published');

  await db.query('DELETE FROM accounts WHERE id = ?', [added]);
  assert.deepEqual(await updateAccounts(url), { status: 'Updating Accounts', outcome: 'reloaded', accounts: 2, skipped: 0 });
  assert.equal(await tryConnect(t, url, 'newToken'), 'ERROR: Authentication error');
});

test('a row with malformed JSON is skipped and logged; the other rows load', async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  await db.loadSample();
  await db.addAccount('Broken Site', 'brokenToken', '{"suspended": tru', 1);
  const brokenPlan = await db.addPlan('Broken Plan', '{"width": }');
  await db.addAccount('Site On Broken Plan', 'orphanToken', {}, brokenPlan);
  const { url, logs } = await serverOn(t, db);

  assert.deepEqual(await updateAccounts(url), { status: 'Updating Accounts', outcome: 'reloaded', accounts: 2, skipped: 3 });
  const skipped = logs.filter((l) => l.msg === 'account row skipped').map((l) => `${String(l.table)}:${String(l.row)}`);
  for (const row of ['accounts:Broken Site', 'plans:Broken Plan', 'accounts:Site On Broken Plan'])
    assert.ok(skipped.includes(row), `${row} is logged as skipped (logged: ${skipped.join(', ')})`);
  assert.equal(await tryConnect(t, url, 'brokenToken'), 'ERROR: Authentication error');
  assert.equal(await tryConnect(t, url, 'orphanToken'), 'ERROR: Authentication error', 'never unlimited for want of its plan');
  assert.equal(await tryConnect(t, url, 'testToken'), 'connected');
  assert.equal(await tryConnect(t, url, 'suspendedToken'), 'ERROR: Suspended account');
});

test('the database stopped during a reload: the accounts stay and the server keeps serving', async (t) => {
  const mariadb = await privateMariadb(t);
  if (!mariadb) return;
  const db = await testDatabase(t, mariadb);
  if (!db) return;
  await db.loadSample();
  const { url, logs } = await serverOn(t, db);
  const broadcaster = await connect(t, url, 'testToken');
  assert.equal(await publish(broadcaster, 'Studio', 'show', atLimits), 'published');

  await mariadb.stop();
  const asked = performance.now();
  const failed = await updateAccounts(url);
  t.diagnostic(`reload with the database stopped: ${String(failed.error)} (${Math.round(performance.now() - asked)} ms)`);
  assert.equal(failed.status, 'Updating Accounts');
  assert.equal(failed.outcome, 'failed');
  assert.equal(failed.accounts, 2, 'the last good accounts are kept');
  assert.equal(typeof failed.error, 'string');
  assert.ok(logs.some((l) => l.msg === 'accounts reload failed, keeping the last good accounts'));

  // Accounts, plans and live streams go on as before.
  const player = await connect(t, url, 'testToken');
  assert.equal(await subscribe(player, 'Viewer', 'show', broadcaster), 'subscribed');
  assert.equal(await tryConnect(t, url, 'testToken'), 'ERROR: Connection limit exceeded');
  assert.equal(await tryConnect(t, url, 'suspendedToken'), 'ERROR: Suspended account');
  assert.equal(await tryConnect(t, url, TOKEN), 'connected');
  assert.equal((await statsOf(url, 'Test Account'))?.bitrate, 1000);

  // Back again: the next reload reads the database.
  await mariadb.start();
  await db.addAccount('New Site', 'newToken', {}, 1);
  assert.equal((await updateAccounts(url)).outcome, 'reloaded');
  assert.equal(await tryConnect(t, url, 'newToken'), 'connected');
});

test('the server starts and serves the static token while the database is down, then loads the accounts by itself', async (t) => {
  const mariadb = await privateMariadb(t);
  if (!mariadb) return;
  const db = await testDatabase(t, mariadb);
  if (!db) return;
  await db.loadSample();
  await mariadb.stop();

  const { url, server, logs } = await startServer(t, { ...db.env, NODE_ENV: 'production' });
  assert.equal(await tryConnect(t, url, TOKEN), 'connected');
  // Not a wrong token: the accounts are not known yet, so the client is told to retry.
  assert.equal(await tryConnect(t, url, 'testToken'), 'ERROR: Server unavailable');
  const failed = await updateAccounts(url);
  assert.equal(failed.outcome, 'failed');
  assert.equal(failed.accounts, 0);

  // No request needed: the start-up load is retried with backoff.
  await mariadb.start();
  await until('accounts loaded by the retry', async () => server.accounts.count() === 2, 20_000);
  assert.ok(logs.filter((l) => l.msg === 'accounts reload failed, keeping the last good accounts').length >= 2);
  assert.equal(await tryConnect(t, url, 'testToken'), 'connected');
});

test('/ready answers 503 while the accounts have not loaded (no static token), and 200 once they have', async (t) => {
  const mariadb = await privateMariadb(t);
  if (!mariadb) return;
  const db = await testDatabase(t, mariadb);
  if (!db) return;
  await db.loadSample();
  await mariadb.stop();

  // Only the database's tokens: until they load, no client can get in.
  const { url, server } = await startServer(t, { ...db.env, NODE_ENV: 'production', STATIC_TOKEN: '' });
  const before = await get(url, '/ready');
  assert.equal(before.status, 503);
  assert.deepEqual(before.json(), { ready: false, checks: { accounts: false, running: true } });

  await mariadb.start();
  await until('accounts loaded by the retry', async () => server.accounts.count() === 2);
  const after = await get(url, '/ready');
  assert.equal(after.status, 200);
  assert.deepEqual(after.json(), { ready: true, checks: { accounts: true, running: true } });
});

test('a wrong database password: the reload fails, the response says so, and the static token still works', async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  await db.loadSample();
  const { url } = await startServer(t, { ...db.env, DB_PASSWORD: `${db.env.DB_PASSWORD}-wrong`, NODE_ENV: 'production' });
  const failed = await updateAccounts(url);
  assert.equal(failed.status, 'Updating Accounts');
  assert.equal(failed.outcome, 'failed');
  assert.equal(failed.accounts, 0);
  assert.match(String(failed.error), /Access denied/);
  assert.equal(await tryConnect(t, url, TOKEN), 'connected');
});

// --- isolation ---------------------------------------------------------------

test("two accounts using the same channel name never see each other's peers, messages or close events", async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  await db.addAccount('Site A', 'tokenA', {}, null);
  await db.addAccount('Site B', 'tokenB', {}, null);
  const { url } = await serverOn(t, db);
  const [studioA, viewerA, studioB, viewerB, studioStatic] = await Promise.all([
    connect(t, url, 'tokenA'),
    connect(t, url, 'tokenA'),
    connect(t, url, 'tokenB'),
    connect(t, url, 'tokenB'),
    connect(t, url, TOKEN),
  ]);

  // The same broadcaster name in the same channel, three times: no clash.
  assert.deepEqual(await peersOf(studioA), ['Studio@Site A']);
  assert.deepEqual(await peersOf(studioB), ['Studio@Site B']);
  assert.deepEqual(await peersOf(studioStatic), ['Studio@_static']);
  assert.equal(await subscribe(viewerA, 'ViewerA', 'lobby', studioA), 'subscribed');
  assert.equal(await subscribe(viewerB, 'ViewerB', 'lobby', studioB), 'subscribed');

  // Messages of A reach A only.
  const chat = next(studioA, 'message', (m) => m.type === 'chat');
  viewerA.emit('message', { type: 'chat', text: 'for A' });
  await chat;
  // Each viewer's answer to "Studio" reaches its own account's Studio.
  for (const [viewer, studio, name] of [
    [viewerA, studioA, 'ViewerA'],
    [viewerB, studioB, 'ViewerB'],
  ] as const) {
    const answer = nextMessage(studio, 'answer');
    viewer.emit('messagePeer', { target: 'Studio', type: 'answer', content: { type: 'answer', sdp: 'v=0' } });
    assert.equal((await answer).from, name);
  }

  // Each list shows the channel name as sent, once per account.
  const connections = await api<[string, Record<string, Peer>][]>(url, '/connections');
  const lobbies = connections.filter(([name]) => name === 'lobby').map(([, peers]) => Object.values(peers));
  assert.deepEqual(lobbies.map((peers) => peers.map((p) => `${p.peerID}@${p.account}`).sort()).sort(), [
    ['Studio@Site A', 'ViewerA@Site A'],
    ['Studio@Site B', 'ViewerB@Site B'],
    ['Studio@_static'],
  ]);
  const channels = await api<[string, { account: string; peers: number }][]>(url, '/channels');
  assert.deepEqual(
    channels
      .filter(([name]) => name === 'lobby')
      .map(([, c]) => `${c.account}:${c.peers}`)
      .sort(),
    ['Site A:2', 'Site B:2', '_static:1'],
  );
  const stats = new Map(await api<[string, AccountUsage][]>(url, '/stats'));
  for (const account of ['Site A', 'Site B']) {
    assert.equal(stats.get(account)?.connections, 2, account);
    assert.equal(stats.get(account)?.broadcasters, 1, account);
    assert.equal(stats.get(account)?.players, 1, account);
    assert.equal(stats.get(account)?.bitrate, 1000, account);
  }

  // A's broadcaster leaves: A's player hears it, B's does not.
  const closed = nextMessage(viewerA, 'close');
  studioA.disconnect();
  assert.equal(((await closed).payload as { message: string }).message, 'Studio left @lobby');
  // Anything meant for B's peers from A was sent before these markers.
  const markerB = next(studioB, 'message', (m) => m.type === 'marker');
  viewerB.emit('messagePeer', { target: 'Studio', type: 'marker' });
  await markerB;
  const markerViewerB = next(viewerB, 'message', (m) => m.type === 'marker');
  studioB.emit('messagePeer', { target: 'ViewerB', type: 'marker' });
  await markerViewerB;
  assert.deepEqual(
    studioB.messages.filter((m) => m.type !== 'peers').map((m) => `${String(m.type)}:${String(m.from)}`),
    ['peer:ViewerB', 'answer:ViewerB', 'marker:ViewerB'],
  );
  assert.deepEqual(
    studioA.messages.filter((m) => m.type !== 'peers').map((m) => `${String(m.type)}:${String(m.from)}`),
    ['peer:ViewerA', 'chat:ViewerA', 'answer:ViewerA'],
  );
  assert.deepEqual(
    viewerB.messages.map((m) => `${String(m.type)}:${String(m.from)}`),
    ['marker:Studio'],
  );
  assert.ok(!studioStatic.messages.some((m) => m.type !== 'peers'), 'the static account heard nothing');
});

test("two sites registered under the same account name are still isolated, and the static name stays the static token's", async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  await db.addAccount('My Site', 'firstToken', {}, null);
  await db.addAccount('My Site', 'secondToken', {}, null);
  await db.addAccount('_static', 'impostorToken', {}, null);
  const { url, logs } = await serverOn(t, db);
  const [first, second, impostor, staticSocket] = await Promise.all([
    connect(t, url, 'firstToken'),
    connect(t, url, 'secondToken'),
    connect(t, url, 'impostorToken'),
    connect(t, url, TOKEN),
  ]);
  // The first row keeps its name; a later row with a taken name gets its id.
  assert.deepEqual(await peersOf(first), ['Studio@My Site']);
  assert.deepEqual(await peersOf(second), ['Studio@My Site #2']);
  assert.deepEqual(await peersOf(staticSocket), ['Studio@_static']);
  assert.deepEqual(await peersOf(impostor), ['Studio@_static #3']);
  const stats = new Map(await api<[string, AccountUsage][]>(url, '/stats'));
  for (const name of ['My Site', 'My Site #2', '_static', '_static #3']) assert.equal(stats.get(name)?.connections, 1, name);
  assert.ok(logs.some((l) => l.msg === 'account name already taken, shown with its id' && l.shownAs === 'My Site #2'));
});

// --- npm run db:setup --------------------------------------------------------

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the db:setup command (from source) with only the given variables. */
function runSetup(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(__dirname, '..', 'src', 'accounts', 'setup.ts'), ...args],
      {
        cwd: join(__dirname, '..'),
        env: { PATH: process.env.PATH ?? '', NODE_ENV: 'development', DB_HOST: '', ...env },
        timeout: 120_000, // a hung process, not a slow one
      },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test('npm run db:setup creates the tables and sample rows, keeps rows on a second run, and fails in one line', async (t) => {
  const db = await testDatabase(t, testServer(), { create: false });
  if (!db) return;
  const [created, unset, unreachable] = await Promise.all([
    runSetup(['--sample'], db.env),
    runSetup([], {}),
    runSetup([], { ...db.env, DB_PORT: '1' }),
  ]);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(
    created.stdout,
    `Database ${db.env.DB_USER}@${db.env.DB_HOST}:${db.env.DB_PORT}/${db.name}: tables accounts and plans ready ` +
      '(database created, sample rows inserted); 2 accounts, 1 plan.\n',
  );
  assert.equal(unset.code, 1);
  assert.match(unset.stderr, /^Database setup failed: DB_HOST is not set .*\n$/);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /^Database setup failed: cannot reach .*:1\/vw_test_\w+ \(.*ECONNREFUSED.*\)\n$/);

  await db.query(`INSERT INTO ${db.name}.accounts (name, token, properties, planId) VALUES ('Mine', 'mine', '{}', 1)`);
  const again = await runSetup(['--sample'], db.env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /ready \(sample rows already present\); 3 accounts, 1 plan\.\n$/);

  const reset = await runSetup(['--reset'], db.env);
  assert.equal(reset.code, 0, reset.stderr);
  assert.match(reset.stdout, /ready \(old tables dropped\); 0 accounts, 0 plans\.\n$/);
});
