// User/PIN sign-in through the site's own login URL: a real login service in
// a process of its own, accounts from a real MariaDB (or the static account),
// the answers a site gives (yes, no with a reason, an error, garbage,
// silence), the binding of a signed-in socket to its user, restrictPublish,
// EXTRA_SECURITY, the failed-attempt limit, and two instances on Redis.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { get } from './helpers/api';
import { connect, connectClient, next, nextMessage, refusal, STREAM, type Client } from './helpers/client';
import { startLoginService, PIN, type LoginService } from './helpers/login-service';
import { testDatabase } from './helpers/mysql';
import { testRedis, type TestRedis } from './helpers/redis';
import { API_KEY, startServer, TOKEN, type TestServer } from './helpers/server';

// Each test starts a login service process (tsx) besides its server: seconds on a busy machine.
const timely = { timeout: 30_000 };

/** Connects with user/PIN; resolves with the socket once admitted, fails with the server's reason. */
async function signIn(t: TestContext, url: string, auth: Record<string, unknown>): Promise<Client> {
  const socket = connectClient(url, auth);
  t.after(() => socket.close());
  await Promise.race([
    next(socket, 'connect'),
    next<Error>(socket, 'connect_error').then((err) => {
      throw new Error(`refused: ${err.message}`);
    }),
  ]);
  return socket;
}

/** Publishes; resolves with 'peers' or the publishError / uniquenessError message. */
async function publishOutcome(socket: Client, peerID: string, channel: string): Promise<string> {
  const outcome = Promise.race([
    nextMessage(socket, 'peers').then(() => 'peers'),
    next(socket, 'publishError').then((e) => String(e.message)),
    next(socket, 'uniquenessError').then((e) => String(e.message)),
  ]);
  socket.emit('publish', peerID, channel, STREAM);
  return outcome;
}

async function subscribeOutcome(socket: Client, peerID: string, channel: string, publisher?: Client): Promise<string> {
  const outcome = Promise.race([
    publisher ? nextMessage(publisher, 'peer').then(() => 'peer') : new Promise<string>(() => undefined),
    next(socket, 'subscribeError').then((e) => String(e.message)),
    next(socket, 'uniquenessError').then((e) => String(e.message)),
  ]);
  socket.emit('subscribe', peerID, channel);
  return outcome;
}

/** A server on a fresh MariaDB whose 'Site' row holds the login URL (token siteToken). */
async function siteOnDatabase(
  t: TestContext,
  login: LoginService,
  env: Record<string, string> = {},
  properties: Record<string, unknown> = {},
): Promise<TestServer | undefined> {
  const db = await testDatabase(t);
  if (!db) return undefined;
  const plan = await db.addPlan('Sample', { connections: 20, totalBitrate: 100000 });
  await db.addAccount('Site', 'siteToken', { loginURL: login.url, ...properties }, plan);
  await db.addAccount('Plain Site', 'plainToken', {}, plan);
  const started = await startServer(t, { ...db.env, ...env });
  const loaded = await started.server.accounts.reload();
  assert.equal(loaded.outcome, 'reloaded');
  return started;
}

test('user/PIN: the login URL gets account, token, user and pin as JSON; its yes admits, its no refuses with its reason', timely, async (t) => {
  const login = await startLoginService(t, 'siteToken');
  const started = await siteOnDatabase(t, login);
  if (!started) return;
  const { url } = started;

  const alice = await signIn(t, url, { account: 'Site', user: 'alice', pin: PIN });
  assert.ok(alice.connected);
  assert.deepEqual(login.requests.at(-1), {
    method: 'POST',
    type: 'application/json',
    request: { account: 'Site', token: 'siteToken', user: 'alice', pin: PIN },
  });

  assert.equal(await refusal(url, { account: 'Site', user: 'alice', pin: '9999' }), 'ERROR: Wrong PIN for alice');
  assert.equal(await refusal(url, { account: 'Nowhere', user: 'alice', pin: PIN }), 'ERROR: Account not found');
  assert.equal(
    await refusal(url, { account: 'Plain Site', user: 'alice', pin: PIN }),
    'ERROR: This account does not support user/pin authentication',
  );
  // Without a pin it is no sign-in at all.
  assert.equal(await refusal(url, { account: 'Site', user: 'alice' }), 'ERROR: Authentication error');
  // The account token works as before, beside sign-in.
  assert.ok((await connect(t, url, 'siteToken')).connected);
  // Production logs say who failed and why, and never carry the PIN.
  assert.ok(started.logs.some((l) => l.msg === 'connection refused' && l.way === 'login' && l.user === 'alice' && l.account === 'Site'));
  assert.ok(!JSON.stringify(started.logs).includes('9999'));
});

