// Accounts and plans managed over REST, against a real MariaDB: a plan and
// an account created and usable at once, a token shown once and never
// listed, bad input refused with nothing written, a token rotation that
// disconnects nobody, suspension, deletion; and the same on an accounts file.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { AccountView, PlanView } from '../src/accounts/manage';
import { send, type ApiResponse } from './helpers/api';
import { connect, next, nextMessage, refusal, STREAM } from './helpers/client';
import { testDatabase, type TestDatabase } from './helpers/mysql';
import { API_KEY, startServer } from './helpers/server';

const timely = { timeout: 30_000 };
const keyed = { 'X-API-Key': API_KEY };

function client(url: string) {
  const call = (method: string, path: string, body?: unknown) => send(url, method, path, body, keyed);
  return {
    call,
    async ok<T>(method: string, path: string, body?: unknown, status = 200): Promise<T> {
      const response = await call(method, path, body);
      assert.equal(response.status, status, `${method} ${path}: ${response.text}`);
      return response.json<T>();
    },
  };
}

async function serverOn(t: TestContext, db: TestDatabase) {
  const server = await startServer(t, { ...db.env, STATIC_TOKEN: '' });
  await server.server.accounts.reload();
  return { ...server, api: client(server.url) };
}

const rows = async (db: TestDatabase, table: 'accounts' | 'plans') =>
  (await db.query(`SELECT * FROM ${table} ORDER BY id`)) as Record<string, unknown>[];

const refusedWith = (response: ApiResponse, status: number, pattern: RegExp) => {
  assert.equal(response.status, status, response.text);
  assert.match(response.json<{ error: string }>().error, pattern);
};

test('a plan and an account made over REST work at once; the token is shown once and never listed', timely, async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  const { url, api } = await serverOn(t, db);
  const plan = await api.ok<PlanView>('POST', '/plans', { name: 'Small', properties: { connections: 2, width: 640, height: 360 } }, 201);
  assert.deepEqual(plan, { id: plan.id, name: 'Small', properties: { connections: 2, width: 640, height: 360 }, accounts: 0 });
  const created = await api.ok<AccountView & { token: string }>(
    'POST',
    '/accounts',
    { name: 'Site A', planId: plan.id, properties: { webhookURL: 'https://site-a.example/hooks', contact: 'ops@site-a.example' } },
    201,
  );
  // 24 random bytes: 192 bits.
  assert.match(created.token, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(created.suspended, false);

  const socket = await connect(t, url, created.token);
  socket.emit('publish', 'Studio', 'lobby', { ...STREAM, width: 1280 });
  assert.equal((await next(socket, 'publishError')).message, 'Unfit: width.', 'the plan applies at once');

  const listing = await api.call('GET', '/accounts');
  assert.equal(listing.status, 200);
  assert.ok(!listing.text.includes(created.token), 'no token in the list');
  assert.deepEqual(listing.json(), [{ id: created.id, name: 'Site A', planId: plan.id, suspended: false, properties: created.properties }]);
  const one = await api.call('GET', `/accounts/${created.id}`);
  assert.ok(!one.text.includes(created.token), 'no token in the account');
  assert.equal((await api.ok<PlanView[]>('GET', '/plans'))[0]?.accounts, 1);
  const [row] = await rows(db, 'accounts');
  assert.equal(row?.token, created.token);
  assert.deepEqual(JSON.parse(String(row?.properties)), created.properties);
});

test('bad plans and accounts are refused with a clear 400 and nothing written', timely, async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  const planId = await db.addPlan('Kept', { width: 640 });
  await db.addAccount('Kept Site', 'keptToken', {}, planId);
  const { url, api } = await serverOn(t, db);
  for (const [method, path] of [
    ['GET', '/accounts'],
    ['POST', '/plans'],
    ['DELETE', '/accounts/1'],
  ] as const)
    assert.equal((await send(url, method, path, method === 'POST' ? {} : undefined)).status, 401, `${method} ${path} without the API key`);
  const before = { plans: await rows(db, 'plans'), accounts: await rows(db, 'accounts') };

  refusedWith(await api.call('POST', '/plans', { name: 'Bad', properties: { width: -1 } }), 400, /^Invalid plan: width: .*>=0/);
  refusedWith(await api.call('POST', '/plans', { name: 'Bad', properties: { bitrate: 'fast' } }), 400, /^Invalid plan: bitrate/);
  refusedWith(await api.call('POST', '/plans', { properties: {} }), 400, /^Invalid plan: name/);
  refusedWith(await api.call('PATCH', `/plans/${planId}`, { properties: { height: -360 } }), 400, /^Invalid plan: height/);
  refusedWith(await api.call('POST', '/accounts', { name: 'No Plan', planId: 999 }), 400, /plan 999 does not exist/);
  refusedWith(
    await api.call('POST', '/accounts', { name: 'Bad Hook', properties: { webhookURL: 'javascript:alert(1)' } }),
    400,
    /webhookURL/,
  );
  refusedWith(await api.call('POST', '/accounts', { name: 'Kept Site' }), 409, /exists/);
  refusedWith(await api.call('POST', '/accounts', { name: 'Typo', plan: 1 }), 400, /Unrecognized key/);
  refusedWith(await api.call('PATCH', '/accounts/1', { planId: 999, name: 'Renamed' }), 400, /plan 999 does not exist/);
  refusedWith(await api.call('DELETE', `/plans/${planId}`), 409, /used by 1 account/);
  refusedWith(await api.call('PATCH', '/accounts/nope', {}), 404, /No such id/);
  refusedWith(await api.call('POST', '/plans', '{not json'), 400, /not JSON/);

  assert.deepEqual({ plans: await rows(db, 'plans'), accounts: await rows(db, 'accounts') }, before);
});

