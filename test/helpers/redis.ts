// Real Redis for the cluster tests: the shared server on 127.0.0.1:6379 (or
// TEST_REDIS_URL) with a key prefix of the test's own, deleted afterwards;
// and a private redis-server that a test can stop and start again.
//
// No Redis: outside CI the tests are skipped with a loud warning; with
// CI=true they fail.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';
import { createClient, createCluster } from 'redis';
import { CLUSTER_BUCKETS } from '../../src/channels/redis/keys';
import type { RedisCommands } from '../../src/channels/redis/scripts';
import { findProgram, freePort, restartable, waitForOutput, type Restartable } from './process';
import { clusterUnavailable, startRedisCluster, type TestRedisCluster } from './redis-cluster';
import { requireService } from './skip';

export const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

export type RedisConnection = ReturnType<typeof createClient>;

export interface TestRedis {
  url: string;
  /** The test's own REDIS_PREFIX. */
  prefix: string;
  /** What a server needs to use it: REDIS_URL or REDIS_CLUSTER_NODES, and REDIS_PREFIX. */
  env: Record<string, string>;
  /** Commands for the registry and room store under test (routed by key on a cluster). */
  commands: RedisCommands;
  /** Buckets of the key layout a server uses on it (src/channels/redis/keys.ts). */
  buckets: number;
  /** On a Redis Cluster: the cluster the test runs on. */
  cluster?: TestRedisCluster;
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
  return requireService(t, 'Redis', reason, ['Start Redis on 127.0.0.1:6379 (apt-get install redis-server) or set TEST_REDIS_URL.']);
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
 * Makes this test file's `testRedis` run on a Redis Cluster (3 masters, 3
 * replicas) started for the file and stopped after it: a file that calls this
 * before importing a suite runs that suite on a Redis Cluster.
 */
export function useRedisCluster() {
  let started: Promise<TestRedisCluster> | undefined;
  sharedCluster = () => (started ??= startRedisCluster());
  after(async () => {
    if (started) await (await started).stop();
  });
}

let sharedCluster: (() => Promise<TestRedisCluster>) | undefined;

/** Whether this file's tests run on a Redis Cluster (useRedisCluster). */
export const onRedisCluster = () => sharedCluster !== undefined;

/**
 * A fresh key prefix on the shared Redis (or `url`), or on this file's Redis
 * Cluster (useRedisCluster); its keys are deleted after the test. Undefined
 * when the test was skipped for want of Redis.
 */
export async function testRedis(t: TestContext, url = REDIS_URL): Promise<TestRedis | undefined> {
  if (sharedCluster && url === REDIS_URL) {
    const reason = clusterUnavailable();
    if (!requireService(t, 'Redis Cluster', reason, ['Install redis-server and redis-tools (Redis 7 or later).'])) return undefined;
    return testRedisCluster(t, await sharedCluster());
  }
  if (url === REDIS_URL && !requireRedis(t, await unreachableReason())) return undefined;
  const prefix = `vwtest:${randomBytes(6).toString('hex')}:`;
  // Reconnects, so it outlives a restart of a private server.
  const client = createClient({ url, socket: { reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 500) } });
  client.on('error', () => undefined);
  await client.connect();
  const cleanups: (() => Promise<unknown> | void)[] = [];
  t.after(async () => {
    try {
      for (const close of cleanups.reverse()) await close();
      // A private server the test stopped first may be gone now: its keys went with it.
      if (client.isReady) await deleteKeys(client, prefix).catch(() => undefined);
    } finally {
      // Always: a client left reconnecting would keep the test process alive.
      if (client.isOpen) client.destroy();
    }
  });
  return {
    url,
    prefix,
    env: { REDIS_URL: url, REDIS_PREFIX: prefix },
    commands: { send: (args) => client.sendCommand(args) },
    buckets: 1,
    keys: async () => (await client.keys(`${prefix}*`)).filter((k) => !k.endsWith('socket.io')).sort(),
    onCleanup: (close) => void cleanups.push(close),
  };
}

/** A fresh key prefix on a Redis Cluster; its keys are deleted from every master after the test. */
export async function testRedisCluster(t: TestContext, cluster: TestRedisCluster): Promise<TestRedis> {
  const prefix = `vwtest:${randomBytes(6).toString('hex')}:`;
  // Connected to the nodes that run now: a test may kill one.
  const open = async () => {
    const client = createCluster({
      rootNodes: cluster.nodes.filter((n) => n.child).map((n) => ({ url: `redis://${n.address}` })),
      defaults: { socket: { reconnectStrategy: false, connectTimeout: 2000 } },
    });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };
  const client = await open();
  const cleanups: (() => Promise<unknown> | void)[] = [];
  /** Every key of the prefix, master by master (a test's keys are few). */
  async function keys(on = client) {
    const found: string[] = [];
    for (const master of on.masters) {
      const node = await on.nodeClient(master);
      found.push(...(await node.keys(`${prefix}*`)));
    }
    return found;
  }
  t.after(async () => {
    for (const close of cleanups.reverse()) await close();
    // A node the test killed is closed already: destroying it throws.
    const destroy = (c: typeof client) => {
      try {
        c.destroy();
      } catch {
        /* closed already */
      }
    };
    destroy(client);
    const fresh = await open();
    try {
      for (const key of await keys(fresh)) await fresh.del(key);
    } finally {
      destroy(fresh);
    }
  });
  return {
    url: `redis://${cluster.nodes[0]?.address}`,
    prefix,
    env: { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_PREFIX: prefix },
    commands: { send: (args, key) => client.sendCommand(key, false, args) },
    buckets: CLUSTER_BUCKETS,
    cluster,
    keys: async () => (await keys()).filter((k) => !k.includes('socket.io')).sort(),
    onCleanup: (close) => void cleanups.push(close),
  };
}

export interface PrivateRedis extends Restartable {
  url: string;
}

/** A redis-server of the test's own on a free loopback port, without persistence; stopped after the test. */
export async function privateRedis(t: TestContext): Promise<PrivateRedis | undefined> {
  if (sharedCluster) {
    // A restart of the whole store is the single-Redis case; a Redis Cluster's is a failover (redis-cluster.test.ts).
    t.skip('a restart of one Redis: tested on one Redis, failover on the Redis Cluster');
    return undefined;
  }
  const program = findProgram('redis-server');
  if (!program) {
    requireRedis(t, 'redis-server is not installed (apt-get install redis-server)');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'vw-redis-'));
  const port = await freePort();
  const redis = restartable(
    () =>
      spawn(
        program,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'notice'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    // redis-server says when it accepts connections.
    (child) => waitForOutput(child, 'redis-server', /Ready to accept connections/),
  );
  t.after(async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await redis.start();
  return { url: `redis://127.0.0.1:${port}`, ...redis };
}