test('a signed-in socket publishes and subscribes only as its own user', timely, async (t) => {
  const login = await startLoginService(t, 'siteToken');
  const started = await siteOnDatabase(t, login);
  if (!started) return;
  const { url } = started;
  const alice = await signIn(t, url, { account: 'Site', user: 'alice', pin: PIN });
  const bob = await signIn(t, url, { account: 'Site', user: 'bob', pin: PIN });

  assert.equal(await publishOutcome(alice, 'bob', 'show'), 'Authentication mismatch: alice != bob');
  assert.equal(await publishOutcome(alice, 'alice', 'show'), 'peers');
  assert.equal(await subscribeOutcome(bob, 'alice', 'show'), 'Authentication mismatch: bob != alice');
  assert.equal(await subscribeOutcome(bob, 'bob', 'show', alice), 'peer');
  const refused = next(bob, 'subscribeError');
  bob.emit('subscribe', 'carol', 'show');
  assert.deepEqual(await refused, { from: '_server_', to: 'carol', message: 'Authentication mismatch: bob != carol' });
});

test('a login URL that fails: 500, garbage, 1 MB or silence is "ERROR: Login service unavailable", in bounded time', timely, async (t) => {
  const login = await startLoginService(t, 'siteToken');
  const started = await siteOnDatabase(t, login, { LOGIN_TIMEOUT_MS: '500' });
  if (!started) return;
  const { url } = started;
  for (const user of ['error500', 'garbage', 'huge', 'admin500'])
    assert.equal(await refusal(url, { account: 'Site', user, pin: PIN }), 'ERROR: Login service unavailable', user);
  // A site may refuse with an error status, and without a reason.
  assert.equal(await refusal(url, { account: 'Site', user: 'banned', pin: PIN }), 'ERROR: Banned');
  assert.equal(await refusal(url, { account: 'Site', user: 'quiet', pin: PIN }), 'ERROR: User authentication failed');

  const begun = performance.now();
  const silent = await Promise.all([1, 2, 3].map(() => refusal(url, { account: 'Site', user: 'silent', pin: PIN })));
  const took = performance.now() - begun;
  assert.deepEqual(silent, Array(3).fill('ERROR: Login service unavailable'));
  // Not before the deadline; never a hang (the test's own timeout bounds it).
  assert.ok(took >= 450, `refused after ${Math.round(took)} ms with LOGIN_TIMEOUT_MS=500`);
  // The server goes on: a good sign-in and the account token still work.
  assert.ok((await signIn(t, url, { account: 'Site', user: 'alice', pin: PIN })).connected);
  assert.ok((await connect(t, url, 'siteToken')).connected);
  assert.ok(started.logs.some((l) => l.msg === 'connection refused' && l.way === 'login' && String(l.detail).includes('500 ms')));
});

test('a login URL nobody listens on is "ERROR: Login service unavailable"', timely, async (t) => {
  const started = await startServer(t, { STATIC_ACCOUNT: 'My Site', STATIC_LOGIN: 'http://127.0.0.1:1/login' });
  assert.equal(await refusal(started.url, { account: 'My Site', user: 'alice', pin: PIN }), 'ERROR: Login service unavailable');
});

test('sign-ins beyond LOGIN_CONCURRENCY wait their turn, within the timeout', timely, async (t) => {
  const login = await startLoginService(t, TOKEN);
  const { url } = await startServer(t, {
    STATIC_ACCOUNT: 'My Site',
    STATIC_LOGIN: login.url,
    LOGIN_CONCURRENCY: '1',
    LOGIN_TIMEOUT_MS: '600',
  });
  // A silent sign-in holds the only slot until its 600 ms are up; the good
  // one behind it is asked only then, and admitted.
  const begun = performance.now();
  const silentAttempt = refusal(url, { account: 'My Site', user: 'silent', pin: PIN });
  await login.received('silent');
  const waiting = refusal(url, { account: 'My Site', user: 'alice', pin: PIN }).then((outcome) => ({
    outcome,
    after: performance.now() - begun,
  }));
  assert.equal(await silentAttempt, 'ERROR: Login service unavailable');
  const { outcome, after } = await waiting;
  assert.equal(outcome, 'connected');
  assert.ok(after >= 590, `admitted ${Math.round(after)} ms after the silent sign-in began`);
  assert.deepEqual(
    login.requests.map((r) => r.request.user),
    ['silent', 'alice'],
  );
  // Many at once, one at a time: all admitted.
  const burst = await Promise.all(Array.from({ length: 5 }, (_, i) => refusal(url, { account: 'My Site', user: `u${i}`, pin: PIN })));
  assert.deepEqual(burst, Array(5).fill('connected'));
});

