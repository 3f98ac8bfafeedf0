// Signed access tokens: a site mints a JWT (HS256, its account token as the
// key) for one user, and the browser holds only that. Every way a token can
// be wrong is refused on connect; the rights it carries (channels, publish,
// subscribe) are held on publish and subscribe; the account token keeps
// working unchanged.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { SignJWT, type JWTPayload } from 'jose';
import { connect, next, nextMessage, refusal, STREAM, type Client } from './helpers/client';
import { startServer } from './helpers/server';

const TOKEN_A = 'token-of-site-a';
const TOKEN_B = 'token-of-site-b';

function accountsFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'vw-tokens-')), 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [],
      accounts: [
        { name: 'Site A', token: TOKEN_A, properties: {} },
        { name: 'Site B', token: TOKEN_B, properties: {} },
        { name: 'Site R', token: 'token-of-site-r', properties: { restrictPublish: 'prefix' } },
      ],
    }),
  );
  return file;
}

async function siteServer(t: TestContext, env: Record<string, string> = {}) {
  const file = accountsFile();
  const started = await startServer(t, { ACCOUNTS_FILE: file, STATIC_TOKEN: undefined, ...env });
  assert.equal((await started.server.accounts.reload()).outcome, 'reloaded');
  return { ...started, file };
}

const seconds = () => Math.floor(Date.now() / 1000);

