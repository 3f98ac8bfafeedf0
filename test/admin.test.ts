// The /admin console in Chromium: signing in with the API key, live numbers
// that match /stats while connections come and go, charts that fill, names
// shown as text, and an account suspended from the page refused at its next
// connection. Leaves a screenshot in test/artifacts/admin.png (docs/admin.png
// in the README is a copy).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { chromium, type Page } from 'playwright-core';
import { io } from 'socket.io-client';
import type { ActionResult, AdminAction, LiveView, Sample } from '../src/admin/client/view';
import { createMemoryRegistry } from '../src/channels/memory';
import type { AccountUsage, ChannelRegistry } from '../src/channels/registry';
import { get } from './helpers/api';
import { CHROMIUM, CHROMIUM_FLAGS } from './helpers/browser';
import { connect, nextMessage, refusal, STREAM, type Client } from './helpers/client';
import { testRedis } from './helpers/redis';
import { API_KEY, startServer, TOKEN } from './helpers/server';
import { requireService } from './helpers/skip';
import { testCertificate } from './helpers/tls';
import { eventually } from './helpers/wait';

const root = resolve(__dirname, '..');
const SITE_TOKEN = 'site-a-console-token-0123456789';

function buildAdminClient() {
  const tsc = join(dirname(require.resolve('@typescript/native/package.json')), 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'src/admin/tsconfig.json'], { cwd: root, stdio: 'inherit' });
  assert.ok(existsSync(join(root, 'dist', 'admin', 'public', 'admin.js')), 'the console script was built');
}

async function launch(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'vw-admin-chromium-'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    ignoreDefaultArgs: true,
    args: [...CHROMIUM_FLAGS, `--user-data-dir=${join(dir, 'profile')}`, '--remote-debugging-pipe', '--no-startup-window'],
    timeout: 20_000,
  });
  t.after(async () => {
    await browser.close();
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });
  return browser;
}

/** Site A's connections as /stats tells them. */
async function statsConnections(url: string, account: string) {
  const stats = new Map((await get(url, `/stats?apikey=${API_KEY}`)).json<[string, AccountUsage][]>());
  return stats.get(account)?.connections ?? 0;
}

const cellText = (page: Page, account: string) =>
  page
    .locator(`#accounts tr[data-account="${account}"] td.connections .value`)
    .textContent({ timeout: 1000 })
    .catch(() => null);

