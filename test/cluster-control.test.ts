// What an operator asks of one instance and expects of the whole cluster:
// an account reload reaches every instance, a token guesser meets one limit
// whichever instance it reaches, and /metrics answers the same from any
// instance. Needs Redis on 127.0.0.1:6379.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { get } from './helpers/api';
import { refusal } from './helpers/client';
import { eventually } from './helpers/wait';
import { testRedis, type TestRedis } from './helpers/redis';
import { API_KEY, startServer, TOKEN, type TestServer } from './helpers/server';

/** Two instances on the test's Redis prefix, each aware of the other. */
async function twoInstances(redis: TestRedis, env: Record<string, string> = {}): Promise<[TestServer, TestServer]> {
  const start = async () => {
    const server = await startServer(undefined, { ...redis.env, ...env });
    redis.onCleanup(() => server.close());
    // As a load balancer would: no traffic before /ready says Redis answers.
    await eventually('the instance is ready', async () => (await get(server.url, '/ready')).status === 200);
    return server;
  };
  const pair: [TestServer, TestServer] = [await start(), await start()];
  for (const { server } of pair)
    await eventually('each instance knows the other', async () => (await server.io.of('/').adapter.serverCount()) === 2);
  return pair;
}

function accountsFile(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'vw-accounts-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'accounts.json');
  const write = (tokens: string[]) =>
    writeFileSync(
      file,
      JSON.stringify({
        plans: [{ id: 1, name: 'Plan', properties: {} }],
        accounts: tokens.map((token) => ({ name: token, token, planId: 1 })),
      }),
    );
  return { file, write };
}

test('/update-accounts on one instance reloads every instance, and says on how many it worked', async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const accounts = accountsFile(t);
  accounts.write(['first-token']);
  const [one, two] = await twoInstances(redis, { STATIC_TOKEN: '', ACCOUNTS_FILE: accounts.file });
  assert.equal(await refusal(two.url, { token: 'second-token' }), 'ERROR: Authentication error');

  accounts.write(['first-token', 'second-token']);
  const answer = await get(one.url, `/update-accounts?apikey=${API_KEY}`);
  assert.deepEqual(answer.json(), {
    status: 'Updating Accounts',
    outcome: 'reloaded',
    accounts: 2,
    skipped: 0,
    instances: { reloaded: 2, total: 2 },
  });
  assert.equal(await refusal(two.url, { token: 'second-token' }), 'connected', 'the other instance reloaded too');

  // SIGHUP (server.reloadAccounts) on the other instance reaches the first one.
  accounts.write(['third-token']);
  assert.deepEqual((await two.server.reloadAccounts()).instances, { reloaded: 2, total: 2 });
  assert.equal(await refusal(one.url, { token: 'third-token' }), 'connected');
  assert.equal(await refusal(one.url, { token: 'first-token' }), 'ERROR: Authentication error');
});

test('a reload that fails on one instance is reported as failed', async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const accounts = accountsFile(t);
  accounts.write(['first-token']);
  const broken = accountsFile(t);
  broken.write(['first-token']);
  const [one] = await twoInstances(redis, { STATIC_TOKEN: '', ACCOUNTS_FILE: accounts.file });
  const other = await startServer(undefined, { ...redis.env, STATIC_TOKEN: '', ACCOUNTS_FILE: broken.file });
  redis.onCleanup(() => other.close());
  await eventually('the third instance is ready', async () => (await get(other.url, '/ready')).status === 200);
  await eventually('three instances', async () => (await one.server.io.of('/').adapter.serverCount()) === 3);
  writeFileSync(broken.file, '{ not json');
  const result = (await get(one.url, `/update-accounts?apikey=${API_KEY}`)).json<Record<string, unknown>>();
  assert.equal(result.outcome, 'failed');
  assert.deepEqual(result.instances, { reloaded: 2, total: 3 });
  assert.equal(result.error, 'reloaded on 2 of 3 instances');
});

test('the failed-handshake limit is shared: guesses spread over instances meet one limit', async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const [one, two] = await twoInstances(redis, { RATE_FAILED_AUTH_PER_MINUTE: '4' });
  for (const server of [one, two, one, two]) assert.equal(await refusal(server.url, { token: 'guessed' }), 'ERROR: Authentication error');
  // Four failures in all, two on each: both instances now refuse this address.
  assert.equal(await refusal(one.url, { token: 'guessed' }), 'ERROR: Too many failed attempts');
  assert.equal(await refusal(two.url, { token: TOKEN }), 'ERROR: Too many failed attempts');
});

function series(text: string, name: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const at = line.lastIndexOf(' ');
    found.set(line.slice(name.length, at), Number(line.slice(at + 1)));
  }
  return found;
}

test('/metrics answers for every instance, whichever is scraped: each instance labelled, cluster gauges once', async (t) => {
  const redis = await testRedis(t);
  if (!redis) return;
  const [one, two] = await twoInstances(redis);
  assert.equal(await refusal(two.url, { token: 'wrong' }), 'ERROR: Authentication error');
  const scrape = async (server: TestServer) => (await get(server.url, `/metrics?apikey=${API_KEY}`)).text;
  const [fromOne, fromTwo] = [await scrape(one), await scrape(two)];
  for (const text of [fromOne, fromTwo]) {
    const refusals = series(text, 'videowhisper_refusals_total');
    const auth = [...refusals].filter(([labels]) => labels.includes('reason="auth"'));
    assert.equal(auth.length, 2, 'one series per instance');
    assert.deepEqual(auth.map(([, value]) => value).sort(), [0, 1], 'the refusal counted where it happened');
    assert.equal(new Set(auth.map(([labels]) => /instance="([^"]+)"/.exec(labels)?.[1])).size, 2);
    assert.deepEqual([...series(text, 'videowhisper_connections')], [['', 0]], 'cluster-wide: once, unlabelled');
    assert.equal(text.match(/^# TYPE videowhisper_refusals_total /gm)?.length, 1, 'one TYPE line per metric');
  }
  assert.deepEqual(series(fromOne, 'videowhisper_refusals_total'), series(fromTwo, 'videowhisper_refusals_total'));
});
