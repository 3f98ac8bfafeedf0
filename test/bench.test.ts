// The benchmark's quick mode, run once so it cannot rot: every scenario must
// still produce every figure. No timing is asserted; that is the bench's job.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { metrics, QUICK, SCENARIOS } from '../bench/profile';

const root = resolve(__dirname, '..');

test('npm run bench -- --quick produces every figure of every scenario', { timeout: 85_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vw-bench-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'quick.json');

  const bench = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick', '--out', out], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => bench.kill('SIGINT'));
  let output = '';
  bench.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  bench.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((done) => bench.once('exit', done));
  assert.equal(code, 0, `the bench failed:\n${output}`);

  const results = JSON.parse(readFileSync(out, 'utf8')) as Record<string, Record<string, Record<string, unknown>>>;
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
        assert.ok(typeof value === 'number' && Number.isFinite(value), `${scenario}.${key}.${side} is ${String(value)}`);
      }
  }
  assert.match(output, /\| scenario +\| metric/, 'the table is printed');
});
