// The benchmark's quick modes, run once so they cannot rot: every scenario
// must still produce every figure. No timing is asserted; that is the bench's
// job. `npm run test:bench` runs this file (CI runs it after `npm test`): the
// quick runs take a minute or two each, more on a busy machine.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { CLUSTER_QUICK, clusterMetrics, metrics, QUICK, SCENARIOS, shardFigures, shardRatios, shardRows } from './profile';
import type { ShardsResult } from './shards';
import { testRedis } from '../test/helpers/redis';
import { within } from '../test/helpers/wait';

const root = resolve(__dirname, '..');

/** Runs `npm run bench -- ...args --out <tmp>.json`; resolves with its results and everything it printed. */
async function bench(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vw-bench-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'quick.json');

  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args, '--out', out], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGINT'));
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // Generous: the test is that every figure comes, however slowly.
  const code = await within(new Promise<number | null>((done) => child.once('exit', done)), 'the bench to finish', 15 * 60_000);
  assert.equal(code, 0, `the bench failed:\n${output}`);
  return { results: JSON.parse(readFileSync(out, 'utf8')) as Record<string, Record<string, unknown>>, output };
}

const isFinite = (value: unknown) => typeof value === 'number' && Number.isFinite(value);

test('npm run bench -- --quick produces every figure of every scenario', async (t) => {
  // --server-node with the bench's own Node: the option's path, not a second run.
  const { results: raw, output } = await bench(t, ['--quick', '--server-node', process.execPath]);
  const results = raw as Record<string, Record<string, Record<string, unknown>>>;
  const expected = metrics(QUICK);
  assert.deepEqual(Object.keys(results), SCENARIOS);
  for (const scenario of SCENARIOS) {
    assert.deepEqual(
      Object.keys(results[scenario] ?? {}),
      expected[scenario].map((m) => m.key),
      `${scenario}: the figures`,
    );
    for (const { key } of expected[scenario])
      for (const side of ['server', 'baseline', 'ratio']) {
        const value = results[scenario]?.[key]?.[side];
        assert.ok(isFinite(value), `${scenario}.${key}.${side} is ${String(value)}`);
      }
  }
  assert.match(output, /\| scenario +\| metric/, 'the table is printed');
  assert.ok(output.includes(`(this server on Node ${process.version})`), 'the header names the Node this server ran on');
});

test('npm run bench -- --cluster --quick produces every figure of every setup', async (t) => {
  // Without Redis: skipped loudly, or failed with CI=true.
  const redis = await testRedis(t);
  if (!redis) return;
  const { results, output } = await bench(t, ['--cluster', '--quick'], { BENCH_REDIS_URL: redis.url });
  const expected = clusterMetrics(CLUSTER_QUICK);
  assert.deepEqual(Object.keys(results), [...expected.map((m) => m.key), 'shards'], 'the figures');
  // Redis as the limit: every row and ratio; the rows under a CPU quota only where a cgroup can be made (root).
  const shards = results.shards as unknown as ShardsResult;
  const quotaPossible = shards.quota !== undefined;
  if (!quotaPossible) assert.match(shards.skipped ?? '', /./, 'says why there is no quota');
  const rows = shardRows(CLUSTER_QUICK.shards, quotaPossible);
  assert.deepEqual(
    Object.keys(shards.rows),
    rows.map((r) => r.id),
    'the shards rows',
  );
  for (const row of rows)
    for (const key of shardFigures(row))
      assert.ok(isFinite(shards.rows[row.id]?.[key]), `shards.${row.id}.${key} is ${String(shards.rows[row.id]?.[key])}`);
  for (const id of shardRatios(rows)) assert.ok(isFinite(shards.ratios[id]), `shards ratio ${id} is ${String(shards.ratios[id])}`);
  assert.match(output, /3 shards \/ 1 Redis, handshakes\/s:/, 'the shards table is printed');
  for (const { key, setups } of expected) {
    assert.deepEqual(Object.keys(results[key] ?? {}), setups, `${key}: the setups`);
    for (const setup of setups) assert.ok(isFinite(results[key]?.[setup]), `${key}.${setup} is ${String(results[key]?.[setup])}`);
  }
  assert.match(
    output,
    /\| metric +\| +one instance, in memory \| +one instance, Redis \| +two instances, Redis \|/,
    'the table is printed',
  );
});