test('the static account: STATIC_ACCOUNT names it, STATIC_LOGIN is its login URL, STATIC_TOKEN is sent as its token', timely, async (t) => {
  const login = await startLoginService(t, TOKEN);
  const { url } = await startServer(t, { STATIC_ACCOUNT: 'My Site', STATIC_LOGIN: login.url });
  const alice = await signIn(t, url, { account: 'My Site', user: 'alice', pin: PIN });
  assert.deepEqual(login.requests.at(-1)?.request, { account: 'My Site', token: TOKEN, user: 'alice', pin: PIN });
  assert.equal(await publishOutcome(alice, 'alice', 'lobby'), 'peers');
  // The static token, as before, belongs to the same account.
  const viewer = await connect(t, url, TOKEN);
  assert.equal(await subscribeOutcome(viewer, 'anyone', 'lobby', alice), 'peer');
  const stats = (await get(url, `/stats?apikey=${API_KEY}`)).json<[string, { players: number; broadcasters: number }][]>();
  assert.deepEqual(
    stats.map(([name, s]) => [name, s.broadcasters, s.players]),
    [['My Site', 1, 1]],
  );
  assert.equal(await refusal(url, { account: 'My Site', user: 'alice', pin: '0000' }), 'ERROR: Wrong PIN for alice');
  // The static token wins over user/PIN fields sent beside it, as in the original.
  assert.equal(await refusal(url, { token: TOKEN, account: 'My Site', user: 'alice', pin: '0000' }), 'connected');
});

test('EXTRA_SECURITY in production: every refused sign-in says only "ERROR: Authentication failed"', timely, async (t) => {
  const login = await startLoginService(t, TOKEN);
  const env = { STATIC_ACCOUNT: 'My Site', STATIC_LOGIN: login.url, EXTRA_SECURITY: 'true' };
  const { url } = await startServer(t, env);
  for (const auth of [
    { account: 'My Site', user: 'alice', pin: '0000' },
    { account: 'Nowhere', user: 'alice', pin: PIN },
    { account: 'My Site', user: 'error500', pin: PIN },
    { token: 'eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJNeSBTaXRlIiwic3ViIjoiYSJ9.c2lnbmF0dXJl' },
  ])
    assert.equal(await refusal(url, auth), 'ERROR: Authentication failed', JSON.stringify(auth));
  assert.equal(await refusal(url, { account: 'My Site', user: 'alice', pin: PIN }), 'connected');
  // The account token's own refusals keep the client's strings.
  assert.equal(await refusal(url, { token: 'wrong' }), 'ERROR: Authentication error');
  // In development mode the details stay.
  const dev = await startServer(t, { ...env, NODE_ENV: 'development' });
  assert.equal(await refusal(dev.url, { account: 'My Site', user: 'alice', pin: '0000' }), 'ERROR: Wrong PIN for alice');
});

test('failed sign-ins count toward the per-address failed-attempt limit', timely, async (t) => {
  const login = await startLoginService(t, TOKEN);
  const { url } = await startServer(t, { STATIC_ACCOUNT: 'My Site', STATIC_LOGIN: login.url, RATE_FAILED_AUTH_PER_MINUTE: '3' });
  // An unavailable login service is no failed attempt.
  assert.equal(await refusal(url, { account: 'My Site', user: 'error500', pin: PIN }), 'ERROR: Login service unavailable');
  for (const pin of ['1', '2', '3'])
    assert.equal(await refusal(url, { account: 'My Site', user: 'alice', pin }), 'ERROR: Wrong PIN for alice');
  assert.equal(await refusal(url, { account: 'My Site', user: 'alice', pin: PIN }), 'ERROR: Too many failed attempts');
  assert.equal(await refusal(url, { token: TOKEN }), 'ERROR: Too many failed attempts');
});

