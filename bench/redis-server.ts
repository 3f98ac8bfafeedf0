// A redis-server of the bench's own on a free loopback port, without
// persistence, so that a CPU quota on it touches no one else's Redis.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findProgram, freePort, waitForOutput } from '../test/helpers/process';

export interface BenchRedis {
  pid: number;
  url: string;
  stop(): Promise<void>;
}

export async function startRedisServer(): Promise<BenchRedis> {
  const program = findProgram('redis-server');
  if (!program) throw new Error('redis-server is not installed (apt-get install redis-server)');
  const dir = mkdtempSync(join(tmpdir(), 'vw-bench-redis-'));
  const port = await freePort();
  const child = spawn(program, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForOutput(child, 'redis-server', /Ready to accept connections/);
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: child.pid as number, url: `redis://127.0.0.1:${port}`, stop };
}

/** Redis's own CPU time so far (used_cpu_sys + used_cpu_user), in µs, from the text of `INFO` (any section list that includes cpu). */
export function redisCpuUs(info: string): number {
  const value = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return (value('used_cpu_sys') + value('used_cpu_user')) * 1e6;
}