test('the console signs in, follows connections live, charts them, and suspends an account', { timeout: 90_000 }, async (t) => {
  if (!requireService(t, 'Chromium', existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed`, ['apt-get install chromium']))
    return;
  buildAdminClient();
  const dir = mkdtempSync(join(tmpdir(), 'vw-admin-'));
  const file = join(dir, 'accounts.json');
  writeFileSync(
    file,
    JSON.stringify({
      plans: [
        { id: 1, name: 'Five connections', properties: { connections: 5, totalBitrate: 4000 } },
        { id: 2, name: 'Large', properties: { connections: 100 } },
      ],
      accounts: [{ id: 1, name: 'Site A', token: SITE_TOKEN, planId: 1, properties: {} }],
    }),
  );
  const server = await startServer(t, { ACCOUNTS_FILE: file, ADMIN_SAMPLE_MS: '200' });
  await server.server.accounts.reload();
  const { url } = server;

  const browser = await launch(t);
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const cspViolations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
  });
  const response = await page.goto(`${url}/admin`);
  assert.equal(response?.status(), 200);
  assert.match(String(response?.headers()['content-security-policy']), /script-src 'self'/);
  assert.doesNotMatch(String(response?.headers()['content-security-policy']), /unsafe-inline/);

  // A wrong key is refused; the right one signs in.
  await page.fill('#key', 'not-the-key');
  await page.click('#sign-in button');
  await page.locator('#status', { hasText: 'Invalid API key' }).waitFor();
  await page.fill('#key', API_KEY);
  await page.click('#sign-in button');
  await page.locator('#status', { hasText: /^Live$/ }).waitFor();
  assert.ok(!page.url().includes(API_KEY), 'the key is not in the URL');
  const stored = await page.evaluate(() => {
    const storage = globalThis as unknown as { localStorage: { length: number }; sessionStorage: { length: number } };
    return storage.localStorage.length + storage.sessionStorage.length;
  });
  assert.equal(stored, 0, 'nothing kept in storage');

  // Connections come and go; the page follows /stats.
  const sockets: Client[] = [];
  for (const wanted of [2, 4, 1, 3]) {
    while (sockets.length < wanted) sockets.push(await connect(t, url, SITE_TOKEN));
    while (sockets.length > wanted) sockets.pop()?.close();
    let stats: number;
    const deadline = Date.now() + 10_000;
    for (;;) {
      stats = await statsConnections(url, 'Site A');
      if (stats === wanted && (await cellText(page, 'Site A')) === `${stats} / 5`) break;
      assert.ok(Date.now() < deadline, `page shows ${await cellText(page, 'Site A')}, /stats ${stats}, wanted ${wanted}`);
      await page.waitForTimeout(50);
    }
    assert.equal(await page.textContent('#total-connections'), String(stats));
  }

  // A peer named like HTML is shown as text.
  const trick = '<img src=x id=injected>';
  const [first] = sockets as [Client];
  first.emit('publish', trick, 'Main Stage', STREAM);
  await nextMessage(first, 'peers');
  await page.locator('#channels td', { hasText: trick }).first().waitFor();
  assert.equal(await page.locator('#injected').count(), 0);
  assert.match(String(await page.textContent('#channels')), /640×360 15 fps, 500\+32 kbps/);
  // A refused token shows among the refusals.
  assert.equal(await refusal(url, { token: 'wrong-token' }), 'ERROR: Authentication error');
  await page.waitForSelector('#refusals tr[data-reason="auth"]');

  // The charts have points.
  await page.waitForFunction(() => (globalThis as unknown as { admin: { points(): number } }).admin.points() >= 5);
  await page.waitForFunction(() => {
    const chart = (globalThis as unknown as { document: { getElementById(id: string): { dataset: Record<string, string> } | null } })
      .document;
    return Number(chart.getElementById('chart-usage')?.dataset.points) >= 5;
  });
  assert.ok((await page.locator('#chart-usage canvas').count()) > 0);

  // docs/admin.png is a copy of this one.
  mkdirSync(join(root, 'test', 'artifacts'), { recursive: true });
  await page.screenshot({ path: join(root, 'test', 'artifacts', 'admin.png'), fullPage: true });

  // Suspend Site A from the page: after the confirmation, its next connection is refused.
  await page.click('#accounts tr[data-account="Site A"] button[data-action="suspend"]');
  await page.waitForSelector('#confirm[open]');
  assert.match(String(await page.textContent('#confirm-text')), /Suspend the account "Site A"/);
  await page.click('#confirm-ok');
  await page.locator('#status', { hasText: /^Site A suspended$/ }).waitFor();
  assert.equal(await refusal(url, { token: SITE_TOKEN }), 'ERROR: Suspended account');
  assert.ok(first.connected, 'connected sockets stay');
  assert.ok(server.logs.some((l) => l.msg === 'admin action' && l.action === 'suspend' && l.account === 'Site A'));
  await page.waitForSelector('#accounts tr[data-account="Site A"] .suspended');
  assert.deepEqual(cspViolations, []);
});

test('ADMIN=false serves no console', async (t) => {
  const { url } = await startServer(t, { ADMIN: 'false' });
  assert.equal((await get(url, '/admin')).status, 404);
  assert.equal((await get(url, '/admin/admin.js')).status, 404);
});

test('the console namespace refuses a wrong key', async (t) => {
  const { url } = await startServer(t, {});
  const socket = io(`${url}/admin`, {
    auth: { key: 'wrong' },
    transports: ['websocket'],
    reconnection: false,
    ca: testCertificate().ca.toString(),
  });
  t.after(() => socket.close());
  const message = await new Promise<string>((resolve) => {
    socket.on('connect', () => resolve('connected'));
    socket.on('connect_error', (err) => resolve(err.message));
  });
  assert.equal(message, 'Invalid API key');
});

/** The console's namespace as the page joins it. */
async function consoleSocket(t: TestContext, url: string, key = API_KEY) {
  const socket = io(`${url}/admin`, { auth: { key }, transports: ['websocket'], reconnection: false, ca: testCertificate().ca.toString() });
  t.after(() => socket.close());
  const [history, view] = await new Promise<[Sample[], LiveView]>((resolve, reject) => {
    socket.once('history', (h: Sample[], v: LiveView) => resolve([h, v]));
    socket.once('connect_error', reject);
  });
  const act = (action: AdminAction) => socket.timeout(10_000).emitWithAck('action', action) as Promise<ActionResult>;
  /** The next pushed view that satisfies `check`. */
  const nextView = (check: (v: LiveView) => boolean) =>
    new Promise<LiveView>((resolve) => {
      const listener = (_s: Sample, v: LiveView) => {
        if (!check(v)) return;
        socket.off('sample', listener);
        resolve(v);
      };
      socket.on('sample', listener);
    });
  return { socket, history, view, act, nextView };
}

test(
  'console actions on two instances: instances with heartbeats, a peer disconnected on the other instance, plan and token changed',
  { timeout: 60_000 },
  async (t) => {
    const redis = await testRedis(t);
    if (!redis) return;
    const dir = mkdtempSync(join(tmpdir(), 'vw-admin-cluster-'));
    const file = join(dir, 'accounts.json');
    writeFileSync(
      file,
      JSON.stringify({
        plans: [
          { id: 1, name: 'Small', properties: { connections: 5 } },
          { id: 2, name: 'One', properties: { connections: 1 } },
        ],
        accounts: [{ id: 1, name: 'Site A', token: SITE_TOKEN, planId: 1, properties: {} }],
      }),
    );
    const env = {
      REDIS_URL: redis.url,
      REDIS_PREFIX: redis.prefix,
      CLUSTER_TIMEOUT_MS: '3000',
      ACCOUNTS_FILE: file,
      ADMIN_SAMPLE_MS: '200',
    };
    const one = await startServer(undefined, env);
    redis.onCleanup(() => one.close());
    const two = await startServer(undefined, env);
    redis.onCleanup(() => two.close());
    await Promise.all([one.server.accounts.reload(), two.server.accounts.reload()]);

    const admin = await consoleSocket(t, one.url);
    const both = await admin.nextView((v) => v.instances.length === 2);
    assert.equal(both.instances.filter((i) => i.self).length, 1);
    assert.ok(
      both.instances.every((i) => i.heartbeatAgeMs !== null && i.heartbeatAgeMs < 3000),
      JSON.stringify(both.instances),
    );

    // A peer on the other instance, disconnected from this one's console.
    const far = await connect(t, two.url, SITE_TOKEN);
    far.emit('publish', 'Far Studio', 'far', STREAM);
    await nextMessage(far, 'peers');
    const seen = await admin.nextView((v) => v.channels.some((c) => c.channel === 'far'));
    const peer = seen.channels.find((c) => c.channel === 'far')?.peers[0];
    assert.equal(peer?.peerID, 'Far Studio');
    const gone = new Promise<string>((resolve) => far.once('disconnect', resolve));
    assert.deepEqual(await admin.act({ action: 'disconnect', socketId: peer.socketId }), { ok: true });
    assert.equal(await gone, 'io server disconnect');

    // Plan change and token rotation, each logged.
    assert.deepEqual(await admin.act({ action: 'plan', id: 1, planId: 2 }), { ok: true });
    await connect(t, one.url, SITE_TOKEN);
    assert.equal(await refusal(one.url, { token: SITE_TOKEN }), 'ERROR: Connection limit exceeded');
    const rotated = await admin.act({ action: 'rotate', id: 1 });
    assert.ok(rotated.ok && rotated.token && rotated.token !== SITE_TOKEN);
    assert.equal(await refusal(one.url, { token: SITE_TOKEN }), 'ERROR: Authentication error');
    assert.deepEqual(
      one.logs.filter((l) => String(l.msg).startsWith('admin action')).map((l) => l.action),
      ['disconnect', 'plan', 'rotate'],
    );
    assert.ok(!JSON.stringify(one.logs).includes(String(rotated.token)), 'the new token is not logged');

    // Malformed actions are refused, not thrown.
    assert.deepEqual(await admin.act({ action: 'rotate', id: -1 } as AdminAction), { ok: false, error: 'Invalid action' });
    assert.deepEqual(await admin.act({ action: 'suspend', id: 99, suspended: true }), { ok: false, error: 'No account 99' });
  },
);

test('samples, scrapes and limit checks read the accounts’ usage; the channels’ peers only while a console is open', async (t) => {
  // The registry, counting its full reads.
  const memory = createMemoryRegistry();
  const calls = { usage: 0, snapshot: 0 };
  const registry: ChannelRegistry = {
    ...memory,
    usage: () => (calls.usage++, memory.usage()),
    snapshot: () => (calls.snapshot++, memory.snapshot()),
  };
  const { url } = await startServer(t, { ADMIN_SAMPLE_MS: '100', API_KEY }, { registry });
  const broadcaster = await connect(t, url, TOKEN);
  const peers = nextMessage(broadcaster, 'peers');
  broadcaster.emit('publish', 'Studio', 'sampled', STREAM);
  await peers;
  const sampled = calls.usage;
  await eventually('three more samples', () => calls.usage >= sampled + 3);
  assert.equal((await get(url, `/metrics?apikey=${API_KEY}`)).status, 200);
  assert.equal(calls.snapshot, 0, 'no full read while no console is open');

  const { history, view } = await consoleSocket(t, url);
  assert.ok(calls.snapshot >= 1, 'the console gets the channels');
  assert.deepEqual(view.totals, { connections: 1, channels: 1, peers: 1 });
  const last = history.at(-1);
  assert.equal(last?.channels, 1);
  assert.deepEqual(last?.accounts['_static']?.slice(0, 2), [1, 1]);
});