test('restrictPublish: each mode lets a signed-in user publish a fitting channel and refuses another with "Unfit: nameRestricted."', timely, async (t) => {
  const login = await startLoginService(t);
  const dir = mkdtempSync(join(tmpdir(), 'vw-restrict-'));
  const cases = [
    { mode: 'username', fits: 'alice', refused: 'lobby' },
    { mode: 'prefix', fits: 'alice-room', refused: 'room-alice' },
    { mode: 'suffix', fits: 'room-alice', refused: 'alice-room' },
    { mode: 'contain', fits: 'my-alice-room', refused: 'my-room' },
  ];
  const file = join(dir, 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [],
      accounts: cases.map(({ mode }) => ({
        name: `Site ${mode}`,
        token: `token-${mode}`,
        properties: { loginURL: login.url, restrictPublish: mode },
      })),
    }),
  );
  const { url } = await startServer(t, { ACCOUNTS_FILE: file, STATIC_TOKEN: undefined });
  for (const { mode, fits, refused } of cases) {
    const alice = await signIn(t, url, { account: `Site ${mode}`, user: 'alice', pin: PIN });
    assert.equal(await publishOutcome(alice, 'alice', refused), 'Unfit: nameRestricted.', `${mode}: ${refused}`);
    assert.equal(await publishOutcome(alice, 'alice', fits), 'peers', `${mode}: ${fits}`);
    // Anyone may watch: restrictPublish is about publishing.
    const bob = await signIn(t, url, { account: `Site ${mode}`, user: 'bob', pin: PIN });
    assert.equal(await subscribeOutcome(bob, 'bob', fits, alice), 'peer');
    alice.close();
    bob.close();
  }
  // With the account token (no signed-in user) the peerID is the name, as in the original.
  const plain = await connect(t, url, 'token-username');
  assert.equal(await publishOutcome(plain, 'carol', 'lobby'), 'Unfit: nameRestricted.');
  assert.equal(await publishOutcome(plain, 'carol', 'carol'), 'peers');
  // Counted per account in /stats, as the original's issues.
  const stats = new Map((await get(url, `/stats?apikey=${API_KEY}`)).json<[string, { issues: Record<string, number> }][]>());
  assert.equal(stats.get('Site username')?.issues.nameRestricted, 2);
  assert.equal(stats.get('Site prefix')?.issues.nameRestricted, 1);
});

/** One instance of a Redis cluster with the static account's login URL. */
async function instance(redis: TestRedis, login: LoginService) {
  const server = await startServer(undefined, {
    REDIS_URL: redis.url,
    REDIS_PREFIX: redis.prefix,
    STATIC_ACCOUNT: 'My Site',
    STATIC_LOGIN: login.url,
  });
  redis.onCleanup(() => server.close());
  const deadline = performance.now() + 10_000;
  while ((await get(server.url, '/ready')).status !== 200) {
    assert.ok(performance.now() < deadline, 'instance not ready within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return server;
}

test('two instances on Redis: a user signed in on one cannot have its name taken on the other', timely, async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const login = await startLoginService(t, TOKEN);
  const [one, two] = await Promise.all([instance(redis, login), instance(redis, login)]);

  const alice = await signIn(t, one.url, { account: 'My Site', user: 'alice', pin: PIN });
  assert.equal(await publishOutcome(alice, 'alice', 'alice-show'), 'peers');

  // Another user signed in on the other instance cannot use the name.
  const bob = await signIn(t, two.url, { account: 'My Site', user: 'bob', pin: PIN });
  assert.equal(await publishOutcome(bob, 'alice', 'alice-show'), 'Authentication mismatch: bob != alice');
  assert.equal(await subscribeOutcome(bob, 'alice', 'alice-show'), 'Authentication mismatch: bob != alice');
  // A second session of alice, or the account token, on the other instance: the name is taken.
  const again = await signIn(t, two.url, { account: 'My Site', user: 'alice', pin: PIN });
  assert.equal(await publishOutcome(again, 'alice', 'alice-show'), 'alice is already connected to @alice-show.');
  const plain = await connect(t, two.url, TOKEN);
  assert.equal(await subscribeOutcome(plain, 'alice', 'alice-show'), 'alice is already connected to @alice-show.');
  // Bob, as himself, watches alice across instances.
  assert.equal(await subscribeOutcome(bob, 'bob', 'alice-show', alice), 'peer');
});