/** A token as a site mints it: HS256, `iss` the account, `sub` the user, an hour to live unless the claims say otherwise. */
function mint(claims: JWTPayload & Record<string, unknown>, key: string, alg = 'HS256') {
  return new SignJWT({ iss: 'Site A', sub: 'alice', exp: seconds() + 3600, ...claims })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .sign(new TextEncoder().encode(key));
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function outcome(socket: Client, event: 'publish' | 'subscribe', peerID: string, channel: string, publisher?: Client) {
  const done = Promise.race([
    event === 'publish'
      ? nextMessage(socket, 'peers').then(() => 'peers')
      : publisher
        ? nextMessage(publisher, 'peer').then(() => 'peer')
        : new Promise<string>(() => undefined),
    next(socket, `${event}Error`).then((e) => String(e.message)),
    next(socket, 'uniquenessError').then((e) => String(e.message)),
  ]);
  if (event === 'publish') socket.emit('publish', peerID, channel, STREAM);
  else socket.emit('subscribe', peerID, channel);
  return done;
}

test('a valid signed token connects its user, who publishes only as itself; the account token still works', async (t) => {
  const { url } = await siteServer(t);
  const alice = await connect(t, url, await mint({}, TOKEN_A));
  assert.equal(await outcome(alice, 'publish', 'bob', 'show'), 'Authentication mismatch: alice != bob');
  assert.equal(await outcome(alice, 'publish', 'alice', 'show'), 'peers');
  const plain = await connect(t, url, TOKEN_A);
  assert.equal(await outcome(plain, 'subscribe', 'anyone', 'show', alice), 'peer');
  // A token of Site B is another account: its user does not see Site A's channel.
  const bob = await connect(t, url, await mint({ iss: 'Site B', sub: 'bob' }, TOKEN_B));
  const peers = nextMessage(bob, 'peers');
  bob.emit('publish', 'bob', 'show', STREAM);
  assert.deepEqual(
    ((await peers).peers as { peerID: string }[]).map((p) => p.peerID),
    ['bob'],
  );
});

test('every wrong token is refused on connect with a clear message', async (t) => {
  const { url, logs } = await siteServer(t);
  const now = seconds();
  const valid = await mint({}, TOKEN_A);
  const [header, , signature] = valid.split('.');
  const cases: [string, string | Promise<string>, string][] = [
    ['expired', mint({ exp: now - 3600 }, TOKEN_A), 'ERROR: Token expired'],
    ['not yet valid', mint({ nbf: now + 3600 }, TOKEN_A), 'ERROR: Token not yet valid'],
    ['wrong key', mint({}, 'not-the-token'), 'ERROR: Invalid token'],
    ["another account's key", mint({}, TOKEN_B), 'ERROR: Invalid token'],
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: 'Site A', sub: 'alice', exp: now + 3600 })}.`, 'ERROR: Invalid token'],
    ['HS512 with the right key (the algorithm is pinned)', mint({}, TOKEN_A, 'HS512'), 'ERROR: Invalid token'],
    ['tampered claims', `${header}.${b64({ iss: 'Site A', sub: 'mallory', exp: now + 3600 })}.${signature}`, 'ERROR: Invalid token'],
    [
      'no exp',
      new SignJWT({ iss: 'Site A', sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(TOKEN_A)),
      'ERROR: Invalid token',
    ],
    ['no sub', mint({ sub: undefined }, TOKEN_A), 'ERROR: Invalid token'],
    ['exp beyond TOKEN_MAX_TTL_SECONDS', mint({ exp: now + 2 * 86400 }, TOKEN_A), 'ERROR: Token lifetime too long'],
    ['channels not a list of names', mint({ channels: 'show' }, TOKEN_A), 'ERROR: Invalid token'],
    ['unknown issuer', mint({ iss: 'Nobody' }, TOKEN_A), 'ERROR: Authentication error'],
    ['not a JWT', 'a.b', 'ERROR: Authentication error'],
  ];
  for (const [name, token, expected] of cases) assert.equal(await refusal(url, { token: await token }), expected, name);
  assert.equal(await refusal(url, { token: valid }), 'connected');
  // Production logs say why, without the token.
  assert.ok(logs.some((l) => l.msg === 'connection refused' && l.way === 'signed' && String(l.detail).includes('signature')));
  assert.ok(!JSON.stringify(logs).includes(signature as string));
});

test('TOKEN_MAX_TTL_SECONDS caps the lifetime a token may claim', async (t) => {
  const { url } = await siteServer(t, { TOKEN_MAX_TTL_SECONDS: '600' });
  assert.equal(await refusal(url, { token: await mint({ exp: seconds() + 3600 }, TOKEN_A) }), 'ERROR: Token lifetime too long');
  assert.equal(await refusal(url, { token: await mint({ exp: seconds() + 600 }, TOKEN_A) }), 'connected');
});

test('channels: a token publishes and subscribes only in its channels, exact names or prefix*', async (t) => {
  const { url } = await siteServer(t);
  const alice = await connect(t, url, await mint({ channels: ['lobby', 'show-*'] }, TOKEN_A));
  assert.equal(await outcome(alice, 'publish', 'alice', 'backstage'), "Not allowed: channel backstage is not in this sign-in's channels.");
  assert.equal(await outcome(alice, 'publish', 'alice', 'show-1'), 'peers');
  const host = await connect(t, url, TOKEN_A);
  assert.equal(await outcome(host, 'publish', 'host', 'backstage'), 'peers');
  const bob = await connect(t, url, await mint({ sub: 'bob', channels: ['lobby', 'show-*'] }, TOKEN_A));
  assert.equal(await outcome(bob, 'subscribe', 'bob', 'backstage'), "Not allowed: channel backstage is not in this sign-in's channels.");
  // The default channel is a channel like any other.
  assert.equal(await outcome(bob, 'subscribe', 'bob', ''), "Not allowed: channel VideoWhisper is not in this sign-in's channels.");
  assert.equal(await outcome(bob, 'subscribe', 'bob', 'show-1', alice), 'peer');
});

test('publish and subscribe rights: a viewer token cannot publish, a token without subscribe cannot watch', async (t) => {
  const { url } = await siteServer(t);
  const host = await connect(t, url, await mint({ sub: 'host' }, TOKEN_A));
  assert.equal(await outcome(host, 'publish', 'host', 'show'), 'peers');
  const viewer = await connect(t, url, await mint({ sub: 'viewer', publish: false }, TOKEN_A));
  assert.equal(await outcome(viewer, 'publish', 'viewer', 'other'), 'Not allowed: this sign-in may not publish.');
  assert.equal(await outcome(viewer, 'subscribe', 'viewer', 'show', host), 'peer');
  const sender = await connect(t, url, await mint({ sub: 'sender', subscribe: false }, TOKEN_A));
  assert.equal(await outcome(sender, 'subscribe', 'sender', 'show'), 'Not allowed: this sign-in may not subscribe.');
  assert.equal(await outcome(sender, 'publish', 'sender', 'sender-show'), 'peers');
});

test("restrictPublish holds a token's user when the token names no channels; channels decide when it does", async (t) => {
  const { url } = await siteServer(t);
  const key = 'token-of-site-r';
  const free = await connect(t, url, await mint({ iss: 'Site R' }, key));
  assert.equal(await outcome(free, 'publish', 'alice', 'lobby'), 'Unfit: nameRestricted.');
  assert.equal(await outcome(free, 'publish', 'alice', 'alice-live'), 'peers');
  const scoped = await connect(t, url, await mint({ iss: 'Site R', sub: 'bob', channels: ['lobby'] }, key));
  assert.equal(await outcome(scoped, 'publish', 'bob', 'lobby'), 'peers');
});

// Two npm processes, each compiling the script with tsx: seconds each on a busy machine.
test('npm run token prints a token the server accepts for that account and user', async (t) => {
  const { url, file } = await siteServer(t);
  const token = await new Promise<string>((resolve, reject) =>
    execFile(
      'npm',
      ['run', '-s', 'token', '--', '--account', 'Site A', '--user', 'carol', '--channel', 'show-*', '--ttl', '600'],
      {
        cwd: join(__dirname, '..'),
        env: { ...process.env, ACCOUNTS_FILE: file, STATIC_TOKEN: '', DB_HOST: '', DOTENV_CONFIG_PATH: '/nonexistent' },
      },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout.trim())),
    ),
  );
  const carol = await connect(t, url, token);
  assert.equal(await outcome(carol, 'publish', 'carol', 'lobby'), "Not allowed: channel lobby is not in this sign-in's channels.");
  assert.equal(await outcome(carol, 'publish', 'carol', 'show-9'), 'peers');
  const unknown = await new Promise<string>((resolve) =>
    execFile(
      'npm',
      ['run', '-s', 'token', '--', '--account', 'Nobody', '--user', 'x'],
      {
        cwd: join(__dirname, '..'),
        env: { ...process.env, ACCOUNTS_FILE: file, STATIC_TOKEN: '', DB_HOST: '', DOTENV_CONFIG_PATH: '/nonexistent' },
      },
      (err, _stdout, stderr) => resolve(`${err?.code} ${stderr.trim()}`),
    ),
  );
  assert.equal(unknown, '1 no account named "Nobody"');
});
