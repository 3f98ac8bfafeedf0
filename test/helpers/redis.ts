// Real Redis for the cluster tests: the shared server on 127.0.0.1:6379 (or
// TEST_REDIS_URL) with a key prefix of the test's own, deleted afterwards;
// and a private redis-server that a test can stop and start again.
//
// No Redis: outside CI the tests are skipped with a loud warning; with
// CI=true they fail.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';
import { createClient } from 'redis';

export const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

export type RedisConnection = ReturnType<typeof createClient>;

export interface TestRedis {
  url: string;
  /** The test's own REDIS_PREFIX. */
  prefix: string;
  /** A client for looking at the keys. */
  client: RedisConnection;
  /** The test's keys (without the adapter's stream). */
  keys(): Promise<string[]>;
  /**
   * Runs `close` when the test ends, before the keys are deleted; later
   * registrations run first, like nested scopes.
   */
  onCleanup(close: () => Promise<unknown> | void): void;
}

/** A client that gives up at once instead of reconnecting. */
export async function connectRedis(url: string): Promise<RedisConnection> {
  const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 2000 } });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

let probe: Promise<string | undefined> | undefined;
let warned = false;

function unreachableReason(): Promise<string | undefined> {
  probe ??= connectRedis(REDIS_URL).then(
    async (client) => {
      await client.ping();
      client.destroy();
      return undefined;
    },
    (err: unknown) => `cannot reach Redis at ${REDIS_URL}: ${err instanceof Error ? err.message : String(err)}`,
  );
  return probe;
}

/** Skips the test loudly (outside CI) or fails it (CI=true) when Redis is not there. */
function requireRedis(t: TestContext, reason: string | undefined): boolean {
  if (!reason) return true;
  if (process.env.CI === 'true') throw new Error(`Redis tests cannot run in CI: ${reason}`);
  if (!warned) {
    warned = true;
    const line = '!'.repeat(78);
    console.warn(
      `\n${line}\n!! REDIS TESTS SKIPPED: ${reason}\n` +
        '!! Start Redis on 127.0.0.1:6379 (apt-get install redis-server) or set TEST_REDIS_URL.\n' +
        `!! With CI=true this is a failure.\n${line}\n`,
    );
  }
  t.skip(`Redis tests skipped: ${reason}`);
  return false;
}

async function deleteKeys(client: RedisConnection, prefix: string) {
  for (let cursor = '0', rounds = 0; rounds < 10_000; rounds++) {
    const [next, keys] = (await client.sendCommand(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000'])) as [string, string[]];
    if (keys.length) await client.sendCommand(['DEL', ...keys]);
    cursor = next;
    if (cursor === '0') return;
  }
}

/**
 * A fresh key prefix on the shared Redis (or `url`); its keys are deleted
 * after the test. Undefined when the test was skipped for want of Redis.
 */
export async function testRedis(t: TestContext, url = REDIS_URL): Promise<TestRedis | undefined> {
  if (url === REDIS_URL && !requireRedis(t, await unreachableReason())) return undefined;
  const prefix = `vwtest:${randomBytes(6).toString('hex')}:`;
  // Reconnects, so it outlives a restart of a private server.
  const client = createClient({ url, socket: { reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 500) } });
  client.on('error', () => undefined);
  await client.connect();
  const cleanups: (() => Promise<unknown> | void)[] = [];
  t.after(async () => {
    for (const close of cleanups.reverse()) await close();
    if (client.isReady) await deleteKeys(client, prefix);
    if (client.isOpen) client.destroy();
  });
  return {
    url,
    prefix,
    client,
    keys: async () => (await client.keys(`${prefix}*`)).filter((k) => !k.endsWith('socket.io')).sort(),
    onCleanup: (close) => void cleanups.push(close),
  };
}

export interface PrivateRedis {
  url: string;
  /** Starts redis-server and resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (SIGTERM) and resolves once it has exited: its port then refuses connections. */
  stop(): Promise<void>;
}

function findProgram(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin', '/usr/sbin'];
  for (const dir of dirs) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** A redis-server of the test's own on a free loopback port, without persistence; stopped after the test. */
export async function privateRedis(t: TestContext): Promise<PrivateRedis | undefined> {
  const program = findProgram('redis-server');
  if (!program) {
    requireRedis(t, 'redis-server is not installed (apt-get install redis-server)');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'vw-redis-'));
  const port = await freePort();
  let running: ChildProcess | undefined;
  const killOnExit = () => running?.kill('SIGKILL');

  async function start() {
    if (running) return;
    const child = spawn(
      program as string,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'notice'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    running = child;
    process.once('exit', killOnExit);
    // redis-server says when it accepts connections.
    await new Promise<void>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s: ${output.slice(-300)}`)), 10_000);
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${output.slice(-300)}`));
      });
    });
  }

  async function stop() {
    const child = running;
    if (!child) return;
    running = undefined;
    process.off('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }

  t.after(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await start();
  return { url: `redis://127.0.0.1:${port}`, start, stop };
}