test('a token rotation disconnects nobody and refuses the old token at the next connect', timely, async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  const accountId = await db.addAccount('Site A', 'oldToken', {}, null);
  const { url, api } = await serverOn(t, db);
  const broadcaster = await connect(t, url, 'oldToken');
  broadcaster.emit('publish', 'Studio', 'lobby', STREAM);
  await nextMessage(broadcaster, 'peers');
  let disconnected = false;
  broadcaster.on('disconnect', () => (disconnected = true));

  const rotated = await api.ok<AccountView & { token: string }>('PATCH', `/accounts/${accountId}`, { rotateToken: true });
  assert.match(rotated.token, /^[A-Za-z0-9_-]{32}$/);
  assert.notEqual(rotated.token, 'oldToken');
  assert.equal(await refusal(url, { token: 'oldToken' }), 'ERROR: Authentication error');

  // The broadcaster, connected with the old token, still works: a viewer with the new one reaches it.
  const viewer = await connect(t, url, rotated.token);
  viewer.emit('subscribe', 'Viewer', 'lobby');
  await next(broadcaster, 'message', (m) => m.type === 'peer' && m.peerID === 'Viewer');
  assert.equal(disconnected, false);
  assert.ok(broadcaster.connected);
  assert.ok(!(await api.call('GET', '/accounts')).text.includes(rotated.token));
});

test('suspending, changing the plan and deleting over REST apply to the next connection', timely, async (t) => {
  const db = await testDatabase(t);
  if (!db) return;
  const small = await db.addPlan('One connection', { connections: 1 });
  const accountId = await db.addAccount('Site A', 'siteToken', {}, null);
  const { url, api } = await serverOn(t, db);
  const first = await connect(t, url, 'siteToken');

  // Stored by hand with values the loader tolerates: suspending still works.
  await db.query('UPDATE accounts SET properties = ? WHERE id = ?', ['{"suspended":0,"webhookURL":"not a url"}', accountId]);
  await api.ok('PATCH', `/accounts/${accountId}`, { suspended: true });
  assert.equal(await refusal(url, { token: 'siteToken' }), 'ERROR: Suspended account');
  assert.ok(first.connected, 'a connected socket stays');
  const resumed = await api.ok<AccountView>('PATCH', `/accounts/${accountId}`, { suspended: false, planId: small });
  assert.deepEqual([resumed.suspended, resumed.planId], [false, small]);
  assert.equal(await refusal(url, { token: 'siteToken' }), 'ERROR: Connection limit exceeded');
  await api.ok('PATCH', `/plans/${small}`, { properties: { connections: 2 } });
  assert.equal(await refusal(url, { token: 'siteToken' }), 'connected');

  const response = await api.call('DELETE', `/accounts/${accountId}`);
  assert.equal(response.status, 204);
  assert.equal(await refusal(url, { token: 'siteToken' }), 'ERROR: Authentication error');
  assert.deepEqual(await rows(db, 'accounts'), []);
  assert.equal((await api.call('DELETE', `/plans/${small}`)).status, 204);
  assert.deepEqual(await rows(db, 'plans'), []);
});

test('with an accounts file, changes are written to the file and applied', timely, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vw-accounts-api-'));
  const file = join(dir, 'accounts.json');
  writeFileSync(file, JSON.stringify({ plans: [{ id: 1, name: 'Small', properties: { width: 640 } }], accounts: [] }));
  const server = await startServer(t, { ACCOUNTS_FILE: file, STATIC_TOKEN: '' });
  await server.server.accounts.reload();
  const api = client(server.url);
  const created = await api.ok<AccountView & { token: string }>('POST', '/accounts', { name: 'File Site', planId: 1 }, 201);
  assert.equal(await refusal(server.url, { token: created.token }), 'connected');
  refusedWith(await api.call('PATCH', '/plans/1', { properties: { width: 'wide' } }), 400, /Invalid plan: width/);
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { plans: unknown[]; accounts: { name: string; token: string }[] };
  assert.deepEqual(saved.plans, [{ id: 1, name: 'Small', properties: { width: 640 } }]);
  assert.deepEqual(
    saved.accounts.map((a) => [a.name, a.token]),
    [['File Site', created.token]],
  );
});
